"""Staff joiners and leavers: the one place staff accounts are managed. Admins only; every
change is audited.

Joiners: an admin invites a person by email. The account exists at once (role, branch) but
has no password; the emailed link (signed, expiring, single use; app/accounts/invites.py) lets
them choose one, then they set up two-factor sign-in. Leavers: deactivating ends every
session at once (the session token rotates and `load_user` refuses inactive users), and
they can no longer sign in. Role and branch changes need no session change: the user is
loaded from the database on every request, so the next request already sees them. A lost
phone: `reset_two_factor` (app/accounts/twofactor.py does the reset).

Plain functions over the session that take `by` (the admin) and `now`, and raise
`AdminError` with messages keyed by form field. The pages: staff_routes.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ..accounts import twofactor
from ..accounts import validators as v
from ..accounts.invites import invite_pending, make_invite_token
from ..accounts.services import find_user_by_email, public_url
from ..audit import changes, record
from ..extensions import db
from ..mail import queue_email
from ..models import Branch, Role, User
from .services import AdminError
from ..settings import settings

STAFF_ROLES = (Role.STAFF.value, Role.ADMIN.value)

# Shown on the staff pages: whether an invitation waits, whether two-factor is set up.
__all__ = ["STAFF_ROLES", "StaffData", "deactivate", "invite_pending", "invite_staff",
           "is_enrolled", "reactivate", "resend_invite", "reset_two_factor", "staff_member",
           "staff_members", "update_staff"]
is_enrolled = twofactor.is_enrolled


@dataclass(frozen=True)
class StaffData:
    full_name: str
    role: str
    branch_id: Optional[int]


def staff_members() -> list[User]:
    """Everyone with access to the staff area, active first, then by name."""
    return list(db.session.scalars(
        select(User).where(User.role.in_(STAFF_ROLES))
        .order_by(User.active.desc(), func.lower(User.full_name), User.id)))


def staff_member(user_id: int) -> Optional[User]:
    user = db.session.get(User, user_id)
    return user if user is not None and user.role in STAFF_ROLES else None


def _check_staff_data(data: StaffData) -> dict[str, str]:
    errors: dict[str, str] = {}
    if data.role not in STAFF_ROLES:
        errors["role"] = "Choose staff or admin."
    if data.branch_id is not None and db.session.get(Branch, data.branch_id) is None:
        errors["branch_id"] = "Choose a branch from the list."
    if data.role == Role.STAFF.value and data.branch_id is None:
        errors["branch_id"] = "Counter staff work at a branch: choose one."
    return errors


def _active_admins() -> int:
    return db.session.scalar(select(func.count(User.id)).where(
        User.role == Role.ADMIN.value, User.active.is_(True))) or 0


def invite_staff(email: str, data: StaffData, *, by: User, now: datetime) -> User:
    """Create the account (no password yet) and email the invitation link. Commits."""
    errors = _check_staff_data(data)
    email = v.normalise_email(email)
    if find_user_by_email(email) is not None:
        errors["email"] = "An account already uses this email address."
    if errors:
        raise AdminError(errors)
    # No password can match "" (argon2 refuses it as a hash), so the account cannot be
    # signed in to until the invitation is accepted.
    user = User(email=email, full_name=data.full_name, password_hash="", role=data.role,
                branch_id=data.branch_id, invited_at=now, password_changed_at=now)
    db.session.add(user)
    try:
        db.session.flush()
    except IntegrityError:  # the same email invited concurrently
        db.session.rollback()
        raise AdminError({"email": "An account already uses this email address."})
    record(by, "user.invited", user, {}, {"email": email, "role": data.role,
                                         "branch_id": data.branch_id})
    db.session.commit()
    _send_invite(user, by=by)
    return user


def resend_invite(user: User, *, by: User) -> None:
    """A fresh link for a pending invitation; earlier links stop working. Commits."""
    if not invite_pending(user):
        raise AdminError({"": f"{user.full_name} has already accepted the invitation."})
    user.end_all_sessions()  # the links are bound to the session token
    record(by, "user.invite_resent", user, {}, {})
    db.session.commit()
    _send_invite(user, by=by)


def _send_invite(user: User, *, by: User) -> None:
    token = make_invite_token(user)
    link = public_url(f"/account/invite/{token}")
    hours = settings().security.staff_invite_max_age_seconds // 3600
    queue_email(key=f"user:{user.id}:invite:{token[-16:]}", to=user.email,
                subject="You are invited to the ACME Rentals staff portal",
                template="admin/emails/staff_invite.txt", user=user, by=by, hours=hours, link=link)


def _staff_fields(user: User) -> dict[str, Any]:
    return {"full_name": user.full_name, "role": user.role, "branch_id": user.branch_id}


def update_staff(user: User, data: StaffData, *, by: User) -> None:
    """Change name, role and branch; effective on their next request. Commits."""
    errors = _check_staff_data(data)
    if user.id == by.id and data.role != user.role:
        errors["role"] = "You cannot change your own role; ask another admin."
    elif (user.role == Role.ADMIN.value and data.role != Role.ADMIN.value and user.active
          and _active_admins() <= 1):
        errors["role"] = "This is the last active admin; make someone else admin first."
    if errors:
        raise AdminError(errors)
    before = _staff_fields(user)
    user.full_name, user.role, user.branch_id = data.full_name, data.role, data.branch_id
    old, new = changes(before, _staff_fields(user))
    if not new:
        return
    record(by, "user.role_changed" if "role" in new else "user.updated", user, old, new)
    db.session.commit()


def deactivate(user: User, *, by: User, now: datetime) -> None:
    """A leaver: their sessions end now and they cannot sign in again. Commits."""
    if user.id == by.id:
        raise AdminError({"": "You cannot deactivate your own account; ask another admin."})
    if not user.active:
        return
    if user.role == Role.ADMIN.value and _active_admins() <= 1:
        raise AdminError({"": "This is the last active admin; make someone else admin first."})
    user.active = False
    user.end_all_sessions()
    record(by, "user.deactivated", user, {"active": True}, {"active": False, "at": now})
    db.session.commit()


def reactivate(user: User, *, by: User) -> None:
    """Let a returning member of staff sign in again (with their old password). Commits."""
    if user.active:
        return
    user.active = True
    user.end_all_sessions()
    record(by, "user.reactivated", user, {"active": False}, {"active": True})
    db.session.commit()


def reset_two_factor(user: User, *, by: User) -> None:
    """Lost phone: their two-factor sign-in is switched off (and their sessions end); they
    set it up again at their next sign-in."""
    twofactor.reset(user, by=by)

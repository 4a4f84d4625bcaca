"""Staff invitations, as accounts sees them: the link's token, and accepting it.

An admin invites a staff member (app/admin/staff.py sends the email); the person then
follows the link to the accept-invite page (app/accounts/twofactor_routes.py), which chooses
their password here. Both sides use this module, so accounts never imports admin.
"""

from __future__ import annotations

from datetime import datetime


from ..audit import record
from ..extensions import db
from ..models import User
from ..settings import settings
from .services import AccountError, LinkRefusals, hash_password, make_link_token, user_for_link_token

INVITE_SALT = "staff-invite"


def invite_pending(user: User) -> bool:
    return user.invited_at is not None and user.invite_accepted_at is None


INVITE_REFUSALS = LinkRefusals(
    expired="That invitation has expired. Ask an admin to send a new one.",
    invalid="That invitation link is not valid. Check you copied all of it.",
    used="That invitation has already been used or replaced. Sign in, or ask an admin for a "
         "new one.")


def make_invite_token(user: User) -> str:
    return make_link_token(user, salt=INVITE_SALT)


def user_for_invite(token: str) -> User:
    """The invited user the link is for, or AccountError saying why it cannot be used."""
    user = user_for_link_token(token, salt=INVITE_SALT, refusals=INVITE_REFUSALS,
                               max_age=settings().security.staff_invite_max_age_seconds)
    if not invite_pending(user):
        raise AccountError({"": INVITE_REFUSALS.used})
    return user


def accept_invite(token: str, password: str, *, now: datetime) -> User:
    """Set the invited person's password; the link then stops working. Commits."""
    user = user_for_invite(token)
    user.password_hash = hash_password(password)
    user.password_changed_at = now
    user.invite_accepted_at = now
    user.end_all_sessions()
    record(user, "user.invite_accepted", user, {}, {"accepted_at": now})
    db.session.commit()
    return user

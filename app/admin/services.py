"""Staff joiners and leavers, and prices. Admins only; every change is audited.

Joiners: an admin invites a person by email. The account exists at once (role, branch) but
has no password; the emailed link (signed, expiring, single use; app/accounts/invites.py) lets
them choose one, then they set up two-factor sign-in. Leavers: deactivating ends every session at once (the
session token rotates and `load_user` refuses inactive users), and they can no longer sign
in. Role and branch changes need no session change: the user is loaded from the database on
every request, so the next request already sees them.

Plain functions over the session that take `by` (the admin) and `now`, and raise
`AdminError` with messages keyed by form field.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ..accounts import validators as v
from ..accounts.invites import invite_pending, make_invite_token
from ..accounts.services import find_user_by_email, public_url
from ..audit import changes, record
from ..errors import FieldErrors
from ..extensions import db
from ..mail import queue_email
from ..models import Branch, CarClass, Role, User

STAFF_ROLES = (Role.STAFF.value, Role.ADMIN.value)


class AdminError(FieldErrors):
    """Refusal with a message per field ("" key: for the whole form)."""


# --- staff ------------------------------------------------------------------------------

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
    hours = current_app.config["STAFF_INVITE_MAX_AGE_SECONDS"] // 3600
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


def branches() -> list[Branch]:
    return list(db.session.scalars(select(Branch).order_by(Branch.name)))


# --- prices ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClassRates:
    daily_rate_pence: int
    deposit_pence: int
    mileage_allowance_per_day: int


def car_classes() -> list[CarClass]:
    return list(db.session.scalars(select(CarClass).order_by(CarClass.daily_rate_pence,
                                                             CarClass.name)))


def _class_rates(cls: CarClass) -> dict[str, int]:
    return {"daily_rate_pence": cls.daily_rate_pence, "deposit_pence": cls.deposit_pence,
            "mileage_allowance_per_day": cls.mileage_allowance_per_day}


def update_class_rates(cls: CarClass, rates: ClassRates, *, by: User) -> bool:
    """New rates for a class, for quotes made from now on. Commits; False if nothing changed.

    Hires keep the price lines frozen when they were made, so no existing booking changes.
    """
    errors: dict[str, str] = {}
    if rates.daily_rate_pence <= 0:
        errors["daily_rate"] = "The daily rate must be more than £0."
    elif rates.daily_rate_pence > current_app.config["CAR_MAX_DAILY_RATE_PENCE"]:
        errors["daily_rate"] = "That daily rate is too high; check the amount."
    if rates.deposit_pence < 0:
        errors["deposit"] = "The deposit cannot be negative."
    if not 0 <= rates.mileage_allowance_per_day <= 10_000:
        errors["mileage_allowance_per_day"] = "Enter between 0 and 10,000 miles a day."
    if errors:
        raise AdminError(errors)
    before = _class_rates(cls)
    cls.daily_rate_pence = rates.daily_rate_pence
    cls.deposit_pence = rates.deposit_pence
    cls.mileage_allowance_per_day = rates.mileage_allowance_per_day
    old, new = changes(before, _class_rates(cls))
    if not new:
        return False
    record(by, "price.class_rates_changed", cls, old, {**new, "class": cls.code})
    db.session.commit()
    return True


# --- the booking engine's rate tables (app/models/pricing.py) -------------------------------
# Each change is audited with its before and after, and applies to quotes made from now on.

def rate_tables() -> dict[str, list]:
    from ..models import DurationTier, Extra, OneWayFee, Season
    return {
        "tiers": list(db.session.scalars(select(DurationTier).order_by(DurationTier.min_days))),
        "seasons": list(db.session.scalars(select(Season).order_by(Season.starts_on))),
        "extras": list(db.session.scalars(select(Extra).order_by(Extra.sort_order, Extra.name))),
        "one_way_fees": list(db.session.scalars(select(OneWayFee).order_by(OneWayFee.id))),
    }


def _fields(obj: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return {n: getattr(obj, n) for n in names}


TIER_FIELDS = ("min_days", "percent_off")
SEASON_FIELDS = ("code", "name", "starts_on", "ends_on", "percent")
EXTRA_FIELDS = ("code", "name", "description", "per_day_pence", "cap_pence", "max_quantity",
                "group", "sort_order", "active")
ONE_WAY_FIELDS = ("from_branch_id", "to_branch_id", "fee_pence")


def save_rate_row(kind: str, obj: Any, values: dict[str, Any], *, by: User) -> Any:
    """Create (obj None) or change one row of a rate table after checking it. Commits."""
    from ..models import DurationTier, Extra, OneWayFee, Season
    model, names, check = {
        "tier": (DurationTier, TIER_FIELDS, _tier_errors),
        "season": (Season, SEASON_FIELDS, _season_errors),
        "extra": (Extra, EXTRA_FIELDS, _extra_errors),
        "one_way_fee": (OneWayFee, ONE_WAY_FIELDS, _one_way_errors),
    }[kind]
    errors = check(values, obj)
    if errors:
        raise AdminError(errors)
    before = _fields(obj, names) if obj is not None else {}
    if obj is None:
        obj = model(**values)
        db.session.add(obj)
    else:
        for name, value in values.items():
            setattr(obj, name, value)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise AdminError({"": "That clashes with another row (a code or a pair already used)."})
    old, new = changes(before, _fields(obj, names))
    if new:
        record(by, f"price.{kind}_{'changed' if before else 'added'}", obj, old, new)
    db.session.commit()
    return obj


def delete_rate_row(kind: str, obj: Any, *, by: User) -> None:
    """Remove a tier, season or one-way fee (extras are switched off instead). Commits."""
    names = {"tier": TIER_FIELDS, "season": SEASON_FIELDS, "one_way_fee": ONE_WAY_FIELDS}[kind]
    record(by, f"price.{kind}_removed", obj, _fields(obj, names), {})
    db.session.delete(obj)
    db.session.commit()


def _unique(model: Any, column: Any, value: Any, obj: Any) -> bool:
    clash = db.session.scalar(select(model).where(column == value))
    return clash is None or clash is obj


def _tier_errors(values: dict, obj: Any) -> dict[str, str]:
    from ..models import DurationTier
    if not _unique(DurationTier, DurationTier.min_days, values["min_days"], obj):
        return {"min_days": f"There is already a tier from {values['min_days']} days."}
    return {}


def _season_errors(values: dict, obj: Any) -> dict[str, str]:
    from ..models import Season
    errors = {}
    if values["ends_on"] < values["starts_on"]:
        errors["ends_on"] = "The last day is before the first day."
    if not _unique(Season, Season.code, values["code"], obj):
        errors["code"] = "Another season has that code."
    return errors


def _extra_errors(values: dict, obj: Any) -> dict[str, str]:
    from ..models import Extra
    errors = {}
    if not _unique(Extra, Extra.code, values["code"], obj):
        errors["code"] = "Another extra has that code."
    cap = values.get("cap_pence")
    if cap is not None and cap < values["per_day_pence"]:
        errors["cap"] = "The cap must be at least the price of one day (or leave it empty)."
    return errors


def _one_way_errors(values: dict, obj: Any) -> dict[str, str]:
    from ..models import OneWayFee
    errors = {}
    for name in ("from_branch_id", "to_branch_id"):
        if db.session.get(Branch, values[name]) is None:
            errors[name] = "Choose a branch."
    if not errors and values["from_branch_id"] == values["to_branch_id"]:
        errors["to_branch_id"] = "Choose a different branch to return to."
    if not errors:
        clash = db.session.scalar(select(OneWayFee).where(
            OneWayFee.from_branch_id == values["from_branch_id"],
            OneWayFee.to_branch_id == values["to_branch_id"]))
        if clash is not None and clash is not obj:
            errors["to_branch_id"] = "There is already a fee for that pair; change it instead."
    return errors

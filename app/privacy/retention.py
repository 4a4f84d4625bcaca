"""Retention (issue 18): licence numbers, licence photos and signature images are deleted
PERSONAL_DATA_RETENTION_DAYS after the customer's last hire ended, by the scheduled tick,
each deletion audited; admins see what falls due.

A hire has ended when it reached a final state (closed, cancelled, expired, no-show,
refused at pickup); the moment is its last state change. A customer with a hire still open
has nothing due. A customer who never hired at all has their licence data deleted
NEVER_HIRED_RETENTION_DAYS after their last activity (signing up, or their last sign-in,
whichever is later): signing in again starts that count again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, select

from .. import audit
from ..extensions import db
from ..logging_setup import log
from ..models import (CustomerProfile, Hire, HireCheckin, HireDriver, HireState, HireStateChange,
                      Inspection, LicenceCheck, Role, User)
from .erasure import OPEN_STATES, remove_files, wipe_licence_data

S = HireState
ENDED_STATES = frozenset({S.CLOSED, S.CANCELLED, S.EXPIRED, S.NO_SHOW, S.REFUSED_AT_PICKUP})


@dataclass(frozen=True)
class Due:
    user: User
    last_ended_at: datetime  # when the last hire ended, or (never hired) the last activity
    due_at: datetime
    holds: tuple[str, ...]  # what is still held: "licence number", "licence photo", "signature"
    never_hired: bool = False

    @property
    def since(self) -> str:
        return "signed up or last signed in (never hired)" if self.never_hired else "last hire ended"


def _last_ended() -> dict[int, datetime]:
    """Customer id -> when their last hire ended, for customers with no hire still open."""
    open_customers = select(Hire.customer_id).where(Hire.state.in_([s.value for s in OPEN_STATES]))
    rows = db.session.execute(
        select(Hire.customer_id, func.max(HireStateChange.at))
        .join(HireStateChange, HireStateChange.hire_id == Hire.id)
        .where(Hire.state.in_([s.value for s in ENDED_STATES]),
               Hire.customer_id.not_in(open_customers))
        .group_by(Hire.customer_id)).all()
    return {customer_id: at for customer_id, at in rows if at is not None}


def _never_hired() -> dict[int, datetime]:
    """Customer id -> their last activity (sign-up or last sign-in), for live customer
    accounts that never had a hire."""
    rows = db.session.execute(
        select(User.id, User.created_at, User.last_sign_in_at)
        .where(User.role == Role.CUSTOMER.value, User.erased_at.is_(None),
               ~select(Hire.id).where(Hire.customer_id == User.id).exists())).all()
    return {user_id: max(at for at in (created, signed_in) if at is not None)
            for user_id, created, signed_in in rows}


def licence_data_held(user: User) -> tuple[str, ...]:
    """What retention would delete for this customer (empty: nothing left)."""
    hire_ids = select(Hire.id).where(Hire.customer_id == user.id)
    held = []
    if (db.session.scalar(select(CustomerProfile.user_id).where(
            CustomerProfile.user_id == user.id, CustomerProfile.licence_number != ""))
            or db.session.scalar(select(LicenceCheck.id).where(
                LicenceCheck.user_id == user.id, LicenceCheck.licence_number != "").limit(1))
            or db.session.scalar(select(HireDriver.id).where(
                HireDriver.hire_id.in_(hire_ids), HireDriver.licence_number != "").limit(1))):
        held.append("licence number")
    if db.session.scalar(select(HireCheckin.id).where(
            HireCheckin.hire_id.in_(hire_ids), HireCheckin.licence_photo_filename != "").limit(1)):
        held.append("licence photo")
    if db.session.scalar(select(Inspection.id).where(
            Inspection.hire_id.in_(hire_ids), Inspection.signature_filename != "").limit(1)):
        held.append("signature")
    return tuple(held)


def due_for_deletion(now: datetime, *, within_days: int = 0) -> list[Due]:
    """Customers whose licence data is due for deletion by `now` + `within_days`, soonest first."""
    keep = timedelta(days=current_app.config["PERSONAL_DATA_RETENTION_DAYS"])
    keep_never_hired = timedelta(days=current_app.config["NEVER_HIRED_RETENTION_DAYS"])
    horizon = now + timedelta(days=within_days)
    due = []
    for never_hired, since, kept in ((False, _last_ended(), keep), (True, _never_hired(), keep_never_hired)):
        for customer_id, at in since.items():
            if at + kept > horizon:
                continue
            user = db.session.get(User, customer_id)
            held = licence_data_held(user)
            if held:
                due.append(Due(user, at, at + kept, held, never_hired))
    return sorted(due, key=lambda d: (d.due_at, d.user.id))


def apply_retention(now: datetime) -> list[int]:
    """Delete what is due now (the tick), one audited commit per customer. Safe to run twice."""
    done = []
    for due in due_for_deletion(now):
        wiped = wipe_licence_data(due.user)
        audit.record(None, "privacy.retention_deleted", due.user, {"held": list(due.holds)},
                     {**wiped.as_dict(), ("last_activity_at" if due.never_hired else "last_hire_ended_at"): due.last_ended_at,
                      "rule": "never_hired" if due.never_hired else "after_last_hire"}, at=now)
        db.session.commit()
        remove_files(wiped.files)
        done.append(due.user.id)
        log().info("licence data deleted after retention", user_id=due.user.id, **wiped.as_dict())
    return done

"""Pickup: the licence re-check, the steps of a pickup and of a return, handing the car over
(confirmed -> active) or refusing it (the car is released and the price refunded in full).
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import select
from sqlalchemy.orm.exc import StaleDataError

from .. import paperwork
from ..audit import record
from ..extensions import db
from ..licence import online_licences_ok, pickup_licence_ok
from ..models import Hire, HireCheckin, HireState, Inspection, User
from ..payments import ensure_deposit_hold, release_deposit, rental_paid_pence, request_refund
from .errors import AlreadyProcessed, CounterError
from .inspections import PICKUP, Step, check_version, commit_step, inspection
from .previews import deposit_at_pickup

S = HireState


def licence_ok(hire: Hire) -> tuple[bool, str]:
    """The counter's re-check for this hire must have come back verified (the licence area's rule)."""
    return pickup_licence_ok(hire)


def checked_in_online(hire: Hire) -> bool:
    """The customer checked in online (details, terms, licence photo) and every licence on
    the hire, theirs and the named drivers', is verified to its end: the counter's licence
    step is done (issue 18)."""
    found = online_checkin(hire)
    return found is not None and found.is_complete and online_licences_ok(hire)[0]


def online_checkin(hire: Hire) -> HireCheckin | None:
    return db.session.scalar(select(HireCheckin).where(HireCheckin.hire_id == hire.id))


def pickup_steps(hire: Hire, insp: Inspection | None) -> list[Step]:
    licence_done = checked_in_online(hire) or (bool(insp and insp.id_checked_at) and licence_ok(hire)[0])
    return [
        Step("licence", "Licence and ID", licence_done),
        Step("condition", "Condition out", bool(insp and insp.condition_recorded_at)),
        Step("signature", "Customer signs", bool(insp and insp.signed_at)),
        Step("handover", "Hand over", hire.hire_state == S.ACTIVE),
    ]


def return_steps(hire: Hire, insp: Inspection | None) -> list[Step]:
    return [
        Step("condition", "Condition in", bool(insp and insp.condition_recorded_at)),
        Step("charges", "Charges", bool(insp and insp.completed_at)),
        Step("settle", "Settle", hire.hire_state in (S.RETURNED, S.CLOSED)),
    ]


def hand_over(hire: Hire, *, by: User, now: datetime, version: Optional[int] = None) -> None:
    """confirmed -> active: every pickup step done; the deposit hold is confirmed."""
    insp = inspection(hire, PICKUP)
    missing = [s.label for s in pickup_steps(hire, insp)[:-1] if not s.done]
    if missing or insp is None:
        raise CounterError(f"Finish these steps first: {', '.join(missing)}.")
    check_version(insp, version)
    if hire.hire_state != S.CONFIRMED:
        raise AlreadyProcessed(f"This hire is already {hire.state.replace('_', ' ')}.")
    hire.transition(S.ACTIVE, by=by, why="handed over at the counter", now=now)
    insp.completed_by_id, insp.completed_at = by.id, now
    hire.car.odometer_miles = insp.odometer_miles
    record(by, "pickup.handed_over", hire, {"state": "confirmed"}, {"state": "active"}, at=now)
    commit_step(insp)
    ensure_deposit_hold(hire, by=by)
    deposit = deposit_at_pickup(hire)
    paperwork.request_agreement(hire, insp, deposit_pence=deposit.amount_pence, deposit_how=deposit.how,
                                by=by, now=now)


def refuse_at_pickup(hire: Hire, *, by: User, now: datetime, reason: str) -> None:
    """Licence refused, ID does not match, customer unfit: release the car and refund in full."""
    reason = reason.strip()
    if not reason:
        raise CounterError({"reason": "Say why the car cannot be handed over."})
    if hire.hire_state != S.CONFIRMED:
        raise AlreadyProcessed(f"This hire is already {hire.state.replace('_', ' ')}.")
    hire.transition(S.REFUSED_AT_PICKUP, by=by, why=reason[:300], now=now)
    record(by, "pickup.refused", hire, {"state": "confirmed"}, {"state": "refused_at_pickup",
                                                               "reason": reason}, at=now)
    try:
        db.session.commit()
    except StaleDataError:
        db.session.rollback()
        raise AlreadyProcessed("Another tablet changed this hire a moment ago; reload it.")
    paid = rental_paid_pence(hire)  # what the refusal dialog showed; nothing paid, nothing back
    if paid > 0:
        request_refund(hire, paid, f"refused at pickup: {reason}", by)
    release_deposit(hire, by, reason="refused at pickup: deposit returned in full", now=now)

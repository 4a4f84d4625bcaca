"""The customer's own bookings ("My bookings"): upcoming, active and past hires, how the
ones that never went out ended (and what was refunded). One hire by reference, and whether
they may see it, is app/hire_access.py's."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Optional

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from ..extensions import db
from ..models import Car, Hire, HireCheckin, HireState, HireStateChange, User
from ..payments import MoneyBack, hires_under_review, money_back

S = HireState
UPCOMING_STATES = frozenset({S.HELD, S.CONFIRMED})
# Ended before (or instead of) the car going out: the list says when, and what came back.
ENDED_WITHOUT_HIRE = frozenset({S.CANCELLED, S.EXPIRED, S.NO_SHOW, S.REFUSED_AT_PICKUP})


@dataclass(frozen=True)
class Ending:
    """A hire that ended without the car going out: when, and the money (paid, refunded)."""

    at: Optional[datetime]
    money: MoneyBack


@dataclass(frozen=True)
class MyBookings:
    upcoming: list[Hire]
    active: list[Hire]
    past: list[Hire]
    endings: dict[int, Ending] = field(default_factory=dict)  # by hire id, for ENDED_WITHOUT_HIRE
    under_review: frozenset[int] = frozenset()  # held hires whose payment staff are reviewing
    check_in_open: frozenset[int] = frozenset()  # confirmed hires the customer may check in now
    checked_in: frozenset[int] = frozenset()  # ... and those already checked in online


def _endings(hires: list[Hire]) -> dict[int, Ending]:
    """When each hire ended without going out, and what was paid and refunded (from payments)."""
    ended = [h.id for h in hires if h.hire_state in ENDED_WITHOUT_HIRE]
    if not ended:
        return {}
    at = dict(db.session.execute(
        select(HireStateChange.hire_id, func.max(HireStateChange.at))
        .where(HireStateChange.hire_id.in_(ended),
               HireStateChange.to_state.in_([s.value for s in ENDED_WITHOUT_HIRE]),
               HireStateChange.from_state != HireStateChange.to_state)  # not a later note
        .group_by(HireStateChange.hire_id)).all())
    money = money_back(ended)
    return {hire_id: Ending(at.get(hire_id), money[hire_id]) for hire_id in ended}


def customer_bookings(customer: User, *, past_limit: int = 50,
                      now: Optional[datetime] = None) -> MyBookings:
    """Upcoming (held, confirmed), active (picked up) and past hires of one customer; for
    past ones that never went out, when they ended and what was refunded."""
    base = (select(Hire).where(Hire.customer_id == customer.id)
            .options(joinedload(Hire.car).joinedload(Car.car_class),
                     joinedload(Hire.pickup_branch), joinedload(Hire.return_branch)))
    upcoming = list(db.session.scalars(base.where(
        Hire.state.in_([s.value for s in UPCOMING_STATES])).order_by(Hire.start_at)))
    active = list(db.session.scalars(base.where(Hire.state == S.ACTIVE.value).order_by(Hire.end_at)))
    past = list(db.session.scalars(base.where(
        Hire.state.not_in([s.value for s in (*UPCOMING_STATES, S.ACTIVE)]))
        .order_by(Hire.start_at.desc()).limit(past_limit)))
    opens = timedelta(hours=current_app.config["CHECKIN_OPENS_HOURS"])
    check_in_open = frozenset(h.id for h in upcoming if now is not None and h.hire_state == S.CONFIRMED
                              and h.start_at - opens <= now < h.start_at)
    checked_in = frozenset(db.session.scalars(select(HireCheckin.hire_id).where(
        HireCheckin.hire_id.in_(check_in_open), HireCheckin.completed_at.is_not(None)))) \
        if check_in_open else frozenset()
    return MyBookings(upcoming, active, past, _endings(past),
                      frozenset(payments_under_review(upcoming)), check_in_open, checked_in)


def payments_under_review(hires: list[Hire]) -> set[int]:
    """The held hires among `hires` whose payment staff are reviewing: nothing to pay meanwhile."""
    return hires_under_review(h.id for h in hires if h.hire_state == S.HELD)

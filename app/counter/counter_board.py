"""The counter's board: today's and tomorrow's pickups and returns at a branch, overdue hires
first, filtered by a search as staff type. (A hire by its reference: app/hire_access.py.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Optional
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import and_, or_, select

from ..extensions import db
from ..models import Car, Hire, HireCheckin, HireState, Inspection, RentalAgreement, User

S = HireState


@dataclass(frozen=True)
class Person:
    full_name: str
    is_erased: bool = False


@dataclass(frozen=True)
class CarLabel:
    make: str
    model: str
    plate: str


@dataclass(frozen=True)
class BoardHire:
    """A hire as the board lists it: plain values read as columns (issue 19: a busy branch's
    300 rows as ORM objects, with every column of the hire, car and customer, cost more than
    the page's target)."""

    id: int
    reference: str
    state: str
    start_at: datetime
    end_at: datetime
    customer: Person
    car: CarLabel


@dataclass(frozen=True)
class Board:
    pickups: list[BoardHire]
    returns: list[BoardHire]
    overdue: list[BoardHire]
    late: dict[int, int]  # hire id -> minutes late to collect (pickup time passed, still confirmed)
    # Issue 18: pickups checked in online, and how long each hand-over took (seconds from
    # opening the pickup to the keys), shown on the cars that went out.
    checked_in: frozenset[int] = frozenset()
    pickup_seconds: Optional[dict[int, int]] = None
    # Hires whose rental agreement (or an addendum) the job gave up on: staff retry it.
    agreement_failed: frozenset[int] = frozenset()


def board(*, branch_id: Optional[int], now: datetime, query: str = "") -> Board:
    """Today's and tomorrow's pickups and returns at a branch (all branches when None), plus
    overdue hires; `query` filters by booking reference, customer name or plate. One query."""
    zone = ZoneInfo(current_app.config["DEFAULT_TIMEZONE"])
    today = now.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    window_end = (today + timedelta(days=2)).astimezone(now.tzinfo)
    pickup = and_(Hire.state == S.CONFIRMED.value, Hire.start_at < window_end)
    out = and_(Hire.state == S.ACTIVE.value, Hire.end_at < window_end)  # returns and overdue
    if branch_id is not None:
        pickup = and_(pickup, Hire.pickup_branch_id == branch_id)
        out = and_(out, Hire.return_branch_id == branch_id)
    # A hire has at most one check-in and one pickup inspection (unique keys): outer joins
    # bring issue 18's "checked in online" and "picked up in" without more queries.
    q = (select(Hire.id, Hire.reference, Hire.state, Hire.start_at, Hire.end_at, User.full_name,
                User.erased_at, Car.make, Car.model, Car.plate,
                HireCheckin.completed_at.label("checked_in_at"),
                Inspection.started_at.label("pickup_started_at"),
                Inspection.completed_at.label("pickup_done_at"),
                select(RentalAgreement.id).where(RentalAgreement.hire_id == Hire.id,
                                                 RentalAgreement.state == "failed")
                .exists().label("agreement_failed"))
         .join(Car, Car.id == Hire.car_id).join(User, User.id == Hire.customer_id)
         .outerjoin(HireCheckin, HireCheckin.hire_id == Hire.id)
         .outerjoin(Inspection, and_(Inspection.hire_id == Hire.id, Inspection.kind == "pickup"))
         .where(or_(pickup, out)))
    if query.strip():
        like = f"%{query.strip()}%"
        q = q.where(or_(Hire.reference.ilike(like), User.full_name.ilike(like),
                        Car.plate.ilike(like.replace(" ", ""))))
    pickups, returns, overdue = [], [], []
    checked_in: set[int] = set()
    pickup_seconds: dict[int, int] = {}
    agreement_failed: set[int] = set()
    for r in db.session.execute(q):
        hire = BoardHire(r.id, r.reference, r.state, r.start_at, r.end_at,
                         Person(r.full_name, r.erased_at is not None), CarLabel(r.make, r.model, r.plate))
        if r.agreement_failed:
            agreement_failed.add(hire.id)
        if hire.state == S.CONFIRMED.value:
            pickups.append(hire)
            if r.checked_in_at is not None:
                checked_in.add(hire.id)
        else:
            (overdue if hire.end_at < now else returns).append(hire)
            if r.pickup_done_at is not None:
                pickup_seconds[hire.id] = max(int((r.pickup_done_at - r.pickup_started_at).total_seconds()), 0)
    pickups.sort(key=lambda h: (h.start_at, h.id))
    returns.sort(key=lambda h: (h.end_at, h.id))
    overdue.sort(key=lambda h: (h.end_at, h.id))
    return Board(
        pickups=pickups, returns=returns, overdue=overdue,
        # Until NO_SHOW_GRACE_MINUTES have passed (then the scheduler marks a no-show).
        late={h.id: int((now - h.start_at).total_seconds() // 60) for h in pickups if h.start_at <= now},
        checked_in=frozenset(checked_in), pickup_seconds=pickup_seconds,
        agreement_failed=frozenset(agreement_failed),
    )



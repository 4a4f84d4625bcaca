"""The counter's board: today's and tomorrow's pickups and returns at a branch, overdue hires
first, filtered by a search as staff type. (A hire by its reference: app/hire_access.py.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple, Optional
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import and_, bindparam, or_, select

from ..extensions import db
from ..models import Car, Hire, HireCheckin, HireState, Inspection, RentalAgreement, User

S = HireState
WHEN_FORMAT = "%a %H:%M"  # a row's pickup or return time: the day and the time


class BoardHire(NamedTuple):
    """A hire as the board lists it: plain values read as columns, and what its row shows
    worked out once here (issue 19: a busy branch's 300 rows as ORM objects cost more than the
    page's target, then the template's work per row was most of the page). A tuple: built
    without a frozen dataclass's per-field `__setattr__`, read by the template as attributes."""

    id: int
    reference: str
    state: str
    start_at: datetime
    end_at: datetime
    customer_name: str
    customer_erased: bool
    car_label: str  # "make model · plate"
    kind: str  # "pickup", "return" or "overdue": the list it is in
    when_local: str  # its pickup time (pickups) or return time, in the branch's zone: "Mon 10:42"
    late: Optional[int] = None  # a pickup: minutes late to collect (the time passed, still confirmed)
    checked_in: bool = False  # a pickup checked in online (issue 18)
    took: Optional[int] = None  # out on hire: seconds its hand-over took (issue 18)
    agreement_failed: bool = False  # its rental agreement's job gave up: staff retry it


@dataclass(frozen=True)
class Board:
    pickups: list[BoardHire]
    returns: list[BoardHire]
    overdue: list[BoardHire]

    # By hire id, from the rows (each row carries its own for the page): worked out only when
    # asked for, never on the board's refresh.
    @property
    def late(self) -> dict[int, int]:
        """Minutes late to collect (pickup time passed, still confirmed)."""
        return {h.id: h.late for h in self.pickups if h.late is not None}

    @property
    def checked_in(self) -> frozenset[int]:
        """Pickups checked in online (issue 18)."""
        return frozenset(h.id for h in self.pickups if h.checked_in)

    @property
    def pickup_seconds(self) -> dict[int, int]:
        """How long each hand-over took (seconds from opening the pickup to the keys)."""
        return {h.id: h.took for h in (*self.overdue, *self.returns) if h.took is not None}

    @property
    def agreement_failed(self) -> frozenset[int]:
        """Hires whose rental agreement (or an addendum) the job gave up on: staff retry it."""
        return frozenset(h.id for h in (*self.pickups, *self.overdue, *self.returns) if h.agreement_failed)


# The board's statement, built once per shape (a branch or all, a search or none) with the
# window, the branch and the search as parameters: building it and its cache key anew for
# every refresh cost more Python than running it (issue 19).
_STATEMENTS: dict[tuple[bool, bool], object] = {}


def _statement(by_branch: bool, searching: bool):
    key = (by_branch, searching)
    statement = _STATEMENTS.get(key)
    if statement is not None:
        return statement
    window_end = bindparam("window_end")
    pickup = and_(Hire.state == S.CONFIRMED.value, Hire.start_at < window_end)
    out = and_(Hire.state == S.ACTIVE.value, Hire.end_at < window_end)  # returns and overdue
    if by_branch:
        pickup = and_(pickup, Hire.pickup_branch_id == bindparam("branch_id"))
        out = and_(out, Hire.return_branch_id == bindparam("branch_id"))
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
    if searching:
        q = q.where(or_(Hire.reference.ilike(bindparam("like")), User.full_name.ilike(bindparam("like")),
                        Car.plate.ilike(bindparam("plate_like"))))
    _STATEMENTS[key] = q
    return q


def board(*, branch_id: Optional[int], now: datetime, query: str = "") -> Board:
    """Today's and tomorrow's pickups and returns at a branch (all branches when None), plus
    overdue hires; `query` filters by booking reference, customer name or plate. One query."""
    zone = ZoneInfo(current_app.config["DEFAULT_TIMEZONE"])
    today = now.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    params: dict = {"window_end": (today + timedelta(days=2)).astimezone(now.tzinfo)}
    if branch_id is not None:
        params["branch_id"] = branch_id
    if query.strip():
        params["like"] = like = f"%{query.strip()}%"
        params["plate_like"] = like.replace(" ", "")
    rows = db.session.execute(_statement(branch_id is not None, bool(query.strip())), params)
    lists: dict[str, list[BoardHire]] = {"pickup": [], "return": [], "overdue": []}
    for (id_, reference, state, start_at, end_at, name, erased_at, make, model, plate, checked_in_at,
         pickup_started_at, pickup_done_at, agreement_failed) in rows:
        pickup = state == S.CONFIRMED.value  # else out on hire: a return, or overdue
        kind = "pickup" if pickup else "overdue" if end_at < now else "return"
        # Until NO_SHOW_GRACE_MINUTES have passed (then the scheduler marks a no-show).
        late = int((now - start_at).total_seconds() // 60) if pickup and start_at <= now else None
        took = (max(int((pickup_done_at - pickup_started_at).total_seconds()), 0)
                if not pickup and pickup_done_at is not None else None)
        lists[kind].append(BoardHire(
            id_, reference, state, start_at, end_at, name, erased_at is not None, f"{make} {model} · {plate}",
            kind, (start_at if pickup else end_at).astimezone(zone).strftime(WHEN_FORMAT), late,
            pickup and checked_in_at is not None, took, bool(agreement_failed)))
    lists["pickup"].sort(key=lambda h: (h.start_at, h.id))
    for kind in ("return", "overdue"):
        lists[kind].sort(key=lambda h: (h.end_at, h.id))
    return Board(pickups=lists["pickup"], returns=lists["return"], overdue=lists["overdue"])

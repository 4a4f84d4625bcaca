"""The counter's board: today's and tomorrow's pickups and returns at a branch, overdue hires
first, filtered by a search as staff type. (A hire by its reference: app/hire_access.py.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Optional
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import or_, select
from sqlalchemy.orm import joinedload

from ..extensions import db
from ..models import Car, Hire, HireCheckin, HireState, Inspection, User

S = HireState


@dataclass(frozen=True)
class Board:
    pickups: list[Hire]
    returns: list[Hire]
    overdue: list[Hire]
    late: dict[int, int]  # hire id -> minutes late to collect (pickup time passed, still confirmed)
    # Issue 18: pickups checked in online, and how long each hand-over took (seconds from
    # opening the pickup to the keys), shown on the cars that went out.
    checked_in: frozenset[int] = frozenset()
    pickup_seconds: Optional[dict[int, int]] = None


def board(*, branch_id: Optional[int], now: datetime, query: str = "") -> Board:
    """Today's and tomorrow's pickups and returns at a branch (all branches when None), plus
    overdue hires; `query` filters by booking reference, customer name or plate."""
    zone = ZoneInfo(current_app.config["DEFAULT_TIMEZONE"])
    today = now.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    window_end = (today + timedelta(days=2)).astimezone(now.tzinfo)
    base = (select(Hire).join(Hire.car).join(Hire.customer)
            .options(joinedload(Hire.car), joinedload(Hire.customer)))
    if query.strip():
        like = f"%{query.strip()}%"
        base = base.where(or_(Hire.reference.ilike(like), User.full_name.ilike(like),
                              Car.plate.ilike(like.replace(" ", ""))))
    pickups = base.where(Hire.state == S.CONFIRMED.value, Hire.start_at < window_end)
    returns = base.where(Hire.state == S.ACTIVE.value, Hire.end_at < window_end, Hire.end_at >= now)
    overdue = base.where(Hire.state == S.ACTIVE.value, Hire.end_at < now)
    if branch_id is not None:
        pickups = pickups.where(Hire.pickup_branch_id == branch_id)
        returns = returns.where(Hire.return_branch_id == branch_id)
        overdue = overdue.where(Hire.return_branch_id == branch_id)
    pickup_list = list(db.session.scalars(pickups.order_by(Hire.start_at)).unique())
    return_list = list(db.session.scalars(returns.order_by(Hire.end_at)).unique())
    overdue_list = list(db.session.scalars(overdue.order_by(Hire.end_at)).unique())
    return Board(
        pickups=pickup_list, returns=return_list, overdue=overdue_list,
        # Until NO_SHOW_GRACE_MINUTES have passed (then the scheduler marks a no-show).
        late={h.id: int((now - h.start_at).total_seconds() // 60) for h in pickup_list if h.start_at <= now},
        checked_in=checked_in_online([h.id for h in pickup_list]),
        pickup_seconds=pickup_durations([h.id for h in return_list + overdue_list]),
    )


def checked_in_online(hire_ids: list[int]) -> frozenset[int]:
    """Which of these hires the customer checked in online (details, terms, licence photo)."""
    if not hire_ids:
        return frozenset()
    return frozenset(db.session.scalars(select(HireCheckin.hire_id).where(
        HireCheckin.hire_id.in_(hire_ids), HireCheckin.completed_at.is_not(None))))


def pickup_durations(hire_ids: list[int]) -> dict[int, int]:
    """Seconds from opening each pickup at the counter to handing over the keys."""
    if not hire_ids:
        return {}
    rows = db.session.execute(select(Inspection.hire_id, Inspection.started_at, Inspection.completed_at)
                              .where(Inspection.hire_id.in_(hire_ids), Inspection.kind == "pickup",
                                     Inspection.completed_at.is_not(None))).all()
    return {hire_id: max(int((done - started).total_seconds()), 0) for hire_id, started, done in rows}


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
from ..models import Car, Hire, HireState, User

S = HireState


@dataclass(frozen=True)
class Board:
    pickups: list[Hire]
    returns: list[Hire]
    overdue: list[Hire]
    late: dict[int, int]  # hire id -> minutes late to collect (pickup time passed, still confirmed)


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
    return Board(
        pickups=pickup_list,
        returns=list(db.session.scalars(returns.order_by(Hire.end_at)).unique()),
        overdue=list(db.session.scalars(overdue.order_by(Hire.end_at)).unique()),
        # Until NO_SHOW_GRACE_MINUTES have passed (then the scheduler marks a no-show).
        late={h.id: int((now - h.start_at).total_seconds() // 60) for h in pickup_list if h.start_at <= now},
    )

"""A hire (booking), its state history, and the occupancy rows that keep cars single-booked.

A hire moves between states only through `Hire.transition`, the one place that knows the
allowed moves, records who moved it and why, and keeps the car's occupancy in step.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Optional

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, func, select, text
from sqlalchemy.dialects.postgresql import ExcludeConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .fleet import Branch, Car, MaintenanceBlock
from .types import UTCDateTime, utcnow
from .users import User


class HireState(str, enum.Enum):
    HELD = "held"
    CONFIRMED = "confirmed"
    ACTIVE = "active"
    RETURNED = "returned"
    CLOSED = "closed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    NO_SHOW = "no_show"
    REFUSED_AT_PICKUP = "refused_at_pickup"


S = HireState
# Allowed moves; anything else is a bug or a race and is refused.
TRANSITIONS: dict[HireState, frozenset[HireState]] = {
    S.HELD: frozenset({S.CONFIRMED, S.CANCELLED, S.EXPIRED}),
    S.CONFIRMED: frozenset({S.ACTIVE, S.CANCELLED, S.NO_SHOW, S.REFUSED_AT_PICKUP}),
    S.ACTIVE: frozenset({S.RETURNED}),
    S.RETURNED: frozenset({S.CLOSED}),
    S.CLOSED: frozenset(),
    S.CANCELLED: frozenset(),
    S.EXPIRED: frozenset(),
    S.NO_SHOW: frozenset(),
    S.REFUSED_AT_PICKUP: frozenset(),
}
# States in which the hire keeps the car from anyone else.
OCCUPYING_STATES = frozenset({S.HELD, S.CONFIRMED, S.ACTIVE})
# States in which the customer may still cancel or change the booking online (before pickup).
CANCELLABLE_STATES = frozenset({S.HELD, S.CONFIRMED})
HIRE_STATE_VALUES = tuple(s.value for s in HireState)


@dataclass(frozen=True)
class PriceBreakdown:
    """A hire's frozen price as every page shows it: the lines before VAT, their subtotal,
    the VAT line and its amount (the lines and VAT add up to the hire's total)."""
    lines: tuple[dict, ...]
    subtotal_pence: int
    vat_label: str
    vat_pence: int


class InvalidTransition(Exception):
    """A hire was asked to move to a state it cannot reach from where it is."""


class Hire(db.Model):
    __tablename__ = "hires"
    __table_args__ = (
        CheckConstraint("end_at > start_at", name="ends_after_start"),
        CheckConstraint(f"state IN {HIRE_STATE_VALUES!r}", name="state_known"),
        CheckConstraint("total_pence >= 0", name="total_not_negative"),
        CheckConstraint("deposit_pence >= 0", name="deposit_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(12), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    car_id: Mapped[int] = mapped_column(ForeignKey("cars.id"), index=True)
    pickup_branch_id: Mapped[int] = mapped_column(ForeignKey("branches.id"))
    return_branch_id: Mapped[int] = mapped_column(ForeignKey("branches.id"))
    start_at: Mapped[datetime] = mapped_column(UTCDateTime())
    end_at: Mapped[datetime] = mapped_column(UTCDateTime())
    state: Mapped[str] = mapped_column(String(20), default=S.HELD.value, index=True)
    # Frozen at confirmation: [{"code": ..., "label": ..., "amount_pence": int}, ...]
    price_lines: Mapped[list] = mapped_column(JSON, default=list)
    total_pence: Mapped[int] = mapped_column(default=0)
    deposit_pence: Mapped[int] = mapped_column(default=0)
    currency: Mapped[str] = mapped_column(String(3), default="GBP")
    # Booking (issue 4): the chosen extras {code: quantity} and the VAT within total_pence,
    # frozen with the price lines.
    extras: Mapped[dict] = mapped_column(JSON, default=dict, server_default=text("'{}'"))
    vat_pence: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    # One confirm = one hire, however often it is posted.
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    hold_expires_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}

    customer: Mapped[User] = relationship()
    car: Mapped[Car] = relationship()
    pickup_branch: Mapped[Branch] = relationship(foreign_keys=[pickup_branch_id])
    return_branch: Mapped[Branch] = relationship(foreign_keys=[return_branch_id])
    state_changes: Mapped[list["HireStateChange"]] = relationship(
        back_populates="hire", order_by="HireStateChange.id", cascade="all, delete-orphan"
    )
    occupancy: Mapped[Optional["Occupancy"]] = relationship(
        back_populates="hire", uselist=False, cascade="all, delete-orphan"
    )

    @property
    def hire_state(self) -> HireState:
        return HireState(self.state)

    @property
    def price_breakdown(self) -> PriceBreakdown:
        """The frozen price lines split as the breakdown shows them (VAT after the subtotal)."""
        lines = tuple(line for line in self.price_lines or () if line.get("code") != "vat")
        vat_lines = [line for line in self.price_lines or () if line.get("code") == "vat"]
        vat = sum(line["amount_pence"] for line in vat_lines) if vat_lines else self.vat_pence
        label = vat_lines[0]["label"] if vat_lines else "VAT"
        return PriceBreakdown(lines, sum(line["amount_pence"] for line in lines), label, vat)

    def can_move_to(self, to: HireState) -> bool:
        return to in TRANSITIONS[self.hire_state]

    def can_cancel(self, now: datetime) -> bool:
        """May the customer still cancel online? Held or confirmed, and not yet picked up."""
        return self.hire_state in CANCELLABLE_STATES and now < self.start_at

    def can_change(self, now: datetime) -> bool:
        """May the customer still change the dates or extras online? As for cancelling."""
        return self.hire_state in CANCELLABLE_STATES and now < self.start_at

    def occupy(self, until: datetime) -> None:
        """Claim the car from start until `until` (end plus any cleaning buffer)."""
        self.occupancy = Occupancy(car=self.car, car_id=self.car_id, starts_at=self.start_at,
                                   ends_at=until)

    def transition(self, to: HireState, *, by: Optional[User], why: str = "",
                   now: Optional[datetime] = None) -> "HireStateChange":
        """Move to `to`, recording the change; releases the car when leaving the occupying states."""
        if not self.can_move_to(to):
            raise InvalidTransition(f"A {self.state} hire cannot become {to.value}")
        change = HireStateChange(
            from_state=self.state, to_state=to.value, by_user_id=by.id if by else None,
            reason=why, at=now or utcnow(),
        )
        self.state_changes.append(change)
        self.state = to.value
        if to not in OCCUPYING_STATES:
            self.occupancy = None
        return change


class HireStateChange(db.Model):
    __tablename__ = "hire_state_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    hire_id: Mapped[int] = mapped_column(ForeignKey("hires.id", ondelete="CASCADE"), index=True)
    from_state: Mapped[Optional[str]] = mapped_column(String(20))
    to_state: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    by_user_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[str] = mapped_column(String(300), default="")

    hire: Mapped[Hire] = relationship(back_populates="state_changes")
    by_user: Mapped[Optional[User]] = relationship()


class Occupancy(db.Model):
    """One row per period a car is taken, by an occupying hire or a maintenance block.

    Hires and maintenance blocks share this table so that one PostgreSQL exclusion
    constraint forbids any overlap between them, even under concurrent transactions (on
    SQLite, the triggers of migration 0010 do the same).
    """

    __tablename__ = "occupancies"
    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        CheckConstraint(
            "(hire_id IS NULL) <> (maintenance_block_id IS NULL)", name="one_owner"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    car_id: Mapped[int] = mapped_column(ForeignKey("cars.id"), index=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    hire_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("hires.id", ondelete="CASCADE"), unique=True
    )
    maintenance_block_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("maintenance_blocks.id", ondelete="CASCADE"), unique=True
    )

    car: Mapped[Car] = relationship()
    hire: Mapped[Optional[Hire]] = relationship(back_populates="occupancy")
    maintenance_block: Mapped[Optional[MaintenanceBlock]] = relationship()


NO_OVERLAP_CONSTRAINT = "occupancies_no_overlap"
Occupancy.__table__.append_constraint(
    ExcludeConstraint(
        (Occupancy.__table__.c.car_id, "="),
        (func.tstzrange(Occupancy.__table__.c.starts_at, Occupancy.__table__.c.ends_at, text("'[)'")), "&&"),
        name=NO_OVERLAP_CONSTRAINT,
        using="gist",
    ).ddl_if(dialect="postgresql")
)


def lock_car_calendar(car_id: int) -> None:
    """Make this transaction the only writer of the car's occupancies until it ends.

    The exclusion constraint alone keeps overlaps out, but two PostgreSQL transactions
    inserting overlapping rows at once each wait for the other's row and one is killed as a
    deadlock (a 503 instead of "that car was just taken"). Every writer of a car's
    occupancies takes this row lock first (after any lock on the hire or the customer), so
    they queue per car; availability checked after it sees the winner's commit. FOR NO KEY
    UPDATE leaves foreign-key checks against the car free. SQLite writes one at a time anyway.
    """
    db.session.execute(select(Car.id).where(Car.id == car_id).with_for_update(key_share=True))


# Booking (issue 4): the availability search probes each car's occupancies by time
# (`car_id = ? AND starts_at < ? AND ends_at > ?`), answered from this index alone.
occupancies_by_car_and_time = Index("ix_occupancies_car_id_starts_at", Occupancy.car_id,
                                    Occupancy.starts_at, Occupancy.ends_at)

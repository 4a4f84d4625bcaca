"""Named rate tables the price engine reads: duration tiers, seasons, extras, one-way fees.

The per-class daily rate lives on `CarClass` (and `Car.daily_rate_override_pence`); the
weekend rule, young-driver band and VAT are named settings in `app/config.py`. A hire
freezes its price lines when it is created, so editing these tables never changes an
existing booking.
"""

from __future__ import annotations

from datetime import date
from typing import Optional

from sqlalchemy import CheckConstraint, Date, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .fleet import Branch


class DurationTier(db.Model):
    """Hires of at least `min_days` charged days get `percent_off` the rental."""

    __tablename__ = "duration_tiers"
    __table_args__ = (
        CheckConstraint("min_days >= 1", name="min_days_positive"),
        CheckConstraint("percent_off >= 0 AND percent_off < 100", name="percent_off_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    min_days: Mapped[int] = mapped_column(unique=True)
    percent_off: Mapped[int]


class Season(db.Model):
    """Periods starting on a local date in [starts_on, ends_on] cost `percent` more (or less)."""

    __tablename__ = "seasons"
    __table_args__ = (
        CheckConstraint("ends_on >= starts_on", name="ends_after_start"),
        CheckConstraint("percent > -100 AND percent <= 200", name="percent_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(24), unique=True)
    name: Mapped[str] = mapped_column(String(60))
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date] = mapped_column(Date)
    percent: Mapped[int]


class Extra(db.Model):
    """Child seat, GPS, additional driver, cover levels: per day, capped per unit per rental.

    Extras sharing a non-empty `group` exclude each other (one cover level at most).
    """

    __tablename__ = "extras"
    __table_args__ = (
        CheckConstraint("per_day_pence >= 0", name="per_day_not_negative"),
        CheckConstraint("cap_pence IS NULL OR cap_pence >= 0", name="cap_not_negative"),
        CheckConstraint("max_quantity >= 1", name="max_quantity_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(24), unique=True)
    name: Mapped[str] = mapped_column(String(60))
    description: Mapped[str] = mapped_column(String(200), default="")
    per_day_pence: Mapped[int]
    cap_pence: Mapped[Optional[int]]
    max_quantity: Mapped[int] = mapped_column(default=1)
    group: Mapped[str] = mapped_column(String(24), default="")
    sort_order: Mapped[int] = mapped_column(default=0)
    active: Mapped[bool] = mapped_column(default=True)


class OneWayFee(db.Model):
    """The fee for picking up at one branch and returning to another (else the default)."""

    __tablename__ = "one_way_fees"
    __table_args__ = (
        UniqueConstraint("from_branch_id", "to_branch_id"),
        CheckConstraint("fee_pence >= 0", name="fee_not_negative"),
        CheckConstraint("from_branch_id <> to_branch_id", name="different_branches"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    from_branch_id: Mapped[int] = mapped_column(ForeignKey("branches.id"))
    to_branch_id: Mapped[int] = mapped_column(ForeignKey("branches.id"))
    fee_pence: Mapped[int]

    from_branch: Mapped[Branch] = relationship(foreign_keys=[from_branch_id])
    to_branch: Mapped[Branch] = relationship(foreign_keys=[to_branch_id])

"""Money that moved, or is meant to: card charges, deposit holds, captures, refunds, crypto."""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import JSON, CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .hires import Hire
from .types import UTCDateTime, utcnow

PAYMENT_METHODS = ("card", "crypto")
PAYMENT_KINDS = ("charge", "deposit_hold", "capture", "release", "refund")
PAYMENT_STATES = ("pending", "processing", "succeeded", "failed", "cancelled", "review")


class Payment(db.Model):
    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint(f"method IN {PAYMENT_METHODS!r}", name="method_known"),
        CheckConstraint(f"kind IN {PAYMENT_KINDS!r}", name="kind_known"),
        CheckConstraint(f"state IN {PAYMENT_STATES!r}", name="state_known"),
        CheckConstraint("amount_pence >= 0", name="amount_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    hire_id: Mapped[int] = mapped_column(ForeignKey("hires.id"), index=True)
    method: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(12), default="pending")
    amount_pence: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3), default="GBP")
    # Fixed per business action, e.g. "hire:42:deposit:1"; sent to the provider as well.
    idempotency_key: Mapped[str] = mapped_column(String(80), unique=True)
    provider_ref: Mapped[str] = mapped_column(String(120), default="")
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    failure_message: Mapped[str] = mapped_column(String(300), default="")
    capture_before: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())

    hire: Mapped[Hire] = relationship()

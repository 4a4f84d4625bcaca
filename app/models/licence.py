"""Driving-licence checks: one row per request to the licence service, with its answer.

A check is created `pending` when the customer (or counter staff, for a hire) asks for it;
the `check_licence` job moves it, exactly once, to `verified`, `refused` or `failed`
(the service could not answer: "try again later"). The customer's profile mirrors the
latest check. The raw response is kept as evidence of what the service said, and when.
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Optional

from sqlalchemy import JSON, CheckConstraint, Date, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .hires import Hire
from .types import UTCDateTime, utcnow
from .users import User


class LicenceCheckStatus(str, enum.Enum):
    PENDING = "pending"
    VERIFIED = "verified"
    REFUSED = "refused"
    FAILED = "failed"  # no usable answer from the service; the customer may try again


LICENCE_CHECK_STATUS_VALUES = tuple(s.value for s in LicenceCheckStatus)


class LicenceCheck(db.Model):
    __tablename__ = "licence_checks"
    __table_args__ = (
        CheckConstraint(f"status IN {LICENCE_CHECK_STATUS_VALUES!r}", name="status_known"),
        CheckConstraint("penalty_points IS NULL OR penalty_points >= 0", name="points_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Whose licence; and who asked (the customer themselves, or counter staff at pickup).
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    requested_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    hire_id: Mapped[Optional[int]] = mapped_column(ForeignKey("hires.id", ondelete="SET NULL"),
                                                   index=True)
    # Issue 18: an additional driver's licence (named at online check-in), not the user's own.
    driver_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("hire_drivers.id", ondelete="CASCADE"), index=True)
    # What was checked, as sent: the profile can change later, the check cannot.
    licence_number: Mapped[str] = mapped_column(String(16))
    check_code: Mapped[str] = mapped_column(String(16))
    # Sent to the service; one per check, so retried calls and repeated jobs are one request.
    idempotency_key: Mapped[str] = mapped_column(String(80), unique=True)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    completed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(12), default=LicenceCheckStatus.PENDING.value)
    reason_code: Mapped[str] = mapped_column(String(40), default="")
    message: Mapped[str] = mapped_column(String(300), default="")
    raw_response: Mapped[Optional[dict]] = mapped_column(JSON)
    # The facts the rental rules use, taken from the response.
    valid_from: Mapped[Optional[date]] = mapped_column(Date)
    valid_to: Mapped[Optional[date]] = mapped_column(Date)
    categories: Mapped[list] = mapped_column(JSON, default=list)
    held_since: Mapped[Optional[date]] = mapped_column(Date)  # full entitlement to the required category
    penalty_points: Mapped[Optional[int]]
    disqualified: Mapped[Optional[bool]]

    user: Mapped[User] = relationship(foreign_keys=[user_id])
    requested_by: Mapped[Optional[User]] = relationship(foreign_keys=[requested_by_id])
    hire: Mapped[Optional[Hire]] = relationship()

    @property
    def check_status(self) -> LicenceCheckStatus:
        return LicenceCheckStatus(self.status)

    @property
    def is_final(self) -> bool:
        return self.status != LicenceCheckStatus.PENDING.value

    def __repr__(self) -> str:
        return f"<LicenceCheck {self.id} {self.status}>"

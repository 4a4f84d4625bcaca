"""Online check-in before pickup (issue 18): the customer's confirmations, their licence
photo and the additional drivers named on the hire.

One `HireCheckin` per hire, filled in by the customer from "My bookings" up to
CHECKIN_OPENS_HOURS before pickup; it is complete once the details are confirmed, the terms
(a version of docs/terms/) accepted and the licence photo uploaded. Additional drivers are
rows of `HireDriver`; their licences are checked by the licence job like the hirer's
(`LicenceCheck.driver_id`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .hires import Hire
from .types import UTCDateTime, utcnow


class HireCheckin(db.Model):
    __tablename__ = "hire_checkins"

    id: Mapped[int] = mapped_column(primary_key=True)
    hire_id: Mapped[int] = mapped_column(ForeignKey("hires.id", ondelete="CASCADE"), unique=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    details_confirmed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    terms_version: Mapped[str] = mapped_column(String(20), default="")
    terms_accepted_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    # The front of the licence: checked and re-encoded as car photos are, named by content hash.
    licence_photo_filename: Mapped[str] = mapped_column(String(80), default="")
    licence_photo_content_type: Mapped[str] = mapped_column(String(20), default="")
    completed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())

    hire: Mapped[Hire] = relationship()

    @property
    def is_complete(self) -> bool:
        return self.completed_at is not None


class HireDriver(db.Model):
    """Someone else who will drive the hired car, named by the hirer at check-in."""

    __tablename__ = "hire_drivers"

    id: Mapped[int] = mapped_column(primary_key=True)
    hire_id: Mapped[int] = mapped_column(ForeignKey("hires.id", ondelete="CASCADE"), index=True)
    full_name: Mapped[str] = mapped_column(String(120))
    # Emptied when the retention period ends or the hirer's account is erased.
    licence_number: Mapped[str] = mapped_column(String(16), default="")
    added_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    hire: Mapped[Hire] = relationship()

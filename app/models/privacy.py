"""The customer's own data (UK GDPR, issue 18): a download of everything held about them,
built by a job and kept for DATA_EXPORT_HOURS behind their sign-in."""

from __future__ import annotations

from datetime import datetime
from typing import Mapping, Optional

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .state_machine import StateMachine
from .types import UTCDateTime, utcnow

EXPORT_STATES = ("pending", "ready", "failed", "expired")
# The one way an export's state moves (app/models/state_machine.py).
EXPORT_TRANSITIONS: Mapping[str, frozenset[str]] = {
    "pending": frozenset({"ready", "failed"}),
    "ready": frozenset({"expired"}),
    "failed": frozenset(),
    "expired": frozenset(),
}


class DataExport(StateMachine, db.Model):
    __tablename__ = "data_exports"
    __table_args__ = (CheckConstraint(f"state IN {EXPORT_STATES!r}", name="state_known"),)

    TRANSITIONS = EXPORT_TRANSITIONS

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(10), default="pending")
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    ready_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    expires_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    # A random name in the exports folder: never guessable from the id.
    filename: Mapped[str] = mapped_column(String(80), default="")
    size_bytes: Mapped[int] = mapped_column(default=0)

    def available(self, now: datetime) -> bool:
        return self.state == "ready" and self.expires_at is not None and now < self.expires_at

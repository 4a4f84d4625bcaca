"""Outgoing email, recorded before it is sent so that a retried job never sends twice.

Its state moves through one transition table (`EMAIL_TRANSITIONS`) and one method,
`OutboundEmail.move_to` (app/models/state_machine.py), which records the time it was sent
or why it failed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Mapping, Optional

from sqlalchemy import ForeignKey, LargeBinary, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .state_machine import InvalidStateTransition, StateMachine
from .types import UTCDateTime, utcnow

EMAIL_STATES = ("queued", "sent", "failed")
# Queued until the mail server takes it (sent) or a send fails (failed, saying why). A send
# that never reached the server is retried within the queue's bounds, so a failed email may
# still be sent, or fail again (the error is recorded anew); sent is final.
EMAIL_TRANSITIONS: Mapping[str, frozenset[str]] = {
    "queued": frozenset({"sent", "failed"}),
    "failed": frozenset({"sent", "failed"}),
    "sent": frozenset(),
}
DEFAULT_ATTACHMENT_NAME = "attachment.txt"
DEFAULT_ATTACHMENT_TYPE = "text/plain"


@dataclass(frozen=True)
class Attachment:
    """A file sent with an email: text (the booking's .ics entry) or bytes (a PDF)."""

    filename: str
    mimetype: str
    content: str | bytes

    @property
    def data(self) -> bytes:
        return self.content.encode("utf-8") if isinstance(self.content, str) else self.content

    @property
    def is_text(self) -> bool:
        return isinstance(self.content, str)

    @property
    def size_bytes(self) -> int:
        return len(self.data)


class InvalidEmailTransition(InvalidStateTransition):
    """An email was asked to move outside EMAIL_TRANSITIONS (say, a sent one to failed)."""


class OutboundEmail(StateMachine, db.Model):
    """One email, recorded before it is sent. Its state moves only through `move_to`."""

    __tablename__ = "outbound_emails"
    TRANSITIONS = EMAIL_TRANSITIONS
    InvalidTransition = InvalidEmailTransition

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(80), unique=True)
    to_address: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(200))
    body_text: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(8), default="queued")
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    # Set (committed) just before the message is handed to the mail server, cleared when the
    # server refused it: a job that finds it set was killed mid-send, and does not send again.
    sending_since: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    # Booking (issue 4): one optional text attachment, e.g. the booking's .ics calendar entry.
    attachment_filename: Mapped[str] = mapped_column(String(100), default="", server_default=text("''"))
    attachment_mimetype: Mapped[str] = mapped_column(String(60), default="", server_default=text("''"))
    attachment_text: Mapped[Optional[str]] = mapped_column(Text)
    # Paperwork (issue 18): files of any type (the rental agreement's PDF), in order.
    files: Mapped[list["EmailFile"]] = relationship(order_by="EmailFile.id", cascade="all, delete-orphan")

    def _on_move(self, to: str, *, now: Optional[datetime] = None, error: str = "") -> None:
        """sent: when, and no error left; failed: why (`error`)."""
        if to == "sent":
            self.sent_at = now or utcnow()
            self.last_error = ""
        else:
            self.last_error = error[:300]

    @property
    def attachments(self) -> list[Attachment]:
        """The files sent with this email, in order: the text attachment, then the files."""
        found = [Attachment(f.filename, f.mimetype, f.data) for f in self.files]
        if not self.attachment_text:
            return found
        return [Attachment(self.attachment_filename or DEFAULT_ATTACHMENT_NAME,
                           self.attachment_mimetype or DEFAULT_ATTACHMENT_TYPE,
                           self.attachment_text), *found]


class EmailFile(db.Model):
    """A file attached to an email, kept with it so that a retried send sends the same bytes."""

    __tablename__ = "email_files"

    id: Mapped[int] = mapped_column(primary_key=True)
    email_id: Mapped[int] = mapped_column(ForeignKey("outbound_emails.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(100))
    mimetype: Mapped[str] = mapped_column(String(60))
    data: Mapped[bytes] = mapped_column(LargeBinary)

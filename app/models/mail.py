"""Outgoing email, recorded before it is sent so that a retried job never sends twice."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Optional

from sqlalchemy import ForeignKey, LargeBinary, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .types import UTCDateTime, utcnow

EMAIL_STATES = ("queued", "sent", "failed")
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


class OutboundEmail(db.Model):
    __tablename__ = "outbound_emails"

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

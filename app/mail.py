"""Queue an email exactly once per business event."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .extensions import db
from .jobs import enqueue
from .models import OutboundEmail


def queue_email(*, key: str, to: str, subject: str, body: str) -> OutboundEmail:
    """Record the email under `key` (once) and send it from a job. Commits."""
    existing = db.session.scalar(select(OutboundEmail).where(OutboundEmail.idempotency_key == key))
    if existing is not None:
        return existing
    email = OutboundEmail(idempotency_key=key, to_address=to, subject=subject, body_text=body)
    db.session.add(email)
    try:
        db.session.commit()
    except IntegrityError:  # a concurrent attempt recorded it first
        db.session.rollback()
        return db.session.scalars(
            select(OutboundEmail).where(OutboundEmail.idempotency_key == key)).one()
    from .jobs.mail import send_email
    enqueue(send_email, email.id, job_id=f"email-{email.id}")
    return email

"""Every email the portal sends, built one way and queued exactly once per business event.

`queue_email` is the one builder: the body is a text template under templates/<area>/emails/
(e.g. "booking/emails/confirmed.txt", "accounts/emails/password_reset.txt") rendered with
the given context, so the wording of every email lives in a template and none is written
inline. It then records the email under its idempotency key (once) and sends it from a job
(`record_email`, also what a test uses for a plain body).
"""

from __future__ import annotations

from typing import Any, Sequence

from flask import render_template
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .extensions import db
from .models import EmailFile, OutboundEmail
from .queueing import enqueue

JOB_ID = "email-{}"  # one job per email: enqueued twice, it is still one job
SEND_TASK = "app.jobs.mail.send_email"  # by name: the job imports this module, not the reverse


def queue_email(*, key: str, to: str, subject: str, template: str,
                attachment: tuple[str, str, str] | None = None,
                files: Sequence[tuple[str, str, bytes]] = (), **context: Any) -> OutboundEmail:
    """Build the email from `template` and `context`, record it under `key` (once) and send
    it from a job. Commits. Already recorded under `key`: that email, nothing rendered.

    `attachment` is an optional text file: (filename, MIME type, content), e.g. an .ics entry;
    `files` are files of any type, (filename, MIME type, bytes), e.g. a PDF. They are stored
    with the email, so every attempt to send it sends the same bytes.
    """
    existing = _recorded(key)
    if existing is not None:
        return existing
    return record_email(key=key, to=to, subject=subject,
                        body=render_template(template, **context), attachment=attachment, files=files)


def record_email(*, key: str, to: str, subject: str, body: str,
                 attachment: tuple[str, str, str] | None = None,
                 files: Sequence[tuple[str, str, bytes]] = ()) -> OutboundEmail:
    """Record an email whose body is built (by `queue_email`) under `key`, once, and
    enqueue its sending. Commits."""
    existing = _recorded(key)
    if existing is not None:
        return existing
    email = OutboundEmail(idempotency_key=key, to_address=to, subject=subject, body_text=body)
    if attachment is not None:
        email.attachment_filename, email.attachment_mimetype, email.attachment_text = attachment
    email.files = [EmailFile(filename=name, mimetype=mimetype, data=data) for name, mimetype, data in files]
    db.session.add(email)
    try:
        db.session.commit()
    except IntegrityError:  # a concurrent attempt recorded it first
        db.session.rollback()
        return db.session.scalars(
            select(OutboundEmail).where(OutboundEmail.idempotency_key == key)).one()
    enqueue(SEND_TASK, email.id, job_id=JOB_ID.format(email.id))
    return email


def _recorded(key: str) -> OutboundEmail | None:
    return db.session.scalar(select(OutboundEmail).where(OutboundEmail.idempotency_key == key))

"""Sending recorded emails. Safe to run twice: a sent email is never sent again."""

from __future__ import annotations

from sqlalchemy import select

from ..extensions import db
from ..integrations import mail as mail_client
from ..logging_setup import log
from ..models import OutboundEmail, utcnow
from . import task

JOB_ID = "email-{}"  # one job per email: enqueued twice, it is still one job


@task
def send_email(email_id: int) -> None:
    email = db.session.scalar(
        select(OutboundEmail).where(OutboundEmail.id == email_id).with_for_update()
    )
    if email is None or email.state == "sent":
        db.session.rollback()
        return
    email.attempts += 1
    try:
        mail_client.send(email)
    except mail_client.MailError as exc:
        email.last_error = str(exc)[:300]
        email.state = "failed"
        db.session.commit()
        raise  # the queue retries within its bounds
    email.state = "sent"
    email.sent_at = utcnow()
    email.last_error = ""
    db.session.commit()
    log().info("email sent", email_id=email.id, key=email.idempotency_key)

"""Sending recorded emails: at most once per email, even when the worker dies mid-send.

Just before the message goes to the mail server, the send is recorded (`sending_since`,
committed): a later run that finds it set knows an earlier one was stopped while the server
may have been taking the message (the worker was killed), and does not send it again; the
email is marked failed for staff to see instead. A send the server refused, or that never
reached it, clears the mark and is retried within the queue's bounds. Every attempt carries
the same Message-ID (app/integrations/mail.py), so a copy that does arrive twice is one.
The email's state moves only through `OutboundEmail.move_to` (its transition table).
"""

from __future__ import annotations

from sqlalchemy import update

from ..extensions import db
from ..integrations import mail as mail_client
from ..logging_setup import log
from ..mail import JOB_ID  # noqa: F401  (the job id of an email: recovery queues it again)
from ..models import OutboundEmail, utcnow
from ..queueing import task

INTERRUPTED = ("Sending was interrupted while the mail server was taking it; it may have "
               "arrived, so it is not sent again automatically.")


class AlreadyHandedOver(Exception):
    """Another run recorded the send first (between our read and our claim)."""


@task
def send_email(email_id: int) -> None:
    email = db.session.get(OutboundEmail, email_id, populate_existing=True)
    if email is None or email.state == "sent":
        db.session.rollback()
        return
    if email.sending_since is not None:
        _interrupted(email)
        return
    email.attempts += 1
    db.session.commit()

    def handing_over() -> None:
        """Record the send (committed) before the server can have the message: claimed by
        exactly one run, whichever database this is."""
        claimed = db.session.execute(
            update(OutboundEmail)
            .where(OutboundEmail.id == email_id, OutboundEmail.sending_since.is_(None),
                   OutboundEmail.state != "sent")
            .values(sending_since=utcnow())
            .execution_options(synchronize_session=False)).rowcount
        db.session.commit()
        if claimed != 1:
            raise AlreadyHandedOver()

    try:
        mail_client.send(email, handing_over=handing_over)
    except AlreadyHandedOver:
        log().info("email already being sent by another run", email_id=email_id)
        return
    except mail_client.MailError as exc:
        db.session.rollback()
        email = db.session.get(OutboundEmail, email_id, populate_existing=True)
        if email.state == "sent":  # another run sent it meanwhile: sent is final
            db.session.rollback()
            return
        email.move_to("failed", error=str(exc))
        if exc.maybe_delivered:
            log().warning("email may have been delivered; not sent again", email_id=email_id,
                          error=str(exc))
            db.session.commit()
            return
        email.sending_since = None  # it did not reach the server: a retry may send it
        db.session.commit()
        raise  # the queue retries within its bounds
    email = db.session.get(OutboundEmail, email_id, populate_existing=True)
    email.move_to("sent", now=utcnow())
    db.session.commit()
    log().info("email sent", email_id=email.id, key=email.idempotency_key)


def _interrupted(email: OutboundEmail) -> None:
    email.move_to("failed", error=INTERRUPTED)
    db.session.commit()
    log().warning("email send was interrupted earlier; not sent again", email_id=email.id,
                  key=email.idempotency_key)

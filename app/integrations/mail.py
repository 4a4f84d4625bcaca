"""SMTP client (with a timeout), or the development outbox that only records."""

from __future__ import annotations

import re
import smtplib
from email.message import EmailMessage
from typing import Callable

from flask import current_app

from ..models import OutboundEmail

# What RFC 5322 allows on the left of a Message-ID (dot-atom text).
_NOT_ATEXT = re.compile(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")


class MailError(Exception):
    """The email was not sent. `maybe_delivered`: the failure came while the server was
    taking the message (e.g. no answer to it), so it may have arrived all the same."""

    def __init__(self, message: str, *, maybe_delivered: bool = False):
        super().__init__(message)
        self.maybe_delivered = maybe_delivered


def message_id(email: OutboundEmail) -> str:
    """The same on every attempt to send this email: derived from its business event (its
    idempotency key), so a copy that does arrive twice is recognised as one by mail servers."""
    local = _NOT_ATEXT.sub(".", email.idempotency_key).strip(".")
    return f"<{local}@{current_app.config['MAIL_MESSAGE_ID_DOMAIN']}>"


def build_message(email: OutboundEmail) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = current_app.config["MAIL_SENDER"]
    msg["To"] = email.to_address
    msg["Subject"] = email.subject
    msg["Message-ID"] = message_id(email)
    msg.set_content(email.body_text)
    for attachment in email.attachments:  # the calendar entry (text/calendar), a PDF...
        maintype, _, subtype = attachment.mimetype.partition("/")
        if attachment.is_text:
            msg.add_attachment(attachment.content, subtype=subtype or "plain",
                               filename=attachment.filename,
                               params={"method": "PUBLISH"} if subtype == "calendar" else {})
        else:
            msg.add_attachment(attachment.data, maintype=maintype or "application",
                               subtype=subtype or "octet-stream", filename=attachment.filename)
    return msg


def send(email: OutboundEmail, *, handing_over: Callable[[], None] = lambda: None) -> None:
    """Send `email`; `handing_over()` is called just before the message itself goes to the
    server (after connecting and signing in): up to then, a failure means it was not sent."""
    backend = current_app.config["MAIL_BACKEND"]
    if backend == "outbox":
        handing_over()
        return  # the row itself is the outbox; readable at /dev/outbox in development
    cfg = current_app.config
    message = build_message(email)
    try:
        with smtplib.SMTP(cfg["SMTP_HOST"], cfg["SMTP_PORT"],
                          timeout=cfg["SMTP_TIMEOUT_SECONDS"]) as smtp:
            if cfg["SMTP_STARTTLS"]:
                smtp.starttls()
            if cfg["SMTP_USERNAME"]:
                smtp.login(cfg["SMTP_USERNAME"], cfg["SMTP_PASSWORD"])
            handing_over()
            try:
                smtp.send_message(message)
            except (smtplib.SMTPResponseException, smtplib.SMTPRecipientsRefused):
                raise  # the server answered "no": not delivered
            except (OSError, smtplib.SMTPException) as exc:
                raise MailError(f"{type(exc).__name__}: {exc}", maybe_delivered=True) from exc
    except (OSError, smtplib.SMTPException) as exc:
        raise MailError(f"{type(exc).__name__}: {exc}") from exc

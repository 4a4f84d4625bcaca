"""SMTP client (with a timeout), or the development outbox that only records."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from email.utils import make_msgid

from flask import current_app

from ..models import OutboundEmail


class MailError(Exception):
    pass


def build_message(email: OutboundEmail) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = current_app.config["MAIL_SENDER"]
    msg["To"] = email.to_address
    msg["Subject"] = email.subject
    # Derived from the idempotency key, so a resend after a crash can be recognised.
    msg["Message-ID"] = make_msgid(idstring=email.idempotency_key.replace(":", "."),
                                   domain="acme-rentals.example")
    msg.set_content(email.body_text)
    for attachment in email.attachments:  # e.g. the booking's calendar entry (text/calendar)
        _, _, subtype = attachment.mimetype.partition("/")
        msg.add_attachment(attachment.content, subtype=subtype or "plain",
                           filename=attachment.filename,
                           params={"method": "PUBLISH"} if subtype == "calendar" else {})
    return msg


def send(email: OutboundEmail) -> None:
    backend = current_app.config["MAIL_BACKEND"]
    if backend == "outbox":
        return  # the row itself is the outbox; readable at /dev/outbox in development
    cfg = current_app.config
    try:
        with smtplib.SMTP(cfg["SMTP_HOST"], cfg["SMTP_PORT"],
                          timeout=cfg["SMTP_TIMEOUT_SECONDS"]) as smtp:
            if cfg["SMTP_STARTTLS"]:
                smtp.starttls()
            if cfg["SMTP_USERNAME"]:
                smtp.login(cfg["SMTP_USERNAME"], cfg["SMTP_PASSWORD"])
            smtp.send_message(build_message(email))
    except (OSError, smtplib.SMTPException) as exc:
        raise MailError(f"{type(exc).__name__}: {exc}") from exc

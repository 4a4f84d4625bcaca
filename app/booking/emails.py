"""The booking's emails. Each is recorded under a fixed idempotency key, so it goes once.

Keys: hire:<id>:confirmed, hire:<id>:changed:<version>, hire:<id>:cancelled,
hire:<id>:expired, hire:<id>:no-show, hire:<id>:pickup-reminder:<start>, hire:<id>:return-reminder:<end>.
The reminder keys carry the time they are about, so a changed booking is reminded anew.
"""

from __future__ import annotations

from datetime import datetime

from flask import current_app

from ..mail import queue_email
from ..models import Hire, OutboundEmail
from .ics import hire_ics

ICS_MIMETYPE = "text/calendar"


def booking_url(hire: Hire) -> str:
    return f"{current_app.config['PUBLIC_BASE_URL'].rstrip('/')}/book/hires/{hire.reference}"


def _queue(hire: Hire, key: str, subject: str, template: str,
           attachment: tuple[str, str, str] | None = None, **context) -> OutboundEmail:
    return queue_email(key=key, to=hire.customer.email, subject=subject,
                       template=f"booking/emails/{template}.txt", attachment=attachment,
                       hire=hire, url=booking_url(hire), **context)


def _ics(hire: Hire, now: datetime) -> tuple[str, str, str]:
    return (f"acme-{hire.reference}.ics", ICS_MIMETYPE, hire_ics(hire, now=now))


def queue_confirmed(hire: Hire, *, now: datetime) -> OutboundEmail:
    return _queue(hire, f"hire:{hire.id}:confirmed", f"Booking {hire.reference} confirmed",
                  "confirmed", attachment=_ics(hire, now))


def queue_changed(hire: Hire, *, now: datetime) -> OutboundEmail:
    return _queue(hire, f"hire:{hire.id}:changed:{hire.version}", f"Booking {hire.reference} changed",
                  "changed", attachment=_ics(hire, now))


def queue_cancelled(hire: Hire, *, refund_pence: int, paid: bool) -> OutboundEmail:
    return _queue(hire, f"hire:{hire.id}:cancelled", f"Booking {hire.reference} cancelled",
                  "cancelled", refund_pence=refund_pence, paid=paid)


def queue_expired(hire: Hire) -> OutboundEmail:
    return _queue(hire, f"hire:{hire.id}:expired", f"Your hold on booking {hire.reference} expired",
                  "expired")


def queue_no_show(hire: Hire, *, fee_pence: int, refund_pence: int, deposit_pence: int) -> OutboundEmail:
    return _queue(hire, f"hire:{hire.id}:no-show", f"Booking {hire.reference}: the car was not collected",
                  "no_show", fee_pence=fee_pence, refund_pence=refund_pence, deposit_pence=deposit_pence)


def queue_pickup_reminder(hire: Hire) -> OutboundEmail:
    return _queue(hire, f"hire:{hire.id}:pickup-reminder:{hire.start_at:%Y%m%dT%H%MZ}",
                  f"Reminder: pick up your car ({hire.reference})", "pickup_reminder")


def queue_return_reminder(hire: Hire) -> OutboundEmail:
    return _queue(hire, f"hire:{hire.id}:return-reminder:{hire.end_at:%Y%m%dT%H%MZ}",
                  f"Reminder: your car is due back ({hire.reference})", "return_reminder")

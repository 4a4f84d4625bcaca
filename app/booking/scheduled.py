"""Booking's scheduled work (run by the tick in app/jobs/booking.py): expire unpaid holds,
queue pickup and return-due reminders. Safe to run twice, or twice at once."""

from __future__ import annotations

from datetime import datetime, timedelta


from sqlalchemy import select

from ..extensions import db
from ..logging_setup import log
from ..models import Hire, HireState
from ..payments import payment_keeps_hold
from ..settings import settings
from . import emails

S = HireState


def expire_held_hires(now: datetime, *, batch: int = 500) -> list[int]:
    """Expire unpaid holds whose time is up, freeing their cars. Safe to run twice or at once."""
    q = (select(Hire).where(Hire.state == S.HELD.value, Hire.hold_expires_at <= now)
         .order_by(Hire.id).limit(batch).with_for_update(skip_locked=True))
    expired = []
    for hire in db.session.scalars(q):
        if payment_keeps_hold(hire, now):
            continue  # a crypto payment is on its way or with staff: the car stays held
        hire.transition(S.EXPIRED, by=None, now=now,
                        why=f"not paid within {settings().booking.hold_minutes} minutes")
        expired.append(hire.id)
    db.session.commit()
    for hire_id in expired:
        emails.queue_expired(db.session.get(Hire, hire_id))
    if expired:
        log().info("holds expired", count=len(expired))
    return expired


def queue_due_reminders(now: datetime) -> list[str]:
    """Pickup reminders for tomorrow's hires and return-due reminders; each email once."""
    cfg = settings()
    keys = []
    pickups = db.session.scalars(select(Hire).where(
        Hire.state == S.CONFIRMED.value, Hire.start_at > now,
        Hire.start_at <= now + timedelta(hours=cfg.booking.pickup_reminder_hours)).order_by(Hire.id))
    for hire in list(pickups):
        keys.append(emails.queue_pickup_reminder(hire).idempotency_key)
    returns = db.session.scalars(select(Hire).where(
        Hire.state == S.ACTIVE.value, Hire.end_at > now,
        Hire.end_at <= now + timedelta(hours=cfg.booking.return_reminder_hours)).order_by(Hire.id))
    for hire in list(returns):
        keys.append(emails.queue_return_reminder(hire).idempotency_key)
    return keys

"""Booking's scheduled reminders (run by the tick in app/jobs/booking.py): pickup and
return-due emails, each once. (Expiring unpaid holds is the lifecycle's: lifecycle.py.)"""

from __future__ import annotations

from datetime import datetime, timedelta


from sqlalchemy import select

from ..extensions import db
from ..models import Hire, HireState
from ..settings import settings
from . import emails

S = HireState


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

"""The hire lifecycle: what the hire does when something happens to its money.

Payment providers report facts through app/events.py ("the rental of hire X is paid"); this
module subscribes and decides what follows. Payments never imports booking, so the
dependency runs one way: booking -> payments, and payments -> events <- booking.

- `confirm_hire`  held -> confirmed once the rental is paid: one transition, one email
- `lock_hire`     the hire re-read under a row lock, for every service that moves it

The hire's other moves are decided by the service that owns their rules, each through
`Hire.transition` (app/models/hires.py, the one transition table): cancellation.py
(cancelled), scheduled.py (expired), no_show.py (no_show), and the counter, app/counter
(active, refused_at_pickup, returned, closed).
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import select

from .. import events, paperwork
from ..extensions import db
from ..logging_setup import log
from ..models import Hire, HireState, InvalidTransition, User
from . import emails

S = HireState


def lock_hire(hire: Hire) -> Hire:
    """Re-read the hire under a row lock (PostgreSQL), so two jobs cannot move it at once."""
    return db.session.scalars(
        select(Hire).where(Hire.id == hire.id).with_for_update()
        .execution_options(populate_existing=True)).one()


def confirm_hire(hire: Hire, *, by: Optional[User], now: datetime) -> Hire:
    """held -> confirmed (payment arrived); queues the booking-confirmed email exactly once.

    Safe to call again: a confirmed (or later) hire is left as it is and no second email is
    queued. A hold that already expired or was cancelled raises InvalidTransition: the
    caller must give the money back.
    """
    hire = lock_hire(hire)
    if hire.hire_state == S.HELD:
        hire.transition(S.CONFIRMED, by=by, why="payment received", now=now)
        hire.hold_expires_at = None
        db.session.commit()
        log().info("hire confirmed", hire_id=hire.id, reference=hire.reference)
        # The rental is paid in advance: the payment is the tax point of its VAT invoice.
        paperwork.issue_booking_invoice(hire, now=now, by=by)
    elif hire.hire_state in (S.CONFIRMED, S.ACTIVE, S.RETURNED, S.CLOSED):
        db.session.commit()  # release the lock
    else:
        db.session.rollback()
        raise InvalidTransition(f"A {hire.state} hire cannot be confirmed")
    emails.queue_confirmed(hire, now=now)
    return hire


@events.rental_paid.connect
def on_rental_paid(hire: Hire, *, now: datetime, **_: object) -> None:
    """A provider says the rental is paid: confirm the hire (InvalidTransition reaches it)."""
    confirm_hire(hire, by=None, now=now)

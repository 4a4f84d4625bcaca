"""The hire lifecycle: the one module that moves a hire between states and decides what follows.

Each move goes through `Hire.transition` (app/models/hires.py, the one transition table) and
is followed here by what it implies: money back, the deposit released, the customer emailed.
Payment providers report facts through app/events.py ("the rental of hire X is paid"); this
module subscribes. Payments never imports booking, so the dependency runs one way: booking
-> payments, and payments -> events <- booking. The counter calls this module's interface
(`.importlinter` allows the counter that and nothing else of booking).

- `confirm_hire`    held -> confirmed once the rental is paid: one transition, one email
- `cancel_hire`     held/confirmed -> cancelled by the customer: the refund the policy gives
                    (cancellation.py), the deposit released (a hold still being placed
                    too), an open Checkout closed at Stripe, one email
- `expire_held_hires`  the scheduler's held -> expired for holds not paid in time (an open
                    Checkout closed at Stripe)
- `mark_no_show`    confirmed -> no_show, by the scheduler (`mark_due_no_shows`) or counter
                    staff: the fee kept, the rest refunded, the deposit released, one email
                    (the terms: no_show.py); `finish_interrupted_no_shows` completes one a
                    dead process left half done
- `lock_hire`       the hire re-read under a row lock, for every service that moves it
- `request_refund_or_note`  ask payments for money back; a refusal is noted in the history

The policies (what a cancellation refunds, what a no-show costs, who may mark one) live in
cancellation.py and no_show.py, which never import this module. The counter moves a hire
through pickup and return itself (active, refused_at_pickup, returned, closed): app/counter.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Optional

from flask import current_app
from sqlalchemy import String, and_, cast, exists, literal, select
from sqlalchemy.orm.exc import StaleDataError

from .. import audit, events, paperwork
from ..extensions import db
from ..filters import money
from ..logging_setup import log
from ..models import (AuditRecord, Hire, HireState, HireStateChange, Inspection, InvalidTransition,
                      OutboundEmail, User)
from ..payments import RefundError, payment_keeps_hold, release_deposit, request_refund
from . import emails
from .cancellation import CancelPolicy, cancellation_refund_pence
from .errors import BookingError
from .no_show import NO_SHOW_ACTION, NoShowTerms, can_mark_no_show, no_show_terms
from ..settings import settings

# The counter's share of this interface: the no-show page shows the terms and whether a
# no-show may be marked yet; a refusal is a BookingError with a message to show.
__all__ = [
    "BookingError", "NoShowTerms", "can_mark_no_show", "cancel_hire", "confirm_hire",
    "expire_held_hires", "finish_interrupted_no_shows", "lock_hire", "mark_due_no_shows",
    "mark_no_show", "no_show_terms", "request_refund_or_note",
]

S = HireState


def lock_hire(hire: Hire) -> Hire:
    """Re-read the hire under a row lock (PostgreSQL), so two jobs cannot move it at once.

    FOR NO KEY UPDATE (the lock PostgreSQL's own UPDATE of a non-key column takes): writers of
    the hire queue here, while rows that only refer to it (a payment's state change, an email,
    an audit record) are written freely. FOR UPDATE also blocks their foreign-key checks, and a
    job holding a payment's lock while recording such a row deadlocked against a no-show
    holding the hire and asking for that payment (two scheduler runs at once)."""
    return db.session.scalars(
        select(Hire).where(Hire.id == hire.id).with_for_update(key_share=True)
        .execution_options(populate_existing=True)).one()


# --- confirmed: the rental is paid ------------------------------------------------------------

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
def on_rental_paid(hire: Hire, *, now: datetime, amount_pence: int = 0, payment_key: str = "",
                   **_: object) -> None:
    """A provider says the rental is paid: confirm the hire (InvalidTransition reaches it).
    More paid on a hire already confirmed is a dearer change's difference: it is invoiced
    (what the hire's invoices do not cover yet; an extension was invoiced when made)."""
    was_held = hire.hire_state == S.HELD
    hire = confirm_hire(hire, by=None, now=now)
    if not was_held and amount_pence > 0 and payment_key and hire.hire_state in (S.CONFIRMED, S.ACTIVE):
        paperwork.issue_change_invoice(hire, paid_pence=amount_pence, key=payment_key, by=None, now=now)


# --- cancelled: the customer changed their mind -----------------------------------------------

def cancel_hire(hire: Hire, *, by: User, now: datetime) -> int:
    """Cancel before pickup; returns the refund payments was asked for (and accepted)."""
    hire = lock_hire(hire)
    if not hire.can_cancel(now):
        db.session.rollback()
        raise BookingError("This booking can no longer be cancelled online. Please call the branch.")
    policy = CancelPolicy.from_settings(settings().money)
    refund = cancellation_refund_pence(hire, now, policy)
    was_paid = hire.hire_state != S.HELD
    reason = (f"cancelled by {'the customer' if by.id == hire.customer_id else 'staff'}; "
              f"refund {money(refund)} (policy: {policy.describe()})" if was_paid
              else "hold cancelled by the customer before payment")
    hire.transition(S.CANCELLED, by=by, why=reason, now=now)
    hire.hold_expires_at = None
    db.session.commit()
    log().info("hire cancelled", hire_id=hire.id, refund_pence=refund)
    if refund > 0 and not request_refund_or_note(hire, refund, reason, by,
                                                 key=f"hire:{hire.id}:cancel-refund"):
        refund = 0  # payments could not give it back: staff follow up from the history
    # Whatever is still held on the card goes back: the deposit hold (at whatever stage it
    # is) and, for a hold never paid, a Checkout left open (its payment intent with it).
    release_deposit(hire, by, reason=("booking cancelled: deposit returned in full" if was_paid
                                      else "booking cancelled before payment"), now=now)
    emails.queue_cancelled(hire, refund_pence=refund, paid=was_paid)
    return refund


def request_refund_or_note(hire: Hire, amount_pence: int, reason: str, by: Optional[User],
                           *, key: str) -> bool:
    """Ask payments to give money back (idempotent by `key`).

    If payments refuses (say less was paid than the policy would refund), the hire's history says so
    for staff to follow up; the cancellation or change itself stands.
    """
    try:
        request_refund(hire, amount_pence, reason, by, key=key)
        return True
    except RefundError as exc:
        db.session.rollback()
        log().warning("refund refused by payments", hire_id=hire.id, amount_pence=amount_pence,
                      error=str(exc))
        hire.state_changes.append(HireStateChange(
            from_state=hire.state, to_state=hire.state, by_user_id=None,
            reason=f"refund of {money(amount_pence)} not made: {exc}"[:300]))
        db.session.commit()
        return False


# --- expired: a hold nobody paid --------------------------------------------------------------

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
        hire = db.session.get(Hire, hire_id)
        release_deposit(hire, None, reason="hold expired unpaid: its checkout closed", now=now)
        emails.queue_expired(hire)
    if expired:
        log().info("holds expired", count=len(expired))
    return expired


# --- no_show: nobody came to collect ----------------------------------------------------------

def mark_no_show(hire: Hire, *, by: Optional[User], now: datetime) -> NoShowTerms:
    """confirmed -> no_show, then the policy: fee kept, rest refunded, deposit released, email.

    `by` is the staff member (None: the scheduler). Raises BookingError when the hire is not
    (or no longer) a confirmed hire past its pickup time: another tablet or the scheduler
    got there first, or it is too early.

    Applied once: the hire is re-read under a row lock (PostgreSQL) and its version is
    checked when the move commits (SQLite), so of two ticks, or a tick and a tablet, one
    moves it and the other finds it moved and does nothing; the refund and the email have
    fixed keys.
    """
    hire = lock_hire(hire)
    if not can_mark_no_show(hire, now):
        db.session.rollback()
        if hire.hire_state == S.CONFIRMED:
            raise BookingError("The pickup time has not passed yet: this cannot be a no-show.")
        raise BookingError(f"Booking {hire.reference} is already {hire.state.replace('_', ' ')}.")
    terms = no_show_terms(hire)
    when = ("marked at the counter" if by is not None else
            f"{settings().booking.no_show_grace_minutes} minutes after the pickup time")
    reason = (f"not collected ({when}): no-show fee {money(terms.fee_pence)} kept, "
              f"{money(terms.refund_pence)} refunded")
    hire.transition(S.NO_SHOW, by=by, why=reason, now=now)
    audit.record(by, NO_SHOW_ACTION, hire, {"state": S.CONFIRMED.value},
                 {"state": S.NO_SHOW.value, "fee_pence": terms.fee_pence,
                  "refund_pence": terms.refund_pence, "deposit_released_pence": terms.deposit_pence},
                 at=now)
    try:
        db.session.commit()
    except StaleDataError:  # SQLite: another writer moved the hire since we read it
        db.session.rollback()
        raise BookingError(f"Booking {hire.reference} was changed a moment ago; it is no longer "
                           "waiting to be collected.")
    log().info("hire marked no-show", hire_id=hire.id, by=getattr(by, "id", None),
               fee_pence=terms.fee_pence, refund_pence=terms.refund_pence)
    _apply_no_show_policy(hire, terms, by=by, now=now)
    return terms


def _apply_no_show_policy(hire: Hire, terms: NoShowTerms, *, by: Optional[User],
                          now: datetime) -> None:
    """The money and the email after the move; each step keyed, so running it again is harmless.
    The email goes last: its presence says the policy was applied in full."""
    refunded = terms.refund_pence
    if refunded > 0 and not request_refund_or_note(hire, refunded, "no-show: price less the no-show fee",
                                                   by, key=f"hire:{hire.id}:no-show-refund"):
        refunded = 0  # payments could not give it back: staff follow up from the history
    release_deposit(hire, by, reason="no-show: deposit returned in full", now=now)
    emails.queue_no_show(hire, fee_pence=terms.fee_pence, refund_pence=refunded,
                         deposit_pence=terms.deposit_pence)


def finish_interrupted_no_shows(now: datetime) -> list[int]:
    """A process that died after a no-show was committed (with its audit record) but before
    its refund, deposit release or email finished: apply the rest, from the terms recorded
    then. Only no-shows older than JOB_RECOVERY_AFTER_SECONDS, so one still being applied
    is left alone. Returns the ids finished."""
    before = now - timedelta(seconds=current_app.config["JOB_RECOVERY_AFTER_SECONDS"])
    emailed = exists().where(OutboundEmail.idempotency_key
                             == literal("hire:") + cast(Hire.id, String) + literal(":no-show"))
    rows = db.session.execute(select(Hire, AuditRecord).join(AuditRecord, and_(
        AuditRecord.action == NO_SHOW_ACTION, AuditRecord.object_type == "hire",
        AuditRecord.object_id == cast(Hire.id, String))).where(
        Hire.state == S.NO_SHOW.value, AuditRecord.at <= before, ~emailed)
        .order_by(Hire.id)).all()
    finished = []
    for hire, record in rows:
        recorded = record.new
        terms = NoShowTerms(recorded["fee_pence"] + recorded["refund_pence"], recorded["fee_pence"],
                            recorded["deposit_released_pence"])
        log().warning("finishing an interrupted no-show", hire_id=hire.id)
        _apply_no_show_policy(hire, terms, by=record.actor, now=now)
        finished.append(hire.id)
    return finished


def mark_due_no_shows(now: datetime, *, batch: int = 200) -> list[int]:
    """Scheduler: every confirmed hire NO_SHOW_GRACE_MINUTES past its pickup time becomes a
    no-show. A hire whose pickup has begun at the counter is left to staff: the customer is
    there. Safe to run twice, or twice at once. Returns the ids this run marked."""
    grace = timedelta(minutes=settings().booking.no_show_grace_minutes)
    pickup_begun = exists().where(Inspection.hire_id == Hire.id, Inspection.kind == "pickup")
    due = db.session.scalars(select(Hire).where(
        Hire.state == S.CONFIRMED.value, Hire.start_at <= now - grace, ~pickup_begun)
        .order_by(Hire.start_at, Hire.id).limit(batch)).all()
    marked = []
    for hire in due:
        try:
            mark_no_show(hire, by=None, now=now)
        except BookingError:
            continue  # another run (or staff) marked it first
        marked.append(hire.id)
    if marked:
        log().info("no-shows marked", count=len(marked))
    return marked

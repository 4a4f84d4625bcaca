"""Starting a card payment and what the customer sees: Checkout Sessions, retries, the return.

The customer presses "Pay": `start_card_checkout` records the payment (a Payment row with its
fixed idempotency key) and enqueues the job that creates the Checkout Session; nothing here
moves money, the customer pays on Stripe's page. `card_status` says where the payment stands
for the pay and processing pages; coming back from Checkout asks Stripe for the outcome
(`record_checkout_return`, `recheck_returned_checkout`), which charges.py applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Optional


from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ...conflicts import retry_on_conflict
from ...extensions import db
from ...filters import local_time, money
from ...integrations import stripe_client
from ...queueing import enqueue
from ...logging_setup import log
from ...models import Hire, Payment, User
from ...settings import settings
from ..crypto import hires_under_review
from ..ledger import (CARD, CHECKOUT, OWING_STATES, PaymentError, PaymentNotFound, S,
                      amount_due_pence, checkout_charges, latest_checkout, lock_payment)


UNREACHABLE_MESSAGE = ("We could not reach the card processor just now. No money has been taken. "
                       "Please try again in a minute.")
STALLED_MESSAGE = ("Starting the card payment is taking longer than it should. No money has been "
                   "taken. Please try again.")


# --- what the customer sees ---------------------------------------------------------------------

@dataclass(frozen=True)
class CardStatus:
    """Where the card payment of a hire stands, for the pay and processing pages.

    stage: choose (nothing started, or a new attempt may start), starting (the job is
    creating the Checkout Session), unreachable (Stripe did not answer; try again), ready
    (Checkout is open: go or come back), declined (Checkout is open, the last card was
    declined), paid (money taken, confirmation being recorded), confirmed, closed (the hire
    can no longer be paid).
    """

    stage: str
    message: str = ""
    checkout_url: str = ""
    payment: Optional[Payment] = None


def card_status(hire: Hire, now: datetime) -> CardStatus:
    charge = latest_checkout(hire)
    due = amount_due_pence(hire)
    if hire.hire_state in OWING_STATES and due == 0:
        return CardStatus("confirmed", "Your booking is confirmed.", payment=charge)
    if charge is not None and charge.state == "succeeded":
        if hire.hire_state == S.HELD:
            return CardStatus("paid", "Payment received. Confirming your booking…", payment=charge)
    if hire.hire_state not in (S.HELD, *OWING_STATES):
        return CardStatus("closed", f"This booking is {hire.state.replace('_', ' ')}, so it cannot "
                                    "be paid any more.", payment=charge)
    if charge is None or charge.is_final:
        message = charge.failure_message if charge is not None and charge.state == "failed" else ""
        return CardStatus("choose", message, payment=charge)
    details = charge.details or {}
    if charge.state == "pending":
        if _start_overdue(charge, now):
            return CardStatus("unreachable", UNREACHABLE_MESSAGE if details.get("last_error")
                              else STALLED_MESSAGE, payment=charge)
        return CardStatus("starting", "Connecting to secure card payment…", payment=charge)
    url = details.get("checkout_url", "")
    # Stripe sends the customer back to us only once the card was accepted: an earlier
    # decline of this same Checkout no longer matters, the confirmation is on its way.
    if charge.failure_message and not details.get("returned_at"):
        return CardStatus("declined", charge.failure_message, url, payment=charge)
    return CardStatus("ready", "", url, payment=charge)


# --- starting a card payment ---------------------------------------------------------------------

def _checkout_expiry(hire: Hire, now: datetime) -> datetime:
    """When the Checkout Session ends: the hold's end, within what Stripe accepts.

    Stripe wants 30 minutes to 24 hours; a little slack covers the job starting a moment
    after this is computed (the same value is sent on every retry of the job).
    """
    cfg = settings()
    earliest = now + timedelta(minutes=cfg.payments.stripe_checkout_min_expiry_minutes
                               + cfg.payments.payment_checkout_slack_minutes)
    latest = now + timedelta(minutes=cfg.payments.stripe_checkout_max_expiry_minutes
                             - cfg.payments.payment_checkout_slack_minutes)
    wanted = hire.hold_expires_at or earliest
    return min(max(wanted, earliest), latest)


UNDER_REVIEW_MESSAGE = ("We have your crypto payment and our staff are reviewing it; we are holding "
                        "the car meanwhile. There is nothing to pay until they decide.")


def under_review(hire: Hire) -> bool:
    """Staff are reviewing a crypto payment for this hire: nothing else is to be paid meanwhile."""
    return hire.id in hires_under_review([hire.id])


@retry_on_conflict
def start_card_checkout(hire: Hire, user: User, *, amount_pence: int, success_url: str,
                        cancel_url: str, now: datetime) -> Payment:
    """Record the card payment of the hire's price and enqueue the Checkout Session's creation.

    Pressing "Pay" twice, or again after coming back, gives the same open payment (and so
    the same Checkout Session): a customer can never be sent to pay one hire twice at once.
    Two presses at the same instant both write the hire (its hold): the later one meets the
    first's write, and runs again from a fresh read (retry_on_conflict), finding its payment.
    `amount_pence` is what the customer confirmed; if the price moved since, refuse.
    """
    if hire.customer_id != user.id:
        raise PaymentNotFound("We could not find that booking.")
    if hire.hire_state not in (S.HELD, *OWING_STATES):
        raise PaymentError(f"This booking is {hire.state.replace('_', ' ')} and cannot be paid.")
    if hire.hire_state == S.HELD and hire.hold_expires_at is not None and now >= hire.hold_expires_at:
        raise PaymentError("Your hold on this car has expired. Please search again.")
    if under_review(hire):
        raise PaymentError(UNDER_REVIEW_MESSAGE)
    if not stripe_client.is_configured():
        raise PaymentError("Card payment is not available at the moment. Please try again later.")
    due = amount_due_pence(hire)
    if due <= 0:
        raise PaymentError("This booking is already paid.")
    if amount_pence != due:
        raise PaymentError(f"The amount to pay is now {money(due, hire.currency)}. "
                           "Please check it and confirm again.")
    current = latest_checkout(hire)
    if current is not None and current.state == "succeeded" and hire.hire_state == S.HELD:
        raise PaymentError("Your payment has been received; your booking is being confirmed.")
    if current is not None and not current.is_final:
        expires = (current.details or {}).get("expires_at")
        if expires is None or now.timestamp() < expires:
            _restart_if_stuck(current, now)
            return current
        # The Checkout Session lapsed: this attempt is over, a new one starts below.
        current = lock_payment(current.id)
        if current is not None and not current.is_final:
            current.move_to("failed", why="Checkout Session expired", now=now)
            current.failure_message = "Your previous checkout expired before it was paid."
            db.session.commit()
    attempt = len(checkout_charges(hire)) + 1
    if attempt > settings().payments.payment_max_checkout_attempts:
        raise PaymentError("Too many payment attempts for this booking. Please call the branch.")
    expires_at = _checkout_expiry(hire, now)
    payment = Payment(
        hire_id=hire.id, method=CARD, kind="charge", state="pending", amount_pence=due,
        currency=hire.currency, idempotency_key=f"hire:{hire.id}:checkout:{attempt}",
        created_at=now, reason="hire price" if hire.hire_state == S.HELD else "balance after a change",
        requested_by_id=user.id,
        details={"purpose": CHECKOUT, "attempt": attempt, "success_url": success_url,
                 "cancel_url": cancel_url, "checkout_expires_at": int(expires_at.timestamp()),
                 "customer_email": hire.customer.email},
    )
    payment.note("payment started by the customer", now=now)
    if hire.hire_state == S.HELD and hire.hold_expires_at is not None:
        # Keep the car held for as long as Checkout can still take the money.
        grace = timedelta(minutes=settings().payments.payment_hold_grace_minutes)
        hire.hold_expires_at = max(hire.hold_expires_at, expires_at + grace)
    db.session.add(payment)
    try:
        db.session.commit()
    except IntegrityError:  # a second click won the race: use its payment
        db.session.rollback()
        return db.session.scalars(select(Payment).where(
            Payment.idempotency_key == f"hire:{hire.id}:checkout:{attempt}")).one()
    log().info("card payment started", hire_id=hire.id, payment_id=payment.id, amount=due)
    _enqueue_checkout(payment)
    return payment


def _enqueue_checkout(payment: Payment) -> None:
    enqueue("app.jobs.payments.create_checkout_session", payment.id)


def _start_overdue(payment: Payment, now: datetime) -> bool:
    """A card payment whose Checkout Session is still not created PAYMENT_START_GIVE_UP_SECONDS
    after it (re)started: Stripe did not answer, or the worker running its job died."""
    if payment.state != "pending" or payment.checkout_session_id:
        return False
    details = payment.details or {}
    started = max(payment.created_at.timestamp(), details.get("restarted_at", 0))
    return now.timestamp() - started >= settings().payments.payment_start_give_up_seconds


def _restart_if_stuck(payment: Payment, now: datetime) -> None:
    """A payment whose session was never created (Stripe unreachable, its job lost): start it
    again with the same key, so Stripe gives back the session if the first call made one.

    A payment whose job is simply still at work is left alone (a second "Pay" a moment after
    the first): restarting it would only race that job. The decision and the write are made
    on the row re-read under its lock (and its version), never on what the request read
    before: the job may have recorded the session meanwhile.
    """
    if payment.state != "pending" or payment.checkout_session_id:
        return
    payment = lock_payment(payment.id)
    if payment is None or not (payment.details.get("last_error") or _start_overdue(payment, now)):
        db.session.rollback()
        return
    payment.details = {**payment.details, "last_error": "", "restarted_at": int(now.timestamp())}
    payment.note("payment restarted by the customer", now=now)
    db.session.commit()
    _enqueue_checkout(payment)


def cancel_if_unpayable(payment_id: int, *, now: datetime) -> bool:
    """Before opening Checkout: a hire that can no longer be paid gets no session."""
    payment = lock_payment(payment_id)
    if payment is None:
        db.session.rollback()
        return True
    hire = payment.hire
    if hire.hire_state in (S.HELD, *OWING_STATES) and not payment.is_final:
        db.session.rollback()
        return False
    if not payment.is_final:
        payment.failure_message = f"This booking is {hire.state.replace('_', ' ')}."
        payment.move_to("cancelled", why=f"hire {hire.state} before Checkout opened", now=now)
    db.session.commit()
    return True


def checkout_params(payment: Payment) -> dict:
    """The Checkout Session for a payment: the same parameters on every retry (same key)."""
    hire = payment.hire
    details = payment.details or {}
    metadata = {"payment_id": str(payment.id), "hire_id": str(hire.id),
                "hire_reference": hire.reference}
    label = (f"Car hire {hire.reference}: {hire.car.make} {hire.car.model}, "
             f"{local_time(hire.start_at, hire.pickup_branch.timezone, '%d %b %Y %H:%M')} to "
             f"{local_time(hire.end_at, hire.return_branch.timezone, '%d %b %Y %H:%M')}")
    return {
        "mode": "payment",
        "client_reference_id": hire.reference,
        "customer_creation": "always",
        "customer_email": details.get("customer_email") or hire.customer.email,
        # One line for the frozen total: the price lines (which may include discounts,
        # which Checkout cannot show as negative lines) are on our own pages.
        "line_items": [{"quantity": 1, "price_data": {
            "currency": payment.currency.lower(), "unit_amount": payment.amount_pence,
            "product_data": {"name": label}}}],
        # Save the card for the deposit hold and later charges (off-session).
        "payment_intent_data": {"setup_future_usage": "off_session", "metadata": metadata,
                                "description": f"ACME Rentals hire {hire.reference}"},
        "metadata": metadata,
        "success_url": details["success_url"],
        "cancel_url": details["cancel_url"],
        "expires_at": details["checkout_expires_at"],
    }


def record_checkout_created(payment_id: int, session: dict, *, now: datetime) -> None:
    """The Checkout Session exists: remember where the customer pays."""
    payment = lock_payment(payment_id)
    if payment is None or payment.checkout_session_id:
        db.session.rollback()
        return
    payment.checkout_session_id = session["id"]
    payment.details = {**payment.details, "checkout_url": session.get("url") or "",
                       "expires_at": session.get("expires_at"), "last_error": ""}
    if payment.state == "pending":
        payment.move_to("processing", why=f"Checkout Session {session['id']} created", now=now)
    db.session.commit()
    if not _payable(payment.hire):  # the hire ended while the session was being created
        _enqueue_close(payment)


def record_attempt_error(payment_id: int, error: str, *, now: datetime) -> None:
    """A call to Stripe got no useful answer; the job will retry with the same key."""
    payment = lock_payment(payment_id)
    if payment is None:
        db.session.rollback()
        return
    attempts = int(payment.details.get("provider_attempts", 0)) + 1
    payment.details = {**payment.details, "last_error": error[:200], "provider_attempts": attempts}
    payment.note(f"Stripe unavailable (attempt {attempts}): {error}"[:300], now=now)
    db.session.commit()


def record_start_refused(payment_id: int, message: str, *, now: datetime) -> None:
    """Stripe refused to start the payment (not the card: our request). Final for this attempt."""
    payment = lock_payment(payment_id)
    if payment is None or payment.is_final:
        db.session.rollback()
        return
    payment.failure_message = "We could not start the card payment. Please try again."
    payment.move_to("failed", why=f"Stripe refused: {message}", now=now)
    db.session.commit()
    log().error("stripe refused a request", payment_id=payment_id, message=message)


@retry_on_conflict
def record_checkout_return(hire: Hire, session_id: str, *, now: datetime) -> Optional[Payment]:
    """The customer came back from Checkout: fetch the session's outcome in a job.

    Whichever comes first, this or the webhook, confirms the hire; the other changes nothing.
    The webhook's job may be writing the payment at this moment: the note is written on
    the row re-read under its lock (and version), so neither write undoes the other.
    """
    payment = next((p for p in reversed(checkout_charges(hire))
                    if session_id and p.checkout_session_id == session_id), None)
    payment = payment or latest_checkout(hire)
    if payment is not None and payment.state != "succeeded" and payment.checkout_session_id:
        payment = lock_payment(payment.id)
        if payment.state == "succeeded":
            db.session.rollback()
            return payment
        payment.details = {**payment.details, "returned_at": int(now.timestamp())}
        db.session.commit()
        _enqueue_sync(payment)
    return payment


def _enqueue_sync(payment: Payment) -> None:
    enqueue("app.jobs.payments.sync_checkout_session", payment.id)


def _recheck_due(payment: Optional[Payment], now: datetime) -> bool:
    if payment is None or payment.state != "processing" or not payment.checkout_session_id:
        return False
    details = payment.details or {}
    if not details.get("returned_at"):
        return False
    last = max(details.get("synced_at", 0), details.get("returned_at", 0))
    return now.timestamp() - last >= settings().payments.payment_recheck_seconds


@retry_on_conflict
def recheck_returned_checkout(hire: Hire, *, now: datetime) -> None:
    """While the customer waits on the processing page and no webhook came, ask Stripe again
    now and then (every PAYMENT_RECHECK_SECONDS), in case the first check missed it."""
    payment = latest_checkout(hire)
    if not _recheck_due(payment, now):
        return
    payment = lock_payment(payment.id)  # decide and write on the fresh row
    if not _recheck_due(payment, now):
        db.session.rollback()
        return
    payment.details = {**payment.details, "synced_at": int(now.timestamp())}
    db.session.commit()
    _enqueue_sync(payment)


# --- closing Checkout when the hire ends unpaid ---------------------------------------------------

def _payable(hire: Hire) -> bool:
    return hire.hire_state in (S.HELD, *OWING_STATES)


def _enqueue_close(payment: Payment) -> None:
    enqueue("app.jobs.payments.close_checkout_session", payment.id)


def close_open_checkouts(hire: Hire, *, now: datetime) -> list[int]:
    """The hire ended (cancelled, expired, no-show...): close every Checkout still open for it
    at Stripe, so the customer cannot pay it and its payment intent (a card typed in and
    declined, say) is cancelled. A session not created yet never will be (the creating job
    checks the hire). Returns the payment ids whose closing was queued."""
    if _payable(hire):
        return []
    open_ones = [p for p in checkout_charges(hire) if not p.is_final and p.checkout_session_id]
    for payment in open_ones:
        payment.note(f"booking {hire.state.replace('_', ' ')}: closing its Checkout", now=now)
    db.session.commit()
    for payment in open_ones:
        _enqueue_close(payment)
    return [p.id for p in open_ones]


def checkout_close_key(payment: Payment) -> str | None:
    """The key of closing this payment's Checkout at Stripe; None when there is nothing to close."""
    if payment.is_final or not payment.checkout_session_id or _payable(payment.hire):
        return None
    return f"{payment.idempotency_key}:close"


def record_checkout_closed(payment_id: int, session: dict, *, now: datetime) -> None:
    """Stripe closed the unpaid Checkout of a hire that ended: the payment is cancelled. (One
    the customer paid meanwhile is the job's to apply as paid: the money is given back.)"""
    payment = lock_payment(payment_id)
    if payment is None or payment.is_final or session.get("status") != "expired":
        db.session.rollback()
        return
    payment.failure_message = f"This booking is {payment.hire.state.replace('_', ' ')}."
    payment.move_to("cancelled", why=f"booking {payment.hire.state.replace('_', ' ')}: Checkout closed at "
                                     "Stripe before it was paid", now=now)
    db.session.commit()

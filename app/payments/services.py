"""Card payment rules: checkout, confirmation exactly once, deposit holds, saved-card charges.

Plain functions over the session, taking `now` and the people involved, raising
`PaymentError` with a message for the customer or staff. Nothing here talks to Stripe:
services record what should happen (a Payment row with its fixed idempotency key) and
enqueue a job (app/jobs/payments.py) that makes the call; the job hands Stripe's answer
back to an `apply_*`/`record_*` function here. Webhook events arrive the same way.

Exactly once: each business action has one Payment row (unique idempotency key, also
sent to Stripe), payments move only forward (`Payment.move_to`), rows are re-read under a
row lock before they change, and `settle_paid_hire` — run whenever a charge is seen to
have succeeded, by the webhook or the customer's return from Checkout, whichever comes
first, as often as it likes — confirms the hire through booking's `confirm_hire` (itself
idempotent: one transition, one email) and gives back any money the hire does not owe.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Optional

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .. import audit
from ..conflicts import retry_on_conflict
from ..extensions import db
from ..filters import local_time, money
from ..logging_setup import log
from ..models import Hire, HireState, InvalidTransition, Payment, StripeEvent, User, utcnow
from .crypto import hires_under_review

S = HireState
CARD = "card"
CRYPTO = "crypto"
# details["purpose"] of a card charge: the rental through Checkout, or a later charge on
# the saved card (damage, fuel, late return...).
CHECKOUT = "checkout"
SAVED_CARD = "saved_card"
# Hire states in which the customer owes the price of the hire.
OWING_STATES = frozenset({S.CONFIRMED, S.ACTIVE, S.RETURNED, S.CLOSED})
# The Stripe events we subscribe to; any other type is acknowledged and ignored.
SUBSCRIBED_EVENTS = frozenset({
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.amount_capturable_updated",
    "payment_intent.canceled",
    "charge.refunded",
    "refund.updated",
    "refund.failed",
})
UNREACHABLE_MESSAGE = ("We could not reach the card processor just now. No money has been taken. "
                       "Please try again in a minute.")
STALLED_MESSAGE = ("Starting the card payment is taking longer than it should. No money has been "
                   "taken. Please try again.")


class PaymentError(Exception):
    """A payment action refused, with a message to show."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class PaymentNotFound(PaymentError):
    """No such hire for this person (shown as 404: others' bookings are not revealed)."""


# --- reading ---------------------------------------------------------------------------------

def hire_for(reference: str, user: User) -> Hire:
    """The hire with this reference, if `user` may see its payments (its customer, or staff)."""
    hire = db.session.scalar(select(Hire).where(Hire.reference == reference))
    if hire is None or (hire.customer_id != user.id and not user.is_staff):
        raise PaymentNotFound("We could not find that booking.")
    return hire


def payments_of(hire: Hire) -> list[Payment]:
    return list(db.session.scalars(
        select(Payment).where(Payment.hire_id == hire.id).order_by(Payment.id)))


def _lock_payment(payment_id: int) -> Optional[Payment]:
    """Re-read a payment under a row lock (PostgreSQL), so two jobs cannot move it at once."""
    return db.session.scalars(
        select(Payment).where(Payment.id == payment_id).with_for_update()
        .execution_options(populate_existing=True)).one_or_none()


def _purpose(payment: Payment) -> str:
    return (payment.details or {}).get("purpose", "")


def checkout_charges(hire: Hire) -> list[Payment]:
    return [p for p in payments_of(hire)
            if p.method == CARD and p.kind == "charge" and _purpose(p) == CHECKOUT]


def latest_checkout(hire: Hire) -> Optional[Payment]:
    charges = checkout_charges(hire)
    return charges[-1] if charges else None


def refunded_pence(charge: Payment, payments: Iterable[Payment]) -> int:
    """Refunds of this charge that are done or on their way (failed ones do not count)."""
    return sum(p.amount_pence for p in payments
               if p.kind == "refund" and p.parent_id == charge.id and p.state != "failed"
               and p.state != "cancelled")


def net_paid_pence(hire: Hire) -> int:
    """Money taken for the hire (charges and captured deposits) less refunds, done or on their way."""
    payments = payments_of(hire)
    taken = sum(p.amount_pence for p in payments
                if p.kind in ("charge", "capture") and p.state == "succeeded")
    given_back = sum(p.amount_pence for p in payments
                     if p.kind == "refund" and p.state not in ("failed", "cancelled"))
    return taken - given_back


def rental_paid_pence(hire: Hire) -> int:
    """What has been paid towards the hire's price (charges at checkout, less their refunds)."""
    payments = payments_of(hire)
    return sum(p.amount_pence - refunded_pence(p, payments) for p in payments
               if p.kind == "charge" and p.state == "succeeded" and _purpose(p) != SAVED_CARD)


def amount_due_pence(hire: Hire) -> int:
    return max(hire.total_pence - rental_paid_pence(hire), 0)


def _ever_confirmed(hire: Hire) -> bool:
    return hire.hire_state in OWING_STATES or any(
        c.to_state == S.CONFIRMED.value for c in hire.state_changes)


def saved_card_of(hire: Hire) -> Optional[Payment]:
    """The checkout charge whose card was saved for later (deposit, extra charges)."""
    for charge in reversed(checkout_charges(hire)):
        if charge.state == "succeeded" and (charge.details or {}).get("customer"):
            return charge
    return None


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
    cfg = current_app.config
    earliest = now + timedelta(minutes=cfg["STRIPE_CHECKOUT_MIN_EXPIRY_MINUTES"]
                               + cfg["PAYMENT_CHECKOUT_SLACK_MINUTES"])
    latest = now + timedelta(minutes=cfg["STRIPE_CHECKOUT_MAX_EXPIRY_MINUTES"]
                             - cfg["PAYMENT_CHECKOUT_SLACK_MINUTES"])
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
    from ..integrations import stripe_client
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
        current = _lock_payment(current.id)
        if current is not None and not current.is_final:
            current.move_to("failed", why="Checkout Session expired", now=now)
            current.failure_message = "Your previous checkout expired before it was paid."
            db.session.commit()
    attempt = len(checkout_charges(hire)) + 1
    if attempt > current_app.config["PAYMENT_MAX_CHECKOUT_ATTEMPTS"]:
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
        grace = timedelta(minutes=current_app.config["PAYMENT_HOLD_GRACE_MINUTES"])
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
    from ..jobs import enqueue
    from ..jobs.payments import create_checkout_session
    enqueue(create_checkout_session, payment.id)


def _start_overdue(payment: Payment, now: datetime) -> bool:
    """A card payment whose Checkout Session is still not created PAYMENT_START_GIVE_UP_SECONDS
    after it (re)started: Stripe did not answer, or the worker running its job died."""
    if payment.state != "pending" or payment.checkout_session_id:
        return False
    details = payment.details or {}
    started = max(payment.created_at.timestamp(), details.get("restarted_at", 0))
    return now.timestamp() - started >= current_app.config["PAYMENT_START_GIVE_UP_SECONDS"]


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
    payment = _lock_payment(payment.id)
    if payment is None or not (payment.details.get("last_error") or _start_overdue(payment, now)):
        db.session.rollback()
        return
    payment.details = {**payment.details, "last_error": "", "restarted_at": int(now.timestamp())}
    payment.note("payment restarted by the customer", now=now)
    db.session.commit()
    _enqueue_checkout(payment)


def cancel_if_unpayable(payment_id: int, *, now: datetime) -> bool:
    """Before opening Checkout: a hire that can no longer be paid gets no session."""
    payment = _lock_payment(payment_id)
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
    payment = _lock_payment(payment_id)
    if payment is None or payment.checkout_session_id:
        db.session.rollback()
        return
    payment.checkout_session_id = session["id"]
    payment.details = {**payment.details, "checkout_url": session.get("url") or "",
                       "expires_at": session.get("expires_at"), "last_error": ""}
    if payment.state == "pending":
        payment.move_to("processing", why=f"Checkout Session {session['id']} created", now=now)
    db.session.commit()


def record_attempt_error(payment_id: int, error: str, *, now: datetime) -> None:
    """A call to Stripe got no useful answer; the job will retry with the same key."""
    payment = _lock_payment(payment_id)
    if payment is None:
        db.session.rollback()
        return
    attempts = int(payment.details.get("provider_attempts", 0)) + 1
    payment.details = {**payment.details, "last_error": error[:200], "provider_attempts": attempts}
    payment.note(f"Stripe unavailable (attempt {attempts}): {error}"[:300], now=now)
    db.session.commit()


def record_start_refused(payment_id: int, message: str, *, now: datetime) -> None:
    """Stripe refused to start the payment (not the card: our request). Final for this attempt."""
    payment = _lock_payment(payment_id)
    if payment is None or payment.is_final:
        db.session.rollback()
        return
    payment.failure_message = "We could not start the card payment. Please try again."
    payment.move_to("failed", why=f"Stripe refused: {message}", now=now)
    db.session.commit()
    log().error("stripe refused a request", payment_id=payment_id, message=message)


# --- the outcome of a card payment ------------------------------------------------------------

def apply_checkout_session(payment_id: int, session: dict, *, now: datetime,
                           event_id: str = "") -> None:
    """Whatever Stripe says about the Checkout Session (webhook or retrieval after return)."""
    if session.get("status") == "complete" and session.get("payment_status") in ("paid", "no_payment_required"):
        intent = session.get("payment_intent")
        intent_id = intent.get("id") if isinstance(intent, dict) else (intent or "")
        payment_method = intent.get("payment_method") if isinstance(intent, dict) else None
        card = None
        if isinstance(payment_method, dict):
            found = payment_method.get("card") or {}
            card = {"brand": found.get("brand", ""), "last4": found.get("last4", "")} if found else None
            payment_method = payment_method.get("id")
        record_charge_succeeded(payment_id, intent_id=intent_id, customer=session.get("customer"),
                                payment_method=payment_method, now=now, event_id=event_id,
                                session_id=session.get("id", ""), card=card)
    elif session.get("status") == "expired":
        payment = _lock_payment(payment_id)
        if payment is None or payment.is_final:
            db.session.rollback()
            return
        payment.failure_message = "Your checkout expired before it was paid. You can start again."
        payment.move_to("failed", why="Checkout Session expired", now=now, event_id=event_id)
        db.session.commit()
    else:
        db.session.rollback()


def record_charge_succeeded(payment_id: int, *, intent_id: str, customer: Optional[str],
                            payment_method: Optional[str], now: datetime, event_id: str = "",
                            session_id: str = "", card: Optional[dict] = None) -> None:
    """Money taken for a card charge: record it once, then settle the hire (idempotent)."""
    payment = _lock_payment(payment_id)
    if payment is None:
        db.session.rollback()
        return
    details = dict(payment.details or {})
    for name, value in (("customer", customer), ("payment_method", payment_method), ("card", card)):
        if value and not details.get(name):
            details[name] = value
    payment.details = details
    if intent_id and not payment.provider_ref:
        payment.provider_ref = intent_id
    if session_id and not payment.checkout_session_id:
        payment.checkout_session_id = session_id
    if payment.state != "succeeded":
        if not payment.can_move_to("succeeded"):
            # Money for a payment we had given up on: keep it visible for staff.
            payment.note(f"paid after being marked {payment.state}; needs staff review",
                         now=now, event_id=event_id)
            db.session.commit()
            log().error("payment succeeded after being final", payment_id=payment.id)
            return
        payment.failure_message = ""
        payment.move_to("succeeded", why="card payment succeeded", now=now, event_id=event_id)
        log().info("card payment succeeded", payment_id=payment.id, hire_id=payment.hire_id)
    db.session.commit()
    if _purpose(payment) == CHECKOUT:
        settle_paid_hire(payment.id, now=now)


def settle_paid_hire(payment_id: int, *, now: datetime) -> None:
    """After a rental payment succeeded: confirm a held hire, give back what is not owed.

    Idempotent: confirm_hire does nothing to a confirmed hire, and a refund of money not
    owed has a key fixed per payment ("payment:<id>:unowed"), so it is asked for once.
    """
    payment = db.session.get(Payment, payment_id)
    hire = payment.hire
    if hire.hire_state == S.HELD:
        confirm_hire_after_payment(hire, now=now)
        db.session.refresh(hire)
    owed = hire.total_pence if _ever_confirmed(hire) else 0
    excess = rental_paid_pence(hire) - owed
    if excess > 0:
        from .refunds import RefundError, request_refund
        amount = min(excess, payment.amount_pence - refunded_pence(payment, payments_of(hire)))
        why = ("paid twice for the same booking" if owed else
               f"paid after the booking was {hire.state.replace('_', ' ')}")
        if amount > 0:
            try:
                request_refund(hire, amount, why, None, key=f"payment:{payment.id}:unowed",
                               payment=payment, now=now)
            except RefundError as exc:
                log().error("could not refund money not owed", payment_id=payment.id, error=exc.message)


def confirm_hire_after_payment(hire: Hire, *, now: datetime) -> None:
    """held -> confirmed through the booking area (one transition, one confirmation email)."""
    from ..booking.services import confirm_hire
    try:
        confirm_hire(hire, by=None, now=now)
    except InvalidTransition:
        # The hold ended (expired or cancelled) just before the money came: settle_paid_hire
        # gives it back.
        log().warning("payment for a hire that can no longer be confirmed", hire_id=hire.id,
                      state=hire.state)


def record_charge_declined(payment_id: int, message: str, *, now: datetime, event_id: str = "",
                           intent_id: str = "") -> None:
    """A card was declined. Checkout stays open for another card; a saved-card charge fails."""
    payment = _lock_payment(payment_id)
    if payment is None or payment.is_final:
        db.session.rollback()  # a late "failed" for a payment that already succeeded: no effect
        return
    if intent_id and not payment.provider_ref:
        payment.provider_ref = intent_id
    payment.failure_message = message[:300]
    if _purpose(payment) == CHECKOUT:
        payment.note(f"card declined: {message}", now=now, event_id=event_id)
    else:
        payment.move_to("failed", why=f"card declined: {message}", now=now, event_id=event_id)
    db.session.commit()


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
        payment = _lock_payment(payment.id)
        if payment.state == "succeeded":
            db.session.rollback()
            return payment
        payment.details = {**payment.details, "returned_at": int(now.timestamp())}
        db.session.commit()
        _enqueue_sync(payment)
    return payment


def _enqueue_sync(payment: Payment) -> None:
    from ..jobs import enqueue
    from ..jobs.payments import sync_checkout_session
    enqueue(sync_checkout_session, payment.id)


def _recheck_due(payment: Optional[Payment], now: datetime) -> bool:
    if payment is None or payment.state != "processing" or not payment.checkout_session_id:
        return False
    details = payment.details or {}
    if not details.get("returned_at"):
        return False
    last = max(details.get("synced_at", 0), details.get("returned_at", 0))
    return now.timestamp() - last >= current_app.config["PAYMENT_RECHECK_SECONDS"]


@retry_on_conflict
def recheck_returned_checkout(hire: Hire, *, now: datetime) -> None:
    """While the customer waits on the processing page and no webhook came, ask Stripe again
    now and then (every PAYMENT_RECHECK_SECONDS), in case the first check missed it."""
    payment = latest_checkout(hire)
    if not _recheck_due(payment, now):
        return
    payment = _lock_payment(payment.id)  # decide and write on the fresh row
    if not _recheck_due(payment, now):
        db.session.rollback()
        return
    payment.details = {**payment.details, "synced_at": int(now.timestamp())}
    db.session.commit()
    _enqueue_sync(payment)


# --- webhooks ----------------------------------------------------------------------------

def store_event(event: dict, *, now: datetime) -> Optional[StripeEvent]:
    """Keep a verified event once (unique id). None: a duplicate or a type we do not handle."""
    if event.get("type") not in SUBSCRIBED_EVENTS:
        return None
    created = datetime.fromtimestamp(int(event.get("created") or now.timestamp()), timezone.utc)
    row = StripeEvent(event_id=event["id"], type=event["type"], created_at=created,
                      received_at=now, payload=event)
    db.session.add(row)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return None
    return row


def _payment_from(obj: dict) -> Optional[Payment]:
    """Our payment for a Stripe object: by the id we put in its metadata, else by its id."""
    metadata = obj.get("metadata") or {}
    payment_id = metadata.get("payment_id")
    if payment_id and str(payment_id).isdigit():
        return db.session.get(Payment, int(payment_id))
    ident = obj.get("id", "")
    if ident.startswith("cs_"):
        return db.session.scalar(select(Payment).where(Payment.checkout_session_id == ident))
    if ident:
        return db.session.scalar(select(Payment).where(Payment.provider_ref == ident))
    return None


def process_event(event_row_id: int, *, now: datetime) -> None:
    """Apply one stored webhook event, once. Duplicates and stale events change nothing."""
    row = db.session.scalars(select(StripeEvent).where(StripeEvent.id == event_row_id)
                             .with_for_update()).one_or_none()
    if row is None or row.processed_at is not None:
        db.session.rollback()
        return
    row.attempts += 1
    db.session.commit()
    event = row.payload
    obj = (event.get("data") or {}).get("object") or {}
    payment = _payment_from(obj)
    outcome = _dispatch(event["type"], obj, payment, event_id=event["id"], now=now)
    row = db.session.get(StripeEvent, event_row_id)
    row.processed_at = now
    row.state = "processed" if outcome is None else "ignored"
    row.outcome = (outcome or "applied")[:300]
    db.session.commit()


def _dispatch(type_: str, obj: dict, payment: Optional[Payment], *, event_id: str,
              now: datetime) -> Optional[str]:
    """Route an event to its rule; a string says why it was ignored."""
    if type_ in ("charge.refunded", "refund.updated", "refund.failed"):
        return _apply_refund_event(type_, obj, event_id=event_id, now=now)
    if payment is None:
        return "not one of our payments"
    if type_ in ("checkout.session.completed", "checkout.session.async_payment_succeeded",
                 "checkout.session.expired"):
        apply_checkout_session(payment.id, obj, now=now, event_id=event_id)
    elif type_ == "checkout.session.async_payment_failed":
        record_charge_declined(payment.id, "The payment did not go through.", now=now,
                               event_id=event_id)
    elif type_ == "payment_intent.succeeded":
        if payment.kind == "charge":
            record_charge_succeeded(payment.id, intent_id=obj.get("id", ""),
                                    customer=obj.get("customer"),
                                    payment_method=obj.get("payment_method"), now=now,
                                    event_id=event_id)
        else:
            return "deposit capture is recorded by the capture job"
    elif type_ == "payment_intent.payment_failed":
        error = obj.get("last_payment_error") or {}
        message = error.get("message") or "Your card was declined."
        if payment.kind == "deposit_hold":
            record_hold_failed(payment.id, message, now=now, event_id=event_id,
                               intent_id=obj.get("id", ""))
        else:
            record_charge_declined(payment.id, message, now=now, event_id=event_id,
                                   intent_id=obj.get("id", ""))
    elif type_ == "payment_intent.amount_capturable_updated":
        if payment.kind != "deposit_hold":
            return "not a deposit hold"
        record_hold_authorised(payment.id, obj, now=now, event_id=event_id)
    elif type_ == "payment_intent.canceled":
        if payment.kind != "deposit_hold":
            return "an abandoned checkout's intent"
        record_hold_released(payment.id, now=now, event_id=event_id,
                             why=f"hold cancelled ({obj.get('cancellation_reason') or 'by Stripe'})")
    return None


# --- deposit holds -------------------------------------------------------------------------

def active_hold(hire: Hire) -> Optional[Payment]:
    for payment in reversed(payments_of(hire)):
        if payment.kind == "deposit_hold" and payment.state in ("pending", "processing", "authorised"):
            return payment
    return None


def latest_hold(hire: Hire) -> Optional[Payment]:
    holds = [p for p in payments_of(hire) if p.kind == "deposit_hold"]
    return holds[-1] if holds else None


def _paid_in_eth(hold: Optional[Payment]) -> bool:
    return hold is not None and hold.method == CRYPTO and hold.state == "succeeded"


def eth_deposit(hire: Hire) -> Optional[Payment]:
    """The deposit paid in ETH with the price (received, so "succeeded"); None for card hires."""
    hold = latest_hold(hire)
    return hold if _paid_in_eth(hold) else None


def place_deposit_hold(hire: Hire, *, now: Optional[datetime] = None,
                       by: Optional[User] = None) -> Optional[Payment]:
    """Put the deposit on the saved card as a hold (manual capture); the job calls Stripe.

    Called by the scheduled job DEPOSIT_HOLD_LEAD_DAYS before pickup, or at pickup by the
    counter. Returns the hold (an existing active one if there is one), or None when the hire
    has no deposit. A declined hold is final; calling again starts a new attempt.
    """
    now = now or utcnow()
    if hire.deposit_pence <= 0:
        return None
    if hire.hire_state not in (S.CONFIRMED, S.ACTIVE):
        raise PaymentError(f"A {hire.state.replace('_', ' ')} booking does not take a deposit.")
    existing = active_hold(hire)
    if existing is not None:
        return existing
    source = saved_card_of(hire)
    if source is None:
        raise PaymentError("There is no saved card for this booking: take the deposit at the counter.")
    attempt = len([p for p in payments_of(hire) if p.kind == "deposit_hold"]) + 1
    hold = Payment(
        hire_id=hire.id, method=CARD, kind="deposit_hold", state="pending",
        amount_pence=hire.deposit_pence, currency=hire.currency, parent_id=source.id,
        idempotency_key=f"hire:{hire.id}:deposit:{attempt}", created_at=now,
        reason="deposit", requested_by_id=by.id if by else None,
        details={"purpose": "deposit", "attempt": attempt,
                 "customer": source.details.get("customer"),
                 "payment_method": source.details.get("payment_method"),
                 "source_intent": source.provider_ref})
    hold.note("deposit hold requested" + (" at the counter" if by else ""), now=now, by=by)
    db.session.add(hold)
    if by is not None:
        audit.record(by, "payment.deposit_hold_requested", hire,
                     new={"amount_pence": hire.deposit_pence, "key": hold.idempotency_key}, at=now)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return db.session.scalars(select(Payment).where(
            Payment.idempotency_key == f"hire:{hire.id}:deposit:{attempt}")).one()
    from ..jobs import enqueue
    from ..jobs.payments import authorise_deposit
    enqueue(authorise_deposit, hold.id)
    return hold


def ensure_deposit_hold(hire: Hire, *, by: Optional[User] = None,
                        now: Optional[datetime] = None) -> Optional[Payment]:
    """At pickup: the active hold, or a new one on the saved card (again after a decline:
    the customer is at the counter). A deposit paid in ETH with the price is returned as it is.
    Never raises: with no saved card and no deposit paid, returns None and the counter takes
    the deposit another way."""
    paid_in_eth = eth_deposit(hire)
    if paid_in_eth is not None:
        return paid_in_eth
    try:
        return place_deposit_hold(hire, now=now, by=by)
    except PaymentError as exc:
        log().info("no deposit hold at pickup", hire_id=hire.id, reason=exc.message)
        return None


def deposit_hold_params(hold: Payment) -> dict:
    hire = hold.hire
    return {
        "amount": hold.amount_pence, "currency": hold.currency.lower(),
        "customer": hold.details.get("customer"), "payment_method": hold.details.get("payment_method"),
        "off_session": True, "confirm": True, "capture_method": "manual",
        "description": f"ACME Rentals deposit for hire {hire.reference}",
        "metadata": {"payment_id": str(hold.id), "hire_id": str(hire.id),
                     "hire_reference": hire.reference, "purpose": "deposit"},
        "expand": ["latest_charge"],
    }


def record_hold_authorised(hold_id: int, intent: dict, *, now: datetime, event_id: str = "") -> None:
    """The hold is on the card: remember until when it can be captured."""
    hold = _lock_payment(hold_id)
    if hold is None or hold.state not in ("pending", "processing"):
        db.session.rollback()
        return
    if intent.get("status") != "requires_capture":
        db.session.rollback()
        return
    hold.provider_ref = hold.provider_ref or intent.get("id", "")
    charge = intent.get("latest_charge")
    capture_before = None
    if isinstance(charge, dict):
        capture_before = (((charge.get("payment_method_details") or {}).get("card") or {})
                          .get("capture_before"))
    hold.capture_before = (datetime.fromtimestamp(int(capture_before), timezone.utc) if capture_before
                           else now + timedelta(hours=current_app.config["DEPOSIT_HOLD_FALLBACK_HOURS"]))
    hold.failure_message = ""
    hold.move_to("authorised", why="deposit hold placed on the card", now=now, event_id=event_id)
    db.session.commit()


def record_hold_failed(hold_id: int, message: str, *, now: datetime, event_id: str = "",
                       intent_id: str = "") -> None:
    """The bank declined the hold: tell the customer (once) what to do; staff see it too."""
    hold = _lock_payment(hold_id)
    if hold is None or hold.state not in ("pending", "processing"):
        db.session.rollback()
        return
    hold.provider_ref = hold.provider_ref or intent_id
    hold.failure_message = message[:300]
    hold.move_to("failed", why=f"deposit hold declined: {message}", now=now, event_id=event_id)
    db.session.commit()
    hire = hold.hire
    from ..mail import queue_email
    queue_email(
        key=f"payment:{hold.id}:hold-failed", to=hire.customer.email,
        subject=f"Action needed: deposit for booking {hire.reference}",
        body=(f"Hello {hire.customer.full_name},\n\n"
              f"We could not place the {money(hold.amount_pence, hold.currency)} deposit hold for "
              f"booking {hire.reference} on your saved card. Your bank said: {message}\n\n"
              "Your booking is still confirmed. Please bring a credit or debit card in your "
              "name to pickup so the counter can take the deposit, or call the branch.\n\n"
              "ACME Rentals"))


def record_hold_released(hold_id: int, *, now: datetime, event_id: str = "", why: str) -> None:
    hold = _lock_payment(hold_id)
    if hold is None or hold.state != "authorised":
        db.session.rollback()
        return
    hold.move_to("cancelled", why=why, now=now, event_id=event_id)
    db.session.commit()


def capture_deposit(hire: Hire, amount_pence: int, by: Optional[User], *, now: Optional[datetime] = None,
                    reason: str = "") -> Payment:
    """Take `amount_pence` of the deposit hold (0: none) and release the rest; a job calls Stripe.

    Called once per hire at return (counter). Calling again with the same amount returns the
    same hold; with another amount while the first is under way, it is refused.
    """
    now = now or utcnow()
    hold = latest_hold(hire)
    children = [p for p in payments_of(hire) if hold is not None and p.parent_id == hold.id
                and p.kind in ("capture", "release", "refund")]
    if children:
        captured = sum(p.amount_pence for p in children if p.kind == "capture")
        if captured != amount_pence:
            raise PaymentError("The deposit has already been settled.")
        return hold
    if _paid_in_eth(hold):
        return _settle_crypto_deposit(hire, hold, amount_pence, by, now=now, reason=reason)
    if hold is None or hold.state != "authorised":
        raise PaymentError("There is no deposit hold on the card to capture.")
    if not 0 <= amount_pence <= hold.amount_pence:
        raise PaymentError(f"Capture between {money(0)} and {money(hold.amount_pence, hold.currency)}.")
    rows = []
    if amount_pence > 0:
        rows.append(Payment(hire_id=hire.id, method=CARD, kind="capture", amount_pence=amount_pence,
                            currency=hold.currency, parent_id=hold.id, state="pending",
                            idempotency_key=f"hire:{hire.id}:deposit:{hold.id}:capture",
                            reason=reason or "deposit kept", requested_by_id=by.id if by else None,
                            created_at=now, details={"purpose": "deposit"}))
    if amount_pence < hold.amount_pence:
        rows.append(Payment(hire_id=hire.id, method=CARD, kind="release",
                            amount_pence=hold.amount_pence - amount_pence, currency=hold.currency,
                            parent_id=hold.id, state="pending",
                            idempotency_key=f"hire:{hire.id}:deposit:{hold.id}:release",
                            reason="deposit released", requested_by_id=by.id if by else None,
                            created_at=now, details={"purpose": "deposit"}))
    for row in rows:
        row.note(f"requested by {by.full_name if by else 'the system'}", now=now, by=by)
        db.session.add(row)
    if by is not None:
        audit.record(by, "payment.deposit_settled", hire,
                     new={"captured_pence": amount_pence,
                          "released_pence": hold.amount_pence - amount_pence, "reason": reason}, at=now)
    db.session.commit()
    from ..jobs import enqueue
    from ..jobs.payments import settle_deposit
    enqueue(settle_deposit, hold.id)
    return hold


def _settle_crypto_deposit(hire: Hire, hold: Payment, amount_pence: int, by: Optional[User], *,
                           now: datetime, reason: str) -> Payment:
    """The deposit was paid in ETH with the price: keep `amount_pence` of it and send the rest
    back through the crypto refund path (to an address the customer confirms)."""
    from . import crypto
    if not 0 <= amount_pence <= hold.amount_pence:
        raise PaymentError(f"Keep between {money(0)} and {money(hold.amount_pence, hold.currency)}.")
    if amount_pence > 0:
        wei = int(hold.details.get("wei", 0)) * amount_pence // hold.amount_pence
        kept = Payment(hire_id=hire.id, method=CRYPTO, kind="capture", amount_pence=amount_pence,
                       currency=hold.currency, parent_id=hold.id, state="pending",
                       idempotency_key=f"hire:{hire.id}:deposit:{hold.id}:capture",
                       reason=reason or "deposit kept", requested_by_id=by.id if by else None,
                       created_at=now, details={"purpose": "deposit", "wei": str(wei)})
        db.session.add(kept)
        kept.move_to("succeeded", why="kept from the deposit paid in ETH", now=now, by=by)
    if by is not None:
        audit.record(by, "payment.deposit_settled", hire,
                     new={"captured_pence": amount_pence, "returned_pence": hold.amount_pence - amount_pence,
                          "method": CRYPTO, "reason": reason}, at=now)
    db.session.commit()
    rest = hold.amount_pence - amount_pence
    if rest > 0:
        try:
            crypto.request_crypto_refund(hire, rest, reason or "deposit returned", by,
                                         idempotency_key=f"hire:{hire.id}:deposit:{hold.id}:return",
                                         now=now, parent=hold)
        except crypto.CryptoError as exc:
            raise PaymentError(str(exc)) from exc
    return hold


def release_deposit(hire: Hire, by: Optional[User], *, reason: str,
                    now: Optional[datetime] = None) -> Optional[Payment]:
    """The hire ended before the car went out (cancelled, refused at pickup): give the whole
    deposit back. A card hold is released; a deposit paid in ETH is refunded. Safe to repeat;
    never raises (what cannot be done is logged for staff)."""
    now = now or utcnow()
    hold = latest_hold(hire)
    if hold is None or not (hold.state == "authorised" or _paid_in_eth(hold)):
        return None
    try:
        return capture_deposit(hire, 0, by, now=now, reason=reason)
    except PaymentError as exc:
        db.session.rollback()
        log().warning("deposit not released", hire_id=hire.id, error=exc.message)
        return None


def record_deposit_settled(hold_id: int, intent: dict, *, now: datetime) -> None:
    """Stripe captured (part of) the hold or cancelled it: finish the hold and its children."""
    hold = _lock_payment(hold_id)
    if hold is None:
        db.session.rollback()
        return
    children = [p for p in payments_of(hold.hire) if p.parent_id == hold.id
                and p.kind in ("capture", "release")]
    for child in children:
        if not child.is_final:
            child.provider_ref = intent.get("id", "")
            child.move_to("succeeded", why=f"Stripe: intent {intent.get('status')}", now=now)
    if hold.state == "authorised":
        captured = intent.get("status") == "succeeded"
        hold.capture_before = None
        hold.move_to("succeeded" if captured else "cancelled",
                     why=(f"{money(intent.get('amount_received', 0), hold.currency)} captured, rest released"
                          if captured else "released in full"), now=now)
    db.session.commit()


def record_deposit_settle_refused(hold_id: int, message: str, *, now: datetime) -> None:
    """Stripe refused the capture (e.g. the hold lapsed): staff must charge the saved card."""
    hold = _lock_payment(hold_id)
    if hold is None:
        db.session.rollback()
        return
    for child in [p for p in payments_of(hold.hire) if p.parent_id == hold.id
                  and p.kind in ("capture", "release")]:
        if not child.is_final:
            child.failure_message = message[:300]
            child.move_to("failed", why=f"Stripe refused: {message}", now=now)
    if hold.state == "authorised":
        hold.failure_message = "The hold could not be captured (it may have lapsed)."
        hold.move_to("failed", why=f"capture refused: {message}", now=now)
    db.session.commit()


# --- charging the saved card ----------------------------------------------------------------

def charge_saved_card(hire: Hire, amount_pence: int, reason: str, by: User, *,
                      now: Optional[datetime] = None, key: Optional[str] = None) -> Payment:
    """Charge the card saved at checkout (counter: damage, fuel, late fees). A job calls Stripe.

    Pass `key` to make a retried request from the same screen the same charge; without it,
    every call is a new charge.
    """
    now = now or utcnow()
    if amount_pence <= 0:
        raise PaymentError("The amount must be more than zero.")
    source = saved_card_of(hire)
    if source is None:
        raise PaymentError("There is no saved card for this booking.")
    extra = [p for p in payments_of(hire) if _purpose(p) == SAVED_CARD]
    key = key or f"hire:{hire.id}:saved-card:{len(extra) + 1}"
    existing = db.session.scalar(select(Payment).where(Payment.idempotency_key == key))
    if existing is not None:
        return existing
    payment = Payment(
        hire_id=hire.id, method=CARD, kind="charge", state="pending", amount_pence=amount_pence,
        currency=hire.currency, idempotency_key=key, parent_id=source.id, reason=reason[:200],
        requested_by_id=by.id, created_at=now,
        details={"purpose": SAVED_CARD, "customer": source.details.get("customer"),
                 "payment_method": source.details.get("payment_method"),
                 "source_intent": source.provider_ref})
    payment.note(f"charge requested by {by.full_name}: {reason}", now=now, by=by)
    db.session.add(payment)
    audit.record(by, "payment.saved_card_charged", hire,
                 new={"amount_pence": amount_pence, "reason": reason, "key": key}, at=now)
    db.session.commit()
    from ..jobs import enqueue
    from ..jobs.payments import charge_saved_card as charge_job
    enqueue(charge_job, payment.id)
    return payment


def saved_card_params(payment: Payment) -> dict:
    hire = payment.hire
    return {
        "amount": payment.amount_pence, "currency": payment.currency.lower(),
        "customer": payment.details.get("customer"),
        "payment_method": payment.details.get("payment_method"),
        "off_session": True, "confirm": True,
        "description": f"ACME Rentals hire {hire.reference}: {payment.reason}",
        "metadata": {"payment_id": str(payment.id), "hire_id": str(hire.id),
                     "hire_reference": hire.reference, "purpose": SAVED_CARD},
    }


def due_deposit_holds(now: datetime) -> list[Hire]:
    """Confirmed hires starting within DEPOSIT_HOLD_LEAD_DAYS that never had a hold."""
    lead = timedelta(days=current_app.config["DEPOSIT_HOLD_LEAD_DAYS"])
    hires = db.session.scalars(select(Hire).where(
        Hire.state == S.CONFIRMED.value, Hire.deposit_pence > 0,
        Hire.start_at <= now + lead, Hire.start_at > now).order_by(Hire.start_at))
    due = []
    for hire in hires:
        payments = payments_of(hire)
        if any(p.kind == "deposit_hold" for p in payments):
            continue  # placed, or declined (then staff take it at pickup)
        if saved_card_of(hire) is not None:
            due.append(hire)
    return due


def place_due_deposit_holds(now: datetime) -> list[int]:
    """The scheduled job's work: place every deposit hold that is due. Safe to run twice."""
    placed = []
    for hire in due_deposit_holds(now):
        try:
            hold = place_deposit_hold(hire, now=now)
        except PaymentError as exc:
            log().warning("deposit hold not placed", hire_id=hire.id, reason=exc.message)
            continue
        if hold is not None:
            placed.append(hold.id)
    return placed


# --- refunds' outcomes ------------------------------------------------------------------------

def record_refund_created(refund_id: int, refund: dict, *, now: datetime, event_id: str = "") -> None:
    payment = _lock_payment(refund_id)
    if payment is None:
        db.session.rollback()
        return
    payment.provider_ref = payment.provider_ref or refund.get("id", "")
    status = refund.get("status")
    if status == "succeeded" and payment.can_move_to("succeeded"):
        payment.move_to("succeeded", why=f"Stripe refund {refund.get('id')} succeeded", now=now,
                        event_id=event_id)
    elif status in ("failed", "canceled") and payment.can_move_to("failed"):
        payment.failure_message = (refund.get("failure_reason") or "The refund failed.")[:300]
        payment.move_to("failed", why=f"Stripe refund {status}", now=now, event_id=event_id)
    elif status == "pending" and payment.state == "pending":
        payment.move_to("processing", why="Stripe refund pending", now=now, event_id=event_id)
    db.session.commit()


def _apply_refund_event(type_: str, obj: dict, *, event_id: str, now: datetime) -> Optional[str]:
    refunds = (obj.get("refunds") or {}).get("data") or [] if type_ == "charge.refunded" else [obj]
    applied = False
    for refund in refunds:
        payment = _payment_from(refund)
        if payment is not None and payment.kind == "refund":
            record_refund_created(payment.id, refund, now=now, event_id=event_id)
            applied = True
    return None if applied else "no refund of ours in it"


def describe(payment: Payment) -> str:
    """A line for the receipt."""
    labels = {
        ("charge", CHECKOUT): "Card payment",
        ("charge", SAVED_CARD): "Charge to your saved card",
        ("deposit_hold", "deposit"): "Deposit hold on your card",
        ("capture", "deposit"): "Deposit kept",
        ("release", "deposit"): "Deposit released",
    }
    if payment.method == CRYPTO and payment.kind in ("deposit_hold", "capture"):
        return {"deposit_hold": "Deposit paid in ETH with the price",
                "capture": "Deposit kept (crypto)"}[payment.kind]
    label = labels.get((payment.kind, _purpose(payment)))
    if label is None:
        label = {"refund": "Refund", "charge": "Payment", "deposit_hold": "Deposit hold",
                 "capture": "Deposit kept", "release": "Deposit released"}.get(payment.kind, payment.kind)
        if payment.method == "crypto":
            label = f"{label} (crypto)"
    return label


def receipt_lines(hire: Hire) -> list[dict[str, Any]]:
    lines = []
    for payment in payments_of(hire):
        card = (payment.details or {}).get("card") or {}
        lines.append({"payment": payment, "label": describe(payment),
                      "card": f"{card.get('brand', '').title()} •••• {card['last4']}" if card.get("last4") else "",
                      "sign": -1 if payment.kind in ("refund", "release") else 1})
    return lines

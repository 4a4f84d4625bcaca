"""The outcome of a card charge, and charges on the card saved at checkout.

Stripe's answer (from a webhook or the job that asked after the customer came back) is
applied here once: `record_charge_succeeded` records the money, then `settle_paid_hire`
reports the rental paid (app/events.py; the hire lifecycle confirms the hire, itself
idempotent: one transition, one email) and gives back any money the hire does not owe. `charge_saved_card` records a later charge (damage,
fuel, late return at the counter); its job makes the off-session charge.
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import select

from ... import audit, events
from ...extensions import db
from ...queueing import enqueue
from ...logging_setup import log
from ...models import Hire, InvalidTransition, Payment, User, utcnow
from ..ledger import (CARD, CHECKOUT, SAVED_CARD, S, PaymentError, RefundError, ever_confirmed,
                      lock_payment, payments_of, purpose, refunded_pence, rental_paid_pence,
                      saved_card_of)
from ..refunds import request_refund


SYNC_TASK = "app.jobs.payments.sync_checkout_session"  # by name: jobs import this module


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
        if card is None and event_id:
            # A webhook's session names the payment intent without the card: the receipt's
            # "Visa •••• 4242" comes from the session retrieved expanded, whether or not the
            # customer comes back to the return page (where the same retrieval is asked for).
            enqueue(SYNC_TASK, payment_id)
    elif session.get("status") == "expired":
        payment = lock_payment(payment_id)
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
    payment = lock_payment(payment_id)
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
    if purpose(payment) == CHECKOUT:
        settle_paid_hire(payment.id, now=now)


def settle_paid_hire(payment_id: int, *, now: datetime) -> None:
    """After a rental payment succeeded: confirm a held hire, give back what is not owed.

    Idempotent: confirm_hire does nothing to a confirmed hire, and a refund of money not
    owed has a key fixed per payment ("payment:<id>:unowed"), so it is asked for once.
    """
    payment = db.session.get(Payment, payment_id)
    hire = payment.hire
    if hire.hire_state in (S.HELD, S.CONFIRMED, S.ACTIVE):  # confirmed: a dearer change's difference
        confirm_hire_after_payment(hire, now=now, amount_pence=payment.amount_pence,
                                   payment_key=payment.idempotency_key)
        db.session.refresh(hire)
    owed = hire.total_pence if ever_confirmed(hire) else 0
    excess = rental_paid_pence(hire) - owed
    if excess > 0:
        amount = min(excess, payment.amount_pence - refunded_pence(payment, payments_of(hire)))
        why = ("paid twice for the same booking" if owed else
               f"paid after the booking was {hire.state.replace('_', ' ')}")
        if amount > 0:
            try:
                request_refund(hire, amount, why, None, key=f"payment:{payment.id}:unowed",
                               payment=payment, now=now)
            except RefundError as exc:
                log().error("could not refund money not owed", payment_id=payment.id, error=exc.message)


def confirm_hire_after_payment(hire: Hire, *, now: datetime, amount_pence: int = 0,
                               payment_key: str = "") -> None:
    """Report the rental paid; the hire lifecycle confirms it (one transition, one email), or
    invoices what more was paid on a confirmed hire."""
    try:
        events.report(events.rental_paid, hire, now=now, amount_pence=amount_pence, payment_key=payment_key)
    except InvalidTransition:
        # The hold ended (expired or cancelled) just before the money came: settle_paid_hire
        # gives it back.
        log().warning("payment for a hire that can no longer be confirmed", hire_id=hire.id,
                      state=hire.state)


def record_charge_declined(payment_id: int, message: str, *, now: datetime, event_id: str = "",
                           intent_id: str = "") -> None:
    """A card was declined. Checkout stays open for another card; a saved-card charge fails."""
    payment = lock_payment(payment_id)
    if payment is None or payment.is_final:
        db.session.rollback()  # a late "failed" for a payment that already succeeded: no effect
        return
    if intent_id and not payment.provider_ref:
        payment.provider_ref = intent_id
    payment.failure_message = message[:300]
    if purpose(payment) == CHECKOUT:
        payment.note(f"card declined: {message}", now=now, event_id=event_id)
    else:
        payment.move_to("failed", why=f"card declined: {message}", now=now, event_id=event_id)
    db.session.commit()


# --- charging the saved card ----------------------------------------------------------------

def charge_saved_card(hire: Hire, amount_pence: int, reason: str, by: User, *,
                      now: Optional[datetime] = None, key: Optional[str] = None,
                      charge_purpose: str = SAVED_CARD) -> Payment:
    """Charge the card saved at checkout (counter: damage, fuel, late fees). A job calls Stripe.

    Pass `key` to make a retried request from the same screen the same charge; without it,
    every call is a new charge. `charge_purpose` EXTENSION makes it part of the rental price
    (an extended hire's extra time), which `rental_paid_pence` counts.
    """
    now = now or utcnow()
    if amount_pence <= 0:
        raise PaymentError("The amount must be more than zero.")
    source = saved_card_of(hire)
    if source is None:
        raise PaymentError("There is no saved card for this booking.")
    extra = [p for p in payments_of(hire) if purpose(p) == SAVED_CARD]
    key = key or f"hire:{hire.id}:saved-card:{len(extra) + 1}"
    existing = db.session.scalar(select(Payment).where(Payment.idempotency_key == key))
    if existing is not None:
        return existing
    payment = Payment(
        hire_id=hire.id, method=CARD, kind="charge", state="pending", amount_pence=amount_pence,
        currency=hire.currency, idempotency_key=key, parent_id=source.id, reason=reason[:200],
        requested_by_id=by.id, created_at=now,
        details={"purpose": charge_purpose, "customer": source.details.get("customer"),
                 "payment_method": source.details.get("payment_method"),
                 "source_intent": source.provider_ref})
    payment.note(f"charge requested by {by.full_name}: {reason}", now=now, by=by)
    db.session.add(payment)
    audit.record(by, "payment.saved_card_charged", hire,
                 new={"amount_pence": amount_pence, "reason": reason, "key": key}, at=now)
    db.session.commit()
    enqueue("app.jobs.payments.charge_saved_card", payment.id)
    return payment


def off_session_params(payment: Payment, *, description: str, purpose: str,
                       manual_capture: bool = False) -> dict:
    """Stripe PaymentIntent parameters for money taken from the saved card without the
    customer present: a later charge, or (`manual_capture`) a deposit hold."""
    hire = payment.hire
    params = {
        "amount": payment.amount_pence, "currency": payment.currency.lower(),
        "customer": payment.details.get("customer"),
        "payment_method": payment.details.get("payment_method"),
        "off_session": True, "confirm": True,
    }
    if manual_capture:
        params["capture_method"] = "manual"
    params["description"] = description
    params["metadata"] = {"payment_id": str(payment.id), "hire_id": str(hire.id),
                          "hire_reference": hire.reference, "purpose": purpose}
    return params


def saved_card_params(payment: Payment) -> dict:
    return off_session_params(
        payment, description=f"ACME Rentals hire {payment.hire.reference}: {payment.reason}",
        purpose=SAVED_CARD)

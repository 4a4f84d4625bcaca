"""Stripe's webhooks: each verified event is stored once, then applied once by a job.

`store_event` keeps an event of a subscribed type under its unique id (a duplicate is
dropped); `process_event` routes it to the rule that applies it (charges.py, deposits.py,
refunds.py). Duplicates and stale events change nothing: every rule re-reads its payment
under a lock and payments only move forward.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ...extensions import db
from ...models import Payment, StripeEvent
from .charges import apply_checkout_session, record_charge_declined, record_charge_succeeded
from .deposits import record_hold_authorised, record_hold_failed, record_hold_released
from .refunds import record_refund_created


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


def payment_from(obj: dict) -> Optional[Payment]:
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
    payment = payment_from(obj)
    outcome = _dispatch(event["type"], obj, payment, event_id=event["id"], now=now)
    row = db.session.get(StripeEvent, event_row_id)
    row.move_to("processed" if outcome is None else "ignored", now=now,
                outcome=outcome or "applied")
    db.session.commit()


def _dispatch(type_: str, obj: dict, payment: Optional[Payment], *, event_id: str,
              now: datetime) -> Optional[str]:
    """Route an event to its rule; a string says why it was ignored."""
    if type_ in ("charge.refunded", "refund.updated", "refund.failed"):
        return apply_refund_event(type_, obj, event_id=event_id, now=now)
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


def apply_refund_event(type_: str, obj: dict, *, event_id: str, now: datetime) -> Optional[str]:
    refunds = (obj.get("refunds") or {}).get("data") or [] if type_ == "charge.refunded" else [obj]
    applied = False
    for refund in refunds:
        payment = payment_from(refund)
        if payment is not None and payment.kind == "refund":
            record_refund_created(payment.id, refund, now=now, event_id=event_id)
            applied = True
    return None if applied else "no refund of ours in it"

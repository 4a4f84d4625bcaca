"""Deposit holds on the saved card: placing, authorising, capturing part and releasing the rest.

DEPOSIT_HOLD_LEAD_DAYS before pickup the scheduler places a hold (manual capture) on the
card saved at checkout (`place_due_deposit_holds`), or the counter does at pickup. At the
return the counter captures what the return costs and releases the rest
(`capture_hold`). Services record the rows; jobs make the calls; the `record_*` functions
apply Stripe's answers.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Optional


from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ... import audit
from ...extensions import db
from ...filters import money
from ...queueing import enqueue
from ...logging_setup import log
from ...mail import queue_email
from ...models import Hire, Payment, User, utcnow
from ...settings import settings
from ..ledger import (CARD, S, PaymentError, active_hold, lock_payment,
                      payments_of, saved_card_of)
from .charges import off_session_params


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
    enqueue("app.jobs.payments.authorise_deposit", hold.id)
    return hold


def deposit_hold_params(hold: Payment) -> dict:
    return {**off_session_params(hold, description=f"ACME Rentals deposit for hire {hold.hire.reference}",
                                 purpose="deposit", manual_capture=True),
            "expand": ["latest_charge"]}


def record_hold_authorised(hold_id: int, intent: dict, *, now: datetime, event_id: str = "") -> None:
    """The hold is on the card: remember until when it can be captured."""
    hold = lock_payment(hold_id)
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
                           else now + timedelta(hours=settings().money.deposit_hold_fallback_hours))
    hold.failure_message = ""
    hold.move_to("authorised", why="deposit hold placed on the card", now=now, event_id=event_id)
    db.session.commit()


def record_hold_failed(hold_id: int, message: str, *, now: datetime, event_id: str = "",
                       intent_id: str = "") -> None:
    """The bank declined the hold: tell the customer (once) what to do; staff see it too."""
    hold = lock_payment(hold_id)
    if hold is None or hold.state not in ("pending", "processing"):
        db.session.rollback()
        return
    hold.provider_ref = hold.provider_ref or intent_id
    hold.failure_message = message[:300]
    hold.move_to("failed", why=f"deposit hold declined: {message}", now=now, event_id=event_id)
    db.session.commit()
    hire = hold.hire
    queue_email(key=f"payment:{hold.id}:hold-failed", to=hire.customer.email,
                subject=f"Action needed: deposit for booking {hire.reference}",
                template="payments/emails/deposit_hold_failed.txt", hire=hire, hold=hold,
                message=message)


def record_hold_released(hold_id: int, *, now: datetime, event_id: str = "", why: str) -> None:
    hold = lock_payment(hold_id)
    if hold is None or hold.state != "authorised":
        db.session.rollback()
        return
    hold.move_to("cancelled", why=why, now=now, event_id=event_id)
    db.session.commit()


def capture_hold(hire: Hire, hold: Optional[Payment], amount_pence: int, by: Optional[User], *,
                 now: datetime, reason: str = "") -> Payment:
    """Take `amount_pence` of the card's deposit hold (0: none) and release the rest; a job
    calls Stripe. (providers.capture_deposit decides that the hold is still to settle.)"""
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
    enqueue("app.jobs.payments.settle_deposit", hold.id)
    return hold


def record_deposit_settled(hold_id: int, intent: dict, *, now: datetime) -> None:
    """Stripe captured (part of) the hold or cancelled it: finish the hold and its children."""
    hold = lock_payment(hold_id)
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
    hold = lock_payment(hold_id)
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


def due_deposit_holds(now: datetime) -> list[Hire]:
    """Confirmed hires starting within DEPOSIT_HOLD_LEAD_DAYS that never had a hold."""
    lead = timedelta(days=settings().money.deposit_hold_lead_days)
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

"""Deposit holds on the saved card: placing, authorising, capturing part and releasing the rest.

DEPOSIT_HOLD_LEAD_DAYS before pickup the scheduler places a hold (manual capture) on the
card saved at checkout (`place_due_deposit_holds`), or the counter does at pickup. At the
return the counter captures what the return costs and releases the rest
(`capture_hold`). Services record the rows; jobs make the calls; the `record_*` functions
apply Stripe's answers.

A hold is wanted only while its hire may still go out. When the hire ends before that
(cancelled, expired, no-show, refused at pickup), `release_hold` lets it go at whatever
stage it is: an authorised hold is cancelled at Stripe (a `release` row, its own key); a
hold still being placed is cancelled before it reaches the card, or released the moment
Stripe answers (`record_hold_authorised` checks the hire under its lock). The tick's
`release_stranded_holds` catches any hold left on an ended hire.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Optional

from flask import current_app
from sqlalchemy import and_, or_, select
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


# A hire in one of these states will never go out: its card holds are let go.
ENDED_BEFORE_PICKUP = (S.CANCELLED, S.EXPIRED, S.NO_SHOW, S.REFUSED_AT_PICKUP)


def hold_unwanted(hold: Payment) -> bool:
    """The hold's hire ended before the car went out (or release was asked for): let it go."""
    return hold.hire.hire_state in ENDED_BEFORE_PICKUP or bool((hold.details or {}).get("release"))


def _lock_hire_of(hold_id: int) -> Optional[Hire]:
    """The hold's hire under a row lock, taken before the hold's: the lifecycle moves the hire
    under the same lock, so a hold authorised while its hire is being cancelled sees the move."""
    hire_id = db.session.scalar(select(Payment.hire_id).where(Payment.id == hold_id))
    if hire_id is None:
        return None
    return db.session.scalars(select(Hire).where(Hire.id == hire_id).with_for_update(key_share=True)
                              .execution_options(populate_existing=True)).one_or_none()


def _settlement_rows(hold: Payment) -> list[Payment]:
    return [p for p in payments_of(hold.hire) if p.parent_id == hold.id and p.kind in ("capture", "release")]


def _ended_reason(hold: Payment) -> str:
    return f"booking {hold.hire.state.replace('_', ' ')}: deposit hold released"


def _add_release(hold: Payment, by: Optional[User], *, now: datetime, reason: str) -> Payment:
    """The row that lets the whole hold go (the settle job cancels the intent at Stripe),
    recorded in the ledger and the audit trail; the caller commits and enqueues."""
    hire = hold.hire
    row = Payment(hire_id=hire.id, method=CARD, kind="release", amount_pence=hold.amount_pence,
                  currency=hold.currency, parent_id=hold.id, state="pending",
                  idempotency_key=f"hire:{hire.id}:deposit:{hold.id}:release",
                  reason=reason[:200], requested_by_id=by.id if by else None, created_at=now,
                  details={"purpose": "deposit"})
    row.note(f"requested by {by.full_name if by else 'the system'}: {reason}"[:300], now=now, by=by)
    db.session.add(row)
    audit.record(by, "payment.deposit_released", hire, {"hold_state": hold.state},
                 {"released_pence": hold.amount_pence, "hold_id": hold.id, "reason": reason,
                  "key": row.idempotency_key}, at=now)
    return row


def release_hold(hold_id: int, by: Optional[User], *, now: datetime, reason: str) -> Optional[Payment]:
    """Let a card deposit hold go in full, whatever stage it is at; safe to repeat.

    Authorised: a release row and the settle job (Stripe cancels the intent). Still being
    placed (pending, processing): marked, so that the placing job cancels it before it
    reaches the card, or releases it as soon as Stripe answers. Anything else (declined,
    already settled or released): nothing to do. Returns the hold, or None."""
    _lock_hire_of(hold_id)
    hold = lock_payment(hold_id)
    if hold is None or hold.method != CARD or hold.kind != "deposit_hold":
        db.session.rollback()
        return None
    if hold.state == "authorised":
        if _settlement_rows(hold):
            db.session.rollback()  # settled or being released already
            return hold
        _add_release(hold, by, now=now, reason=reason)
        try:
            db.session.commit()
        except IntegrityError:  # released by another process at this moment
            db.session.rollback()
            return hold
        enqueue("app.jobs.payments.settle_deposit", hold.id)
        return hold
    if hold.state in ("pending", "processing"):
        if not (hold.details or {}).get("release"):
            hold.details = {**(hold.details or {}), "release": reason[:200]}
            hold.note(f"to be released as soon as the card answers: {reason}"[:300], now=now, by=by)
            audit.record(by, "payment.deposit_release_requested", hold.hire, {"hold_state": hold.state},
                         {"hold_id": hold.id, "reason": reason}, at=now)
        db.session.commit()
        # The placing job again, same key: it cancels a hold that never reached Stripe, or
        # gets Stripe's first answer back and releases the hold at once. (Its first run may
        # have given up on an unanswering Stripe: nothing else would run it again.)
        enqueue("app.jobs.payments.authorise_deposit", hold.id)
        return hold
    db.session.rollback()
    return None


def record_hold_not_placed(hold_id: int, *, now: datetime) -> None:
    """The hire ended before the placing job reached Stripe: nothing asked of the card."""
    hold = lock_payment(hold_id)
    if hold is None or hold.state not in ("pending", "processing"):
        db.session.rollback()
        return
    hold.move_to("cancelled", why=f"booking {hold.hire.state.replace('_', ' ')} before the hold was "
                                  "placed: nothing was asked of the card", now=now)
    db.session.commit()


def release_stranded_holds(now: datetime, *, batch: int = 200) -> list[int]:
    """The tick's catch-all: card holds whose hire ended before the car went out and that
    nothing is releasing yet: authorised ones (an earlier release that failed, a release
    lost with a dead process), and ones still being placed since JOB_RECOVERY_AFTER_SECONDS
    ago (Stripe did not answer: the placing job is run again, and releases what it finds).
    Returns the ids of the holds released (or asked about again)."""
    # Holds still being placed on such hires, Stripe unanswering since: ask again (same key).
    before = now - timedelta(seconds=current_app.config["JOB_RECOVERY_AFTER_SECONDS"])
    stranded = db.session.scalars(select(Payment).join(Hire, Hire.id == Payment.hire_id).where(
        Payment.method == CARD, Payment.kind == "deposit_hold",
        Hire.state.in_([s.value for s in ENDED_BEFORE_PICKUP]),
        or_(Payment.state == "authorised",
            and_(Payment.state.in_(("pending", "processing")), Payment.created_at <= before)))
        .order_by(Payment.id).limit(batch)).all()
    released = []
    for hold in stranded:
        if _settlement_rows(hold):
            continue
        if release_hold(hold.id, None, now=now, reason=_ended_reason(hold)) is not None:
            released.append(hold.id)
    if released:
        log().warning("stranded deposit holds released", count=len(released))
    return released


def deposit_hold_params(hold: Payment) -> dict:
    return {**off_session_params(hold, description=f"ACME Rentals deposit for hire {hold.hire.reference}",
                                 purpose="deposit", manual_capture=True),
            "expand": ["latest_charge"]}


def record_hold_authorised(hold_id: int, intent: dict, *, now: datetime, event_id: str = "") -> None:
    """The hold is on the card: remember until when it can be captured. If its hire ended
    meanwhile (cancelled, no-show... while the job was asking Stripe), release it at once."""
    _lock_hire_of(hold_id)
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
    release = None
    if hold_unwanted(hold) and not _settlement_rows(hold):
        reason = (hold.details or {}).get("release") or _ended_reason(hold)
        release = _add_release(hold, None, now=now, reason=reason)
    db.session.commit()
    if release is not None:
        enqueue("app.jobs.payments.settle_deposit", hold.id)


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
    if hold_unwanted(hold):
        return  # the booking ended meanwhile: there is nothing for the customer to do
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

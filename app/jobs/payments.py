"""Card payment jobs: the only code that calls Stripe (through app/integrations/stripe_client).

They serve the card provider (app/payments/card): its services record the work and
enqueue these; the jobs hand Stripe's answers back to it.

Each task takes ids, re-reads its Payment row, does nothing if the work is already done,
and calls Stripe with the row's FIXED idempotency key, so a retry — by the queue after a
timeout or a 500, or after the worker died between Stripe's answer and our commit — gets
Stripe's first answer back instead of a second charge or refund. The queue's retries are
bounded (JOB_MAX_RETRIES with backoff); `StripeUnavailable` is raised to use them. A card
decline or a refused request is recorded and not retried.
"""

from __future__ import annotations

from ..extensions import db
from ..integrations import stripe_client
from ..integrations.stripe_client import CardDeclined, StripeRejected, StripeUnavailable
from ..logging_setup import log
from ..models import Payment, utcnow
from ..payments import card
from ..queueing import task


def _unavailable(payment_id: int, exc: StripeUnavailable) -> None:
    card.record_attempt_error(payment_id, str(exc), now=utcnow())
    raise exc


@task
def create_checkout_session(payment_id: int) -> None:
    """Create the Checkout Session for a card payment (key hire:<id>:checkout:<attempt>)."""
    payment = db.session.get(Payment, payment_id)
    if payment is None or payment.checkout_session_id or payment.is_final:
        return
    if card.cancel_if_unpayable(payment_id, now=utcnow()):
        return
    params = card.checkout_params(payment)
    key = payment.idempotency_key
    db.session.rollback()  # hold no transaction open across the network call
    try:
        session = stripe_client.create_checkout_session(params, key=key)
    except StripeUnavailable as exc:
        _unavailable(payment_id, exc)
    except (StripeRejected, CardDeclined) as exc:
        card.record_start_refused(payment_id, str(exc), now=utcnow())
        return
    card.record_checkout_created(payment_id, session, now=utcnow())


@task
def sync_checkout_session(payment_id: int) -> None:
    """Ask Stripe how the Checkout Session ended (the customer came back, or a webhook said
    it was paid without naming the card): records the outcome and the card used, once."""
    payment = db.session.get(Payment, payment_id)
    if payment is None or not payment.checkout_session_id:
        return
    if payment.state == "succeeded" and (payment.details or {}).get("card"):
        return  # nothing left to learn
    session_id = payment.checkout_session_id
    db.session.rollback()
    try:
        session = stripe_client.retrieve_checkout_session(session_id)
    except StripeUnavailable as exc:
        _unavailable(payment_id, exc)
    except StripeRejected as exc:
        log().error("checkout session not retrievable", payment_id=payment_id, error=str(exc))
        return
    card.apply_checkout_session(payment_id, session, now=utcnow())


@task
def process_stripe_event(event_row_id: int) -> None:
    """Apply one stored webhook event (once)."""
    card.process_event(event_row_id, now=utcnow())


@task
def authorise_deposit(hold_id: int) -> None:
    """Put the deposit hold on the saved card: off-session, manual capture (hire:<id>:deposit:<n>)."""
    hold = db.session.get(Payment, hold_id)
    if hold is None or hold.state not in ("pending", "processing"):
        return
    if card.hold_unwanted(hold) and not (hold.details or {}).get("provider_attempts"):
        # The hire ended before any call reached Stripe: nothing to place, nothing to release.
        # (After an unanswered call the hold may exist there: the same key finds it below,
        # and record_hold_authorised releases it at once.)
        card.record_hold_not_placed(hold_id, now=utcnow())
        return
    params = card.deposit_hold_params(hold)
    key = hold.idempotency_key
    db.session.rollback()
    try:
        intent = stripe_client.create_payment_intent(params, key=key)
    except StripeUnavailable as exc:
        _unavailable(hold_id, exc)
    except CardDeclined as exc:
        card.record_hold_failed(hold_id, exc.message, now=utcnow(),
                                    intent_id=exc.payment_intent.get("id", ""))
        return
    except StripeRejected as exc:
        card.record_hold_failed(hold_id, f"The hold could not be placed ({exc}).", now=utcnow())
        return
    if intent.get("status") == "requires_capture":
        card.record_hold_authorised(hold_id, intent, now=utcnow())
    else:
        # e.g. requires_action: the bank wants the customer present (3-D Secure).
        card.record_hold_failed(hold_id, "Your bank asked to confirm the hold in person.",
                                    now=utcnow(), intent_id=intent.get("id", ""))


@task
def settle_deposit(hold_id: int) -> None:
    """Capture part of the hold (the rest is released by Stripe) or cancel it entirely."""
    hold = db.session.get(Payment, hold_id)
    if hold is None or not hold.provider_ref:
        return
    children = [p for p in card.payments_of(hold.hire) if p.parent_id == hold.id]
    capture = next((p for p in children if p.kind == "capture" and not p.is_final), None)
    release = next((p for p in children if p.kind == "release" and not p.is_final), None)
    if capture is None and release is None:
        return  # done already (a webhook may have told us first: the children still finish here)
    intent_id = hold.provider_ref
    amount = capture.amount_pence if capture else 0
    key = capture.idempotency_key if capture else release.idempotency_key
    db.session.rollback()
    try:
        if capture is not None:
            intent = stripe_client.capture_payment_intent(intent_id, amount, key=key)
        else:
            intent = stripe_client.cancel_payment_intent(intent_id, key=key)
    except StripeUnavailable as exc:
        _unavailable(hold_id, exc)
    except (StripeRejected, CardDeclined) as exc:
        card.record_deposit_settle_refused(hold_id, str(exc), now=utcnow())
        return
    card.record_deposit_settled(hold_id, intent, now=utcnow())


@task
def close_checkout_session(payment_id: int) -> None:
    """The hire ended unpaid: expire its open Checkout Session at Stripe (its payment intent
    is cancelled with it), key "<payment key>:close". A session the customer paid meanwhile,
    or one already expired, is applied as Stripe tells it."""
    payment = db.session.get(Payment, payment_id)
    key = card.checkout_close_key(payment) if payment is not None else None
    if key is None:
        return
    session_id = payment.checkout_session_id
    db.session.rollback()
    try:
        session = stripe_client.expire_checkout_session(session_id, key=key)
    except StripeUnavailable as exc:
        _unavailable(payment_id, exc)
    except (StripeRejected, CardDeclined) as exc:
        log().info("checkout session not expired", payment_id=payment_id, error=str(exc))
        try:
            session = stripe_client.retrieve_checkout_session(session_id)
        except StripeUnavailable as exc:
            _unavailable(payment_id, exc)
    if session.get("status") == "complete":
        card.apply_checkout_session(payment_id, session, now=utcnow())
    else:
        card.record_checkout_closed(payment_id, session, now=utcnow())


@task
def charge_saved_card(payment_id: int) -> None:
    """Charge the card saved at checkout, off-session (hire:<id>:saved-card:<n>)."""
    payment = db.session.get(Payment, payment_id)
    if payment is None or payment.is_final:
        return
    params = card.saved_card_params(payment)
    key = payment.idempotency_key
    db.session.rollback()
    try:
        intent = stripe_client.create_payment_intent(params, key=key)
    except StripeUnavailable as exc:
        _unavailable(payment_id, exc)
    except CardDeclined as exc:
        card.record_charge_declined(payment_id, exc.message, now=utcnow(),
                                        intent_id=exc.payment_intent.get("id", ""))
        return
    except StripeRejected as exc:
        card.record_charge_declined(payment_id, f"The charge could not be made ({exc}).",
                                        now=utcnow())
        return
    if intent.get("status") == "succeeded":
        card.record_charge_succeeded(payment_id, intent_id=intent["id"],
                                         customer=intent.get("customer"),
                                         payment_method=intent.get("payment_method"), now=utcnow())
    else:
        card.record_charge_declined(payment_id, "Your bank asked to confirm this charge in person.",
                                        now=utcnow(), intent_id=intent.get("id", ""))


def _record_refund(refund_id: int, refund: dict) -> None:
    card.record_refund_created(refund_id, refund, now=utcnow())


@task
def create_refund(refund_id: int) -> None:
    """Refund.create for a card refund, key "refund:<payment id>": one refund however often run."""
    refund = db.session.get(Payment, refund_id)
    if refund is None or refund.kind != "refund" or refund.method != "card" or refund.is_final:
        return
    if refund.provider_ref:
        return  # Stripe's answer is already recorded; its webhook finishes the rest
    params = card.refund_params(refund)
    key = f"refund:{refund.id}"
    db.session.rollback()
    try:
        answer = stripe_client.create_refund(params, key=key)
    except StripeUnavailable as exc:
        _unavailable(refund_id, exc)
    except (StripeRejected, CardDeclined) as exc:
        payment = card.lock_payment(refund_id)
        if payment is not None and not payment.is_final:
            payment.failure_message = str(exc)[:300]
            payment.move_to("failed", why=f"Stripe refused the refund: {exc}", now=utcnow())
        db.session.commit()
        log().error("refund refused by stripe", payment_id=refund_id, error=str(exc))
        return
    _record_refund(refund_id, answer)


@task
def place_due_deposit_holds() -> list[int]:
    """Scheduled: place the deposit holds that are due (DEPOSIT_HOLD_LEAD_DAYS before pickup)."""
    return card.place_due_deposit_holds(utcnow())


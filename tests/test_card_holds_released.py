"""Money is never left blocked on a customer's card for a hire that will not happen: when a
booking is cancelled, marked a no-show or expires, the deposit hold is cancelled at Stripe
(the stand-in) whatever stage it was at, an unpaid Checkout is closed with its payment
intent, the ledger and the audit trail say so, and My bookings shows the hold released."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from app import payments
from app.extensions import db
from app.jobs.booking import tick
from app.models import AuditRecord, HireState, OutboundEmail, Payment, utcnow
from tests.conftest import post_form
from tests.test_counter_money import kinds
from tests.test_my_bookings_endings import booking_text
from tests import test_payments_card as card_tests
from tests.test_payments_card import CARD_DECLINED, held_hire, paid_hire, pay, start_card_payment

# The card tests' fixtures: the Stripe stand-in, the app pointed at it, a signed-in customer.
standin, stripe_app, customer = card_tests.standin, card_tests.stripe_app, card_tests.customer


def cancel(client, hire):
    answer = post_form(client, f"/book/hires/{hire.reference}/cancel", {},
                       token_from=f"/book/hires/{hire.reference}/cancel")
    assert answer.status_code == 303, answer.get_data(as_text=True)
    db.session.expire_all()
    assert hire.state == "cancelled"


def intents(standin, *, manual: bool) -> list[dict]:
    return [pi for pi in standin.objects("payment_intent") if (pi["capture_method"] == "manual") == manual]


def audited(hire, action: str) -> list[AuditRecord]:
    return list(db.session.scalars(select(AuditRecord).where(
        AuditRecord.action == action, AuditRecord.object_id == str(hire.id))))


def later(app, **extra) -> str:
    """The clock moved on past the job recovery's wait: the tick re-runs unanswered jobs."""
    return (utcnow() + timedelta(seconds=app.config["JOB_RECOVERY_AFTER_SECONDS"] + 5, **extra)).isoformat()


def test_cancelling_releases_the_deposit_hold_and_my_bookings_says_so(stripe_app, client, customer,
                                                                     standin):
    hire = paid_hire(client, standin, customer, start=utcnow() + timedelta(days=5))
    hold = payments.place_deposit_hold(hire)
    [intent] = intents(standin, manual=True)
    assert intent["status"] == "requires_capture" and intent["amount_capturable"] == hire.deposit_pence

    cancel(client, hire)
    assert standin.get(intent["id"])["status"] == "canceled"
    assert db.session.get(Payment, hold.id).state == "cancelled"
    assert ("release", hire.deposit_pence, "succeeded") in kinds(hire)
    cancels = standin.requests("POST", f"/v1/payment_intents/{intent['id']}/cancel")
    assert [r["idempotency_key"] for r in cancels] == [f"hire:{hire.id}:deposit:{hold.id}:release"]
    [record] = audited(hire, "payment.deposit_released")
    assert record.actor_id == customer.id and record.new["released_pence"] == hire.deposit_pence
    assert "Deposit hold of £250.00 on your card released in full on" in booking_text(client, hire)


def test_a_hold_still_being_placed_when_the_booking_is_cancelled_is_released_once_stripe_answers(
        stripe_app, client, customer, standin):
    hire = paid_hire(client, standin, customer, start=utcnow() + timedelta(days=5))
    # Stripe places the hold but its answers never arrive in time: our row stays pending,
    # through the job's retries and again when the cancellation asks.
    standin.fail_next("slow", times=100, path="/v1/payment_intents")
    hold = payments.place_deposit_hold(hire)
    db.session.expire_all()
    [intent] = intents(standin, manual=True)
    assert intent["status"] == "requires_capture"  # the money is blocked on the card
    assert db.session.get(Payment, hold.id).state == "pending"

    cancel(client, hire)
    assert db.session.get(Payment, hold.id).state == "pending"
    assert "Deposit hold of £250.00 on your card: being released in full." in booking_text(client, hire)
    assert audited(hire, "payment.deposit_release_requested")
    assert not [e for e in db.session.scalars(select(OutboundEmail.subject)) if "deposit" in e.lower()]

    # Stripe answers again: the tick asks once more, with the same key. Stripe's first
    # answer comes back, and the hold is let go at once instead of staying on the card.
    standin.clear_faults()
    assert tick(later(stripe_app))["holds_released"] == 1
    db.session.expire_all()
    assert standin.get(intent["id"])["status"] == "canceled"
    assert len(intents(standin, manual=True)) == 1  # the same hold, not a second one
    assert db.session.get(Payment, hold.id).state == "cancelled"
    assert ("release", hire.deposit_pence, "succeeded") in kinds(hire)
    assert "Deposit hold of £250.00 on your card released in full on" in booking_text(client, hire)


def test_a_no_show_keeps_the_fee_and_releases_a_hold_that_was_still_being_placed(
        stripe_app, client, customer, standin):
    hire = paid_hire(client, standin, customer, start=utcnow() - timedelta(minutes=5))
    standin.fail_next("slow", times=100, path="/v1/payment_intents")
    hold = payments.place_deposit_hold(hire)
    [intent] = intents(standin, manual=True)

    at = hire.start_at + timedelta(minutes=stripe_app.config["NO_SHOW_GRACE_MINUTES"])
    assert tick(at.isoformat())["no_shows"] == 1
    assert "Deposit hold of £250.00 on your card: being released in full." in booking_text(client, hire)
    standin.clear_faults()
    tick(later(stripe_app, minutes=stripe_app.config["NO_SHOW_GRACE_MINUTES"]))
    db.session.expire_all()
    assert hire.state == "no_show"
    fee = stripe_app.config["NO_SHOW_FEE_PENCE"]
    # The rules: the fee is kept from what was paid, the rest refunded, the deposit not touched.
    assert [r["amount"] for r in standin.objects("refund")] == [hire.total_pence - fee]
    assert standin.get(intent["id"])["status"] == "canceled"
    assert standin.get(intent["id"])["amount_received"] == 0
    assert db.session.get(Payment, hold.id).state == "cancelled"
    assert "Deposit hold of £250.00 on your card released in full on" in booking_text(client, hire)


def test_cancelling_an_unpaid_booking_closes_its_checkout_and_cancels_the_intent(
        stripe_app, client, customer, standin):
    hire = held_hire(customer)
    payment = start_card_payment(client, hire)
    # The customer typed a card that was declined: Checkout keeps a payment intent open.
    assert "Your card was declined." in pay(payment.details["checkout_url"], CARD_DECLINED).text
    [session] = standin.objects("checkout.session")
    assert session["status"] == "open"

    cancel(client, hire)
    assert standin.get(session["id"])["status"] == "expired"
    assert standin.get(session["payment_intent"])["status"] == "canceled"
    assert pay(payment.details["checkout_url"], "4242424242424242").status_code >= 400  # cannot pay it now
    closes = standin.requests("POST", f"/v1/checkout/sessions/{session['id']}/expire")
    assert [r["idempotency_key"] for r in closes] == [f"{payment.idempotency_key}:close"]
    assert db.session.get(Payment, payment.id).state == "cancelled"
    text = booking_text(client, hire)
    assert "Nothing was charged" in text and "Deposit hold" not in text


def test_a_hold_that_expires_unpaid_closes_its_checkout(stripe_app, client, customer, standin):
    hire = held_hire(customer)
    payment = start_card_payment(client, hire)
    [session] = standin.objects("checkout.session")
    db.session.expire_all()
    assert tick((hire.hold_expires_at + timedelta(seconds=1)).isoformat())["expired"] == 1
    db.session.expire_all()
    assert hire.state == "expired"
    assert standin.get(session["id"])["status"] == "expired"
    assert db.session.get(Payment, payment.id).state in ("cancelled", "failed")


def test_the_tick_releases_a_hold_left_on_a_booking_that_ended(stripe_app, client, customer, standin):
    """A hold left authorised on a cancelled booking (a release cut off, or from before this
    fix) is found by the tick and let go, once."""
    hire = paid_hire(client, standin, customer, start=utcnow() + timedelta(days=5))
    hold = payments.place_deposit_hold(hire)
    hire.transition(HireState.CANCELLED, by=None, why="cancelled by an older release")
    db.session.commit()
    assert standin.get(hold.provider_ref)["status"] == "requires_capture"

    assert tick()["holds_released"] == 1
    assert tick()["holds_released"] == 0
    assert standin.get(hold.provider_ref)["status"] == "canceled"
    assert [k for k in kinds(hire) if k[0] == "release"] == [("release", hire.deposit_pence, "succeeded")]
    [record] = audited(hire, "payment.deposit_released")
    assert record.actor_id is None and re.search("cancelled", record.new["reason"])

"""After the card payment: refunds, the deposit hold (placed, captured in part, released,
declined), and charges to the saved card — each exactly once through the Stripe stand-in."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from sqlalchemy import select

from app.booking.seed import seed_rate_tables
from app.extensions import db
from app.jobs import payments as payment_jobs
from app.models import AuditRecord, HireState, OutboundEmail, Payment, utcnow
from app import payments as services
from app.payments import PaymentError, RefundError, request_refund
from tests import factories
from tests.conftest import csrf_token
from tests.test_booking import FMT, as_utc, local_day
from tests.test_payments_card import (checkout_payments, customer, deliver, held_hire,  # noqa: F401
                                      paid_hire, pay, standin, start_card_payment, stripe_app)

SAVED_CARD_DECLINES_LATER = "4000000000000341"  # pays at Checkout, declines off-session


def payments_of(hire, kind: str) -> list[Payment]:
    db.session.expire_all()
    return list(db.session.scalars(select(Payment).where(Payment.hire_id == hire.id, Payment.kind == kind)
                                   .order_by(Payment.id)))


# --- refunds ----------------------------------------------------------------------------------

def test_refund_job_killed_after_stripe_answered_makes_one_refund(stripe_app, client, customer,
                                                                  standin, monkeypatch):
    hire = paid_hire(client, standin, customer)
    real_record = payment_jobs._record_refund
    calls = []

    def dies_once(refund_id, answer):
        calls.append(answer["id"])
        if len(calls) == 1:
            raise SystemError("worker killed after Stripe answered, before the commit")
        real_record(refund_id, answer)

    monkeypatch.setattr(payment_jobs, "_record_refund", dies_once)
    [refund] = request_refund(hire, 5000, "cancelled within the free period", None)
    # The in-process queue ran the job again at once, as RQ's retry would.
    assert calls[0] == calls[1]  # the second call got Stripe's first refund back
    attempts = standin.requests("POST", "/v1/refunds")
    assert [a["idempotency_key"] for a in attempts] == [f"refund:{refund.id}"] * 2
    assert [a["replayed"] for a in attempts] == [False, True]
    assert len(standin.objects("refund")) == 1 and standin.objects("refund")[0]["amount"] == 5000
    refund = db.session.get(Payment, refund.id)
    assert refund.state == "succeeded" and refund.provider_ref == calls[0]
    assert len(payments_of(hire, "refund")) == 1
    # Running the job once more (a stray retry) changes nothing.
    payment_jobs.create_refund(refund.id)
    assert len(standin.requests("POST", "/v1/refunds")) == 2


def test_refund_request_with_a_key_is_idempotent_and_bounded(stripe_app, client, customer, standin):
    hire = paid_hire(client, standin, customer)
    first = request_refund(hire, 3000, "booking changed to a cheaper one", None, key=f"hire:{hire.id}:change:2")
    again = request_refund(hire, 3000, "booking changed to a cheaper one", None, key=f"hire:{hire.id}:change:2")
    assert [p.id for p in again] == [p.id for p in first]
    assert len(standin.objects("refund")) == 1
    with pytest.raises(RefundError, match="Only £87.00"):
        request_refund(hire, 9000, "too much", None)
    # The charge.refunded webhook, duplicated, agrees and changes nothing.
    for event in standin.events("charge.refunded") * 3:
        assert deliver(client, standin, event).status_code == 200
    assert [p.state for p in payments_of(hire, "refund")] == ["succeeded"]


def test_a_paid_booking_changed_to_a_cheaper_one_refunds_only_the_difference(stripe_app, client,
                                                                              customer, standin):
    seed_rate_tables()
    hire = paid_hire(client, standin, customer, start=as_utc(local_day(10)), days=3)
    paid = hire.total_pence
    url = f"/book/hires/{hire.reference}/change"
    shorter = {"pickup_at": local_day(10).strftime(FMT), "return_at": local_day(11).strftime(FMT)}
    response = client.post(url, data={**shorter, "csrf_token": csrf_token(client, url)})
    assert response.status_code == 303
    db.session.expire_all()
    assert 0 < hire.total_pence < paid
    # The card gets back what the shorter hire no longer costs, and keeps paying for one day.
    assert [r["amount"] for r in standin.objects("refund")] == [paid - hire.total_pence]
    assert [p.amount_pence for p in payments_of(hire, "refund")] == [paid - hire.total_pence]


def test_staff_refund_is_audited_and_on_the_receipt(stripe_app, client, customer, standin):
    hire = paid_hire(client, standin, customer)
    staff = factories.make_user("staff")
    request_refund(hire, hire.total_pence, "refused at pickup: licence expired", staff)
    record = db.session.scalars(select(AuditRecord).where(AuditRecord.action == "payment.refund_requested")).one()
    assert record.actor_id == staff.id and record.new["amount_pence"] == hire.total_pence
    receipt = client.get(f"/pay/{hire.reference}/receipt").get_data(as_text=True)
    assert "Refund" in receipt and "refused at pickup: licence expired" in receipt
    assert "£0.00" in receipt  # paid after refunds


# --- deposit hold ------------------------------------------------------------------------------------

def test_deposit_hold_is_placed_then_captured_in_part_and_the_rest_released(stripe_app, client,
                                                                            customer, standin):
    hire = paid_hire(client, standin, customer)
    hold = services.place_deposit_hold(hire)
    assert services.place_deposit_hold(hire).id == hold.id  # one active hold at a time
    hold = db.session.get(Payment, hold.id)
    assert hold.state == "authorised" and hold.capture_before > utcnow() + timedelta(days=6)
    [intent_request] = standin.requests("POST", "/v1/payment_intents")
    assert intent_request["idempotency_key"] == f"hire:{hire.id}:deposit:1"
    assert intent_request["params"]["capture_method"] == "manual"
    assert intent_request["params"]["off_session"] == "true"
    saved = checkout_payments(hire)[0].details
    assert intent_request["params"]["payment_method"] == saved["payment_method"]
    assert intent_request["params"]["customer"] == saved["customer"]

    staff = factories.make_user("staff")
    services.capture_deposit(hire, 4000, staff, reason="fuel and cleaning")
    assert services.capture_deposit(hire, 4000, staff).id == hold.id  # asked twice: once
    intent = standin.get(hold.provider_ref)
    assert (intent["status"], intent["amount_received"]) == ("succeeded", 4000)
    assert len(standin.requests("POST", f"/v1/payment_intents/{hold.provider_ref}/capture")) == 1
    assert db.session.get(Payment, hold.id).state == "succeeded"
    [capture], [release] = payments_of(hire, "capture"), payments_of(hire, "release")
    assert (capture.amount_pence, capture.state) == (4000, "succeeded")
    assert (release.amount_pence, release.state) == (21000, "succeeded")
    assert db.session.scalars(select(AuditRecord).where(
        AuditRecord.action == "payment.deposit_settled")).one().actor_id == staff.id
    # Stripe's own events about it, delivered late, change nothing.
    for event in standin.events():
        deliver(client, standin, event)
    assert [p.state for p in payments_of(hire, "deposit_hold")] == ["succeeded"]
    receipt = client.get(f"/pay/{hire.reference}/receipt").get_data(as_text=True)
    for text in ("Deposit hold on your card", "Deposit kept", "Deposit released", "£40.00", "£210.00"):
        assert text in receipt


def test_a_refused_capture_fails_the_hold_and_tells_staff(stripe_app, client, customer, standin, auth):
    hire = paid_hire(client, standin, customer)
    hold = services.place_deposit_hold(hire)
    # The authorisation is gone at Stripe (lapsed, or cancelled from the dashboard).
    gone = requests.post(f"{standin.url}/v1/payment_intents/{hold.provider_ref}/cancel",
                         headers={"Authorization": "Bearer sk_test_card_tests"}, timeout=5)
    assert gone.status_code == 200
    staff = factories.make_user("staff")
    services.capture_deposit(hire, 4000, staff, reason="fuel and cleaning")
    assert standin.get(hold.provider_ref)["amount_received"] == 0  # nothing was taken
    hold = db.session.get(Payment, hold.id)
    assert hold.state == "failed"
    assert [p.state for p in payments_of(hire, "capture")] == ["failed"]
    auth.sign_out()
    auth.sign_in_as("staff")
    page = client.get(f"/pay/{hire.reference}/receipt").get_data(as_text=True)
    assert "could not be captured" in page and "Take the deposit at the counter" in page


def test_deposit_released_in_full_cancels_the_hold(stripe_app, client, customer, standin):
    hire = paid_hire(client, standin, customer)
    hold = services.place_deposit_hold(hire)
    services.capture_deposit(hire, 0, factories.make_user("staff"))
    assert standin.get(db.session.get(Payment, hold.id).provider_ref)["status"] == "canceled"
    assert db.session.get(Payment, hold.id).state == "cancelled"
    assert [p.amount_pence for p in payments_of(hire, "release")] == [25000]
    assert payments_of(hire, "capture") == []


def test_cancelling_after_the_hold_was_placed_releases_it_on_the_card(stripe_app, client, customer, standin):
    from app.booking.lifecycle import cancel_hire
    hire = paid_hire(client, standin, customer, start=utcnow() + timedelta(hours=20))
    hold = services.place_deposit_hold(hire)  # the scheduled job, a day before pickup
    assert db.session.get(Payment, hold.id).state == "authorised"
    cancel_hire(hire, by=hire.customer, now=utcnow())
    db.session.expire_all()
    # The customer's card is not left with £250 reserved for a hire that will not happen.
    assert standin.get(hold.provider_ref)["status"] == "canceled"
    assert db.session.get(Payment, hold.id).state == "cancelled"
    assert [p.amount_pence for p in payments_of(hire, "release")] == [hold.amount_pence]


def test_declined_deposit_hold_is_shown_to_customer_and_staff(stripe_app, client, customer, standin,
                                                              auth):
    hire = held_hire(customer)
    payment = start_card_payment(client, hire)
    pay(payment.details["checkout_url"], SAVED_CARD_DECLINES_LATER)
    for event in standin.events():
        deliver(client, standin, event)
    hold = services.place_deposit_hold(hire)
    hold = db.session.get(Payment, hold.id)
    assert hold.state == "failed" and hold.failure_message == "Your card was declined."
    services.record_hold_failed(hold.id, "again", now=utcnow())  # a duplicate report: no second email
    emails = db.session.scalars(select(OutboundEmail).where(OutboundEmail.subject.contains("deposit"))).all()
    assert len(emails) == 1 and "bring a credit or debit card" in emails[0].body_text
    page = client.get(f"/pay/{hire.reference}/receipt").get_data(as_text=True)
    assert "could not place the" in page and "bring a credit or debit card" in page
    auth.sign_out()
    auth.sign_in_as("staff")
    page = client.get(f"/pay/{hire.reference}/receipt").get_data(as_text=True)
    assert "Take the deposit at the counter" in page
    with pytest.raises(PaymentError):
        services.capture_deposit(hire, 100, factories.make_user("staff"))


def test_due_deposit_holds_are_placed_by_the_scheduled_job_once(stripe_app, client, customer, standin):
    now = utcnow()
    soon = paid_hire(client, standin, customer, start=now + timedelta(hours=12))
    later = paid_hire(client, standin, customer, start=now + timedelta(days=5))
    assert [h.id for h in services.due_deposit_holds(now)] == [soon.id]
    placed = payment_jobs.place_due_deposit_holds()
    assert len(placed) == 1 and payment_jobs.place_due_deposit_holds() == []
    assert [p.state for p in payments_of(soon, "deposit_hold")] == ["authorised"]
    assert payments_of(later, "deposit_hold") == []


def test_no_deposit_hold_without_a_saved_card(stripe_app, client):
    hire = factories.make_hire(state=HireState.CONFIRMED)
    with pytest.raises(PaymentError, match="no saved card"):
        services.place_deposit_hold(hire)


# --- charges to the saved card -----------------------------------------------------------------------

def test_saved_card_is_charged_once_per_key(stripe_app, client, customer, standin):
    hire = paid_hire(client, standin, customer)
    staff = factories.make_user("staff")
    charge = services.charge_saved_card(hire, 3500, "late return: 2 hours", staff, key=f"hire:{hire.id}:late-fee")
    again = services.charge_saved_card(hire, 3500, "late return: 2 hours", staff, key=f"hire:{hire.id}:late-fee")
    assert again.id == charge.id
    charge = db.session.get(Payment, charge.id)
    assert charge.state == "succeeded" and charge.provider_ref.startswith("pi_")
    assert len(standin.requests("POST", "/v1/payment_intents")) == 1
    assert db.session.scalars(select(AuditRecord).where(
        AuditRecord.action == "payment.saved_card_charged")).one().actor_id == staff.id
    # A separate charge is not part of the rental price: it does not count as paying for it.
    assert services.amount_due_pence(hire) == 0 and services.net_paid_pence(hire) == hire.total_pence + 3500


def test_saved_card_decline_is_recorded(stripe_app, client, customer, standin):
    hire = held_hire(customer)
    payment = start_card_payment(client, hire)
    pay(payment.details["checkout_url"], SAVED_CARD_DECLINES_LATER)
    for event in standin.events():
        deliver(client, standin, event)
    charge = services.charge_saved_card(hire, 2000, "damage: wing mirror", factories.make_user("staff"))
    charge = db.session.get(Payment, charge.id)
    assert charge.state == "failed" and charge.failure_message == "Your card was declined."


def test_ensure_deposit_hold_at_pickup_never_fails_the_hand_over(stripe_app, client, customer, standin):
    staff = factories.make_user("staff")
    crypto_paid = factories.make_hire(state=HireState.CONFIRMED)
    assert services.ensure_deposit_hold(crypto_paid, by=staff) is None  # no saved card
    hire = paid_hire(client, standin, customer)
    hold = services.ensure_deposit_hold(hire, by=staff)
    assert db.session.get(Payment, hold.id).state == "authorised"
    assert services.ensure_deposit_hold(hire, by=staff).id == hold.id

"""Card payments end to end through the real `stripe` SDK and the Stripe stand-in.

A held hire is paid on the stand-in's hosted Checkout page (over HTTP, like a browser);
Stripe's webhooks are delivered to the portal's endpoint as Stripe would send them: signed,
duplicated, out of order. Jobs run inline (JOBS_MODE "sync", with the same bounded retries
RQ gives), so a job that fails is retried at once with the same idempotency key.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from sqlalchemy import func, select

from app.extensions import db
from app.models import (HireState, HireStateChange, OutboundEmail, Payment, PaymentStateChange,
                        StripeEvent, utcnow)
from app.models.payments import InvalidPaymentTransition
from devtools.stripe_standin import StripeStandin, start
from tests import factories
from tests.conftest import post_form

CARD_OK = "4242424242424242"
CARD_DECLINED = "4000000000000002"
CARD_NO_FUNDS = "4000000000009995"
WEBHOOK = "/pay/webhooks/stripe"


# --- fixtures and helpers (also used by test_payments_card_money.py) ---------------------------

@pytest.fixture
def standin():
    server = start(slow_seconds=0.6)
    yield server
    server.stop()


@pytest.fixture
def stripe_app(app, standin):
    """The test app pointed at the stand-in, with a short read timeout for the slow switch."""
    app.config.update(STRIPE_API_BASE=standin.url, STRIPE_SECRET_KEY="sk_test_card_tests",
                      STRIPE_WEBHOOK_SECRET=standin.webhook_secret,
                      STRIPE_CONNECT_TIMEOUT_SECONDS=2, STRIPE_READ_TIMEOUT_SECONDS=0.3)
    return app


@pytest.fixture
def customer(client, auth):
    return auth.sign_in_as("customer")


def held_hire(customer, **kwargs):
    hire = factories.make_hire(customer=customer, state=HireState.HELD, **kwargs)
    hire.hold_expires_at = utcnow() + timedelta(minutes=15)
    db.session.commit()
    return hire


def checkout_payments(hire) -> list[Payment]:
    db.session.expire_all()
    return [p for p in db.session.scalars(select(Payment).where(Payment.hire_id == hire.id)
                                          .order_by(Payment.id))
            if p.kind == "charge" and p.details.get("purpose") == "checkout"]


def start_card_payment(client, hire) -> Payment:
    """The confirm step, as the customer's browser posts it."""
    response = post_form(client, f"/pay/{hire.reference}/card", {"amount_pence": hire.total_pence})
    assert response.status_code == 303, response.get_data(as_text=True)
    assert response.headers["Location"].endswith(f"/pay/{hire.reference}/card/continue")
    return checkout_payments(hire)[-1]


def pay(session_url: str, card: str) -> requests.Response:
    """The customer types a card into the stand-in's hosted Checkout page."""
    return requests.post(session_url, data={"cardnumber": card, "exp": "12 / 34", "cvc": "123"},
                         allow_redirects=False, timeout=5)


def deliver(client, standin: StripeStandin, event: dict, **sign_options):
    body, headers = standin.signed(event, **sign_options)
    return client.post(WEBHOOK, data=body, headers=headers)


def confirmation_count(hire) -> int:
    return db.session.scalar(select(func.count()).select_from(HireStateChange).where(
        HireStateChange.hire_id == hire.id, HireStateChange.to_state == "confirmed"))


def emails_to(user) -> list[OutboundEmail]:
    return list(db.session.scalars(select(OutboundEmail).where(OutboundEmail.to_address == user.email)))


def paid_hire(client, standin, customer, **kwargs):
    """A hire paid by card through Checkout, its card saved (webhooks delivered)."""
    hire = held_hire(customer, **kwargs)
    payment = start_card_payment(client, hire)
    assert pay(payment.details["checkout_url"], CARD_OK).status_code == 303
    for event in standin.events():
        deliver(client, standin, event)
    db.session.expire_all()
    assert hire.state == "confirmed"
    return hire


# --- the pages ------------------------------------------------------------------------------

def test_pay_page_shows_the_frozen_price_and_the_choices(stripe_app, client, customer):
    hire = held_hire(customer)
    page = client.get(f"/pay/{hire.reference}").get_data(as_text=True)
    assert "Rental" in page and "£117.00" in page
    assert "Pay by card" in page
    assert "£250.00" in page  # the deposit is explained, not taken
    assert f"/pay/{hire.reference}/crypto" in page


def test_only_the_hires_customer_may_pay_it(stripe_app, client, auth):
    hire = held_hire(factories.make_user())
    auth.sign_in_as("customer")
    for url in (f"/pay/{hire.reference}", f"/pay/{hire.reference}/card",
                f"/pay/{hire.reference}/status", f"/pay/{hire.reference}/receipt"):
        assert client.get(url).status_code == 404


def test_a_paid_hire_cannot_be_sent_to_checkout_again(stripe_app, client, customer, standin):
    hire = paid_hire(client, standin, customer)
    assert client.get(f"/pay/{hire.reference}").status_code == 302  # to the receipt
    response = post_form(client, f"/pay/{hire.reference}/card", {"amount_pence": hire.total_pence},
                         token_from=f"/pay/{hire.reference}/receipt")
    assert response.status_code == 422
    assert "already paid" in response.get_data(as_text=True)
    assert len(standin.objects("checkout.session")) == 1


def test_confirm_step_refuses_an_amount_that_changed(stripe_app, client, customer, standin):
    hire = held_hire(customer)
    response = post_form(client, f"/pay/{hire.reference}/card", {"amount_pence": 100})
    assert response.status_code == 422
    assert "The amount to pay is now £117.00" in response.get_data(as_text=True)
    assert standin.requests() == [] and checkout_payments(hire) == []


# --- the happy path: return from Checkout first, then the webhooks ---------------------------------

def test_card_payment_confirms_the_hire_once_whichever_arrives_first(stripe_app, client, customer,
                                                                     standin):
    hire = held_hire(customer)
    payment = start_card_payment(client, hire)
    created = standin.requests("POST", "/v1/checkout/sessions")
    assert len(created) == 1
    assert created[0]["idempotency_key"] == f"hire:{hire.id}:checkout:1"
    params = created[0]["params"]
    assert params["line_items"][0]["price_data"]["unit_amount"] == "11700"
    assert params["payment_intent_data"]["setup_future_usage"] == "off_session"
    assert payment.state == "processing" and payment.checkout_session_id.startswith("cs_test_")

    # The continue page sends the browser to Checkout (an htmx navigation, not a form redirect).
    hop = client.get(f"/pay/{hire.reference}/card/continue", headers={"HX-Request": "true"})
    assert hop.status_code == 204 and hop.headers["HX-Redirect"] == payment.details["checkout_url"]

    answer = pay(payment.details["checkout_url"], CARD_OK)
    assert answer.status_code == 303
    back = answer.headers["Location"]
    assert back.startswith("http://localhost/pay/") and payment.checkout_session_id in back

    page = client.get(back.removeprefix("http://localhost")).get_data(as_text=True)
    db.session.expire_all()
    assert hire.state == "confirmed"
    assert "Confirmed" in page and "hx-get" not in page  # final: stops polling
    # Then every webhook arrives: nothing more happens.
    for event in standin.events():
        assert deliver(client, standin, event).status_code == 200
    db.session.expire_all()
    assert confirmation_count(hire) == 1
    assert len([e for e in emails_to(customer) if "confirmed" in e.subject]) == 1
    payment = db.session.get(Payment, payment.id)
    assert payment.state == "succeeded" and payment.details["customer"].startswith("cus_")
    assert payment.details["payment_method"].startswith("pm_")
    assert [c.to_state for c in payment.state_changes] == ["pending", "processing", "succeeded"]


def test_status_fragment_polls_until_confirmed(stripe_app, client, customer, standin):
    hire = held_hire(customer)
    payment = start_card_payment(client, hire)
    fragment = client.get(f"/pay/{hire.reference}/status", headers={"HX-Request": "true"})
    html = fragment.get_data(as_text=True)
    assert "<html" not in html and 'id="payment-status"' in html
    assert "Payment processing" in html and "hx-trigger" in html
    assert fragment.headers["Vary"].count("HX-Request") == 1
    pay(payment.details["checkout_url"], CARD_OK)
    deliver(client, standin, standin.events("checkout.session.completed")[0])
    html = client.get(f"/pay/{hire.reference}/status", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "Confirmed" in html and "hx-get" not in html


def test_back_from_checkout_while_stripe_is_unreachable_shows_processing_until_the_webhook(
        stripe_app, client, customer, standin):
    hire = held_hire(customer)
    payment = start_card_payment(client, hire)
    pay(payment.details["checkout_url"], CARD_DECLINED)
    deliver(client, standin, standin.events("payment_intent.payment_failed")[0])
    back = pay(payment.details["checkout_url"], CARD_OK).headers["Location"]
    standin.fail_next("500", times=100, path="/v1/checkout/sessions/")
    page = client.get(back.removeprefix("http://localhost")).get_data(as_text=True)
    # Not "declined": Stripe sent the customer back, so the card was accepted.
    assert "Payment processing" in page and "hx-trigger" in page
    db.session.expire_all()
    assert hire.state == "held"
    deliver(client, standin, standin.events("checkout.session.completed")[0])
    html = client.get(f"/pay/{hire.reference}/status", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "Confirmed" in html


# --- exact-once under duplicate and out-of-order webhooks ------------------------------------------

def test_same_webhook_ten_times_and_out_of_order_has_one_effect(stripe_app, client, customer, standin):
    hire = held_hire(customer)
    payment = start_card_payment(client, hire)
    assert pay(payment.details["checkout_url"], CARD_DECLINED).text.count("Your card was declined.") == 1
    assert pay(payment.details["checkout_url"], CARD_OK).status_code == 303
    events = standin.events()
    assert [e["type"] for e in events][0] == "payment_intent.payment_failed"
    # Newest first: success before the earlier decline; each delivered ten times.
    for event in reversed(events):
        for _ in range(10):
            assert deliver(client, standin, event).status_code == 200
    db.session.expire_all()
    assert hire.state == "confirmed"
    assert confirmation_count(hire) == 1
    assert len([e for e in emails_to(customer) if "confirmed" in e.subject]) == 1
    payment = db.session.get(Payment, payment.id)
    assert payment.state == "succeeded" and payment.failure_message == ""
    stored = db.session.scalars(select(StripeEvent.event_id)).all()
    assert sorted(stored) == sorted(e["id"] for e in events if e["type"] != "charge.succeeded")
    assert db.session.scalar(select(func.count()).select_from(PaymentStateChange).where(
        PaymentStateChange.payment_id == payment.id, PaymentStateChange.to_state == "succeeded")) == 1


def test_events_we_do_not_subscribe_to_are_acknowledged_and_ignored(stripe_app, client, customer, standin):
    hire = held_hire(customer)
    payment = start_card_payment(client, hire)
    pay(payment.details["checkout_url"], CARD_OK)
    charge_event = standin.events("charge.succeeded")[0]
    assert deliver(client, standin, charge_event).status_code == 200
    assert db.session.scalars(select(StripeEvent)).all() == []
    db.session.expire_all()
    assert hire.state == "held"


# --- forged webhooks -------------------------------------------------------------------------------

def test_forged_or_tampered_webhooks_are_refused_with_no_effect(stripe_app, client, customer, standin):
    hire = held_hire(customer)
    payment = start_card_payment(client, hire)
    pay(payment.details["checkout_url"], CARD_OK)
    event = standin.events("checkout.session.completed")[0]

    forged = deliver(client, standin, event, secret="whsec_not_the_real_one")
    body, headers = standin.signed(event)
    tampered = client.post(WEBHOOK, data=body.replace(b'"paid"', b'"paid" '), headers=headers)
    unsigned = client.post(WEBHOOK, data=body, headers={"Content-Type": "application/json"})
    replayed_late = deliver(client, standin, event, timestamp=int(utcnow().timestamp()) - 3600)
    assert [r.status_code for r in (forged, tampered, unsigned, replayed_late)] == [400] * 4
    assert db.session.scalars(select(StripeEvent)).all() == []
    db.session.expire_all()
    assert hire.state == "held" and checkout_payments(hire)[0].state == "processing"


def test_webhook_needs_no_csrf_token_but_other_posts_do(stripe_app, client, customer, standin):
    hire = held_hire(customer)
    assert client.post(f"/pay/{hire.reference}/card", data={"amount_pence": hire.total_pence}).status_code == 400
    response = client.post(WEBHOOK, data=b"{}", headers={"Stripe-Signature": "t=1,v1=00"})
    assert response.status_code == 400  # refused for its signature, not for CSRF
    assert response.get_json() == {"error": "invalid signature"}


# --- declined cards ---------------------------------------------------------------------------------

def test_declined_card_keeps_the_booking_held_with_a_message_and_can_be_retried(stripe_app, client,
                                                                                customer, standin):
    hire = held_hire(customer)
    payment = start_card_payment(client, hire)
    declined = pay(payment.details["checkout_url"], CARD_NO_FUNDS)
    assert "Your card has insufficient funds." in declined.text
    for event in standin.events():
        deliver(client, standin, event)
    db.session.expire_all()
    assert hire.state == "held"

    # Back on the portal (Checkout's "back" link): the message, and the way to try again.
    page = client.get(f"/pay/{hire.reference}?cancelled=1").get_data(as_text=True)
    assert "Your card has insufficient funds." in page
    assert "Your booking is still held" in page and "Continue paying by card" in page

    # Trying again reuses the same payment and the same Checkout Session: never two at once.
    again = start_card_payment(client, hire)
    assert again.id == payment.id
    assert len(standin.objects("checkout.session")) == 1
    assert pay(payment.details["checkout_url"], CARD_OK).status_code == 303
    for event in standin.events():
        deliver(client, standin, event)
    db.session.expire_all()
    assert hire.state == "confirmed"
    assert "insufficient" not in client.get(f"/pay/{hire.reference}/receipt").get_data(as_text=True)


def test_expired_checkout_starts_a_new_attempt_with_a_new_key(stripe_app, client, customer, standin):
    hire = held_hire(customer)
    first = start_card_payment(client, hire)
    with standin.state.lock:
        standin.state.objects[first.checkout_session_id]["expires_at"] = 0  # Stripe let it lapse
    requests.get(first.details["checkout_url"], timeout=5)  # the page notices and emits the event
    deliver(client, standin, standin.events("checkout.session.expired")[0])
    assert "expired" in client.get(f"/pay/{hire.reference}").get_data(as_text=True)
    second = start_card_payment(client, hire)
    assert second.id != first.id
    assert second.idempotency_key == f"hire:{hire.id}:checkout:2"
    assert db.session.get(Payment, first.id).state == "failed"


# --- Stripe slow or failing ------------------------------------------------------------------------

def test_stripe_timing_out_is_retried_with_the_same_key(stripe_app, client, customer, standin):
    standin.fail_next("slow", path="/v1/checkout/sessions")
    hire = held_hire(customer)
    payment = start_card_payment(client, hire)
    attempts = standin.requests("POST", "/v1/checkout/sessions")
    assert [a["idempotency_key"] for a in attempts] == [f"hire:{hire.id}:checkout:1"] * 2
    assert [a["replayed"] for a in attempts] == [False, True]
    assert len(standin.objects("checkout.session")) == 1
    assert payment.state == "processing" and payment.details["provider_attempts"] == 1
    hop = client.get(f"/pay/{hire.reference}/card/continue", headers={"HX-Request": "true"})
    assert hop.headers["HX-Redirect"] == standin.objects("checkout.session")[0]["url"]


def test_stripe_answering_500_shows_a_clear_state_and_recovers(stripe_app, client, customer, standin):
    stripe_app.config["PAYMENT_START_GIVE_UP_SECONDS"] = 0
    standin.fail_next("500", times=100)
    hire = held_hire(customer)
    payment = start_card_payment(client, hire)
    attempts = standin.requests("POST", "/v1/checkout/sessions")
    retries = stripe_app.config["JOB_MAX_RETRIES"] + 1
    assert [a["idempotency_key"] for a in attempts] == [f"hire:{hire.id}:checkout:1"] * retries
    assert payment.state == "pending" and standin.objects("checkout.session") == []

    page = client.get(f"/pay/{hire.reference}/card/continue").get_data(as_text=True)
    assert "We could not reach the card processor just now. No money has been taken." in page
    assert "Try again" in page
    start_page = client.get(f"/pay/{hire.reference}").get_data(as_text=True)
    assert "could not reach the card processor" in start_page
    db.session.expire_all()
    assert hire.state == "held"

    standin.clear_faults()
    again = start_card_payment(client, hire)
    assert again.id == payment.id and again.state == "processing"
    keys = {a["idempotency_key"] for a in standin.requests("POST", "/v1/checkout/sessions")}
    assert keys == {f"hire:{hire.id}:checkout:1"}
    assert len(standin.objects("checkout.session")) == 1


# --- money that is not owed is given back ----------------------------------------------------------

def test_payment_arriving_after_the_hold_expired_is_refunded(stripe_app, client, customer, standin):
    hire = held_hire(customer)
    payment = start_card_payment(client, hire)
    pay(payment.details["checkout_url"], CARD_OK)
    hire.transition(HireState.EXPIRED, by=None, why="test: hold ran out")
    db.session.commit()
    for event in standin.events():
        deliver(client, standin, event)
    db.session.expire_all()
    assert hire.state == "expired"
    refunds = standin.objects("refund")
    assert len(refunds) == 1 and refunds[0]["amount"] == hire.total_pence
    receipt = client.get(f"/pay/{hire.reference}/receipt").get_data(as_text=True)
    assert "Refund" in receipt and "paid after the booking was expired" in receipt


# --- the payment model -----------------------------------------------------------------------------

def test_payments_move_only_forward_and_record_each_move(app):
    hire = factories.make_hire(state=HireState.HELD)
    payment = Payment(hire_id=hire.id, method="card", kind="charge", amount_pence=100,
                      idempotency_key="t:1")
    db.session.add(payment)
    payment.move_to("processing", why="session created")
    payment.move_to("succeeded", why="paid")
    for backwards in ("processing", "pending", "failed"):
        with pytest.raises(InvalidPaymentTransition):
            payment.move_to(backwards)
    db.session.commit()
    assert [(c.from_state, c.to_state) for c in payment.state_changes] == [
        ("pending", "processing"), ("processing", "succeeded")]


def test_card_payment_is_not_offered_in_production_without_keys(make_app):
    production = make_app(ENV_NAME="production", SECRET_KEY="x" * 40, MAIL_BACKEND="smtp",
                          STRIPE_SECRET_KEY="", STRIPE_API_BASE="")
    with production.app_context():
        from app.integrations import stripe_client
        assert not stripe_client.is_configured()
        with pytest.raises(stripe_client.StripeNotConfigured):
            stripe_client.settings()
        with pytest.raises(RuntimeError):
            stripe_client.ensure_dev_standin()
    with pytest.raises(RuntimeError, match="STRIPE_WEBHOOK_SECRET"):
        make_app(ENV_NAME="production", SECRET_KEY="x" * 40, MAIL_BACKEND="smtp",
                 STRIPE_SECRET_KEY="sk_live_x", STRIPE_WEBHOOK_SECRET="")


def test_development_default_runs_on_the_stand_in_started_in_process(make_app):
    """The embedded default (`./scripts/run`): no Stripe settings, and card payment still works."""
    from app.integrations import stripe_client
    from devtools.stripe_standin import DEFAULT_WEBHOOK_SECRET
    dev = make_app(ENV_NAME="development", STRIPE_API_BASE="", STRIPE_SECRET_KEY="",
                   STRIPE_WEBHOOK_SECRET="", STRIPE_DEV_STANDIN_PORT=0)
    with dev.app_context():
        assert stripe_client.is_configured()
        try:
            settings = stripe_client.settings()
            assert settings.api_base.startswith("http://127.0.0.1:")
            assert stripe_client.webhook_secret() == DEFAULT_WEBHOOK_SECRET
            assert stripe_client._dev_standin.webhook_url.endswith("/pay/webhooks/stripe")
            intent = stripe_client.create_payment_intent(
                {"amount": 500, "currency": "gbp", "payment_method": "pm_card_visa", "confirm": True},
                key="dev-default:1")
            assert intent["status"] == "succeeded"
            assert stripe_client.ensure_dev_standin() == settings.api_base  # started once
        finally:
            if stripe_client._dev_standin is not None:
                stripe_client._dev_standin.stop()
                stripe_client._dev_standin = None

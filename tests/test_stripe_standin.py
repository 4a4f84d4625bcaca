"""The Stripe stand-in behaves like Stripe where the portal depends on it, seen through the
real `stripe` SDK: idempotency, test-card declines, manual capture, refunds, the hosted
Checkout page, signed webhooks, and its slow / 500 switches."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import requests
import stripe

from devtools.stripe_standin import StripeStandin, start

CARD_OK = "4242424242424242"
CARD_DECLINED = "4000000000000002"
CARD_NO_FUNDS = "4000000000009995"


@pytest.fixture
def standin():
    server = start(slow_seconds=0.5)
    yield server
    server.stop()


def sdk(standin: StripeStandin, read_timeout: float = 5.0) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_standin", base_addresses={"api": standin.url},
                               max_network_retries=0,
                               http_client=stripe.RequestsClient(timeout=(2, read_timeout)))


def session_params(**overrides) -> dict:
    params = {
        "mode": "payment", "customer_creation": "always",
        "success_url": "http://portal.test/pay/ACM1/return?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "http://portal.test/pay/ACM1?cancelled=1",
        "line_items": [{"quantity": 1, "price_data": {"currency": "gbp", "unit_amount": 11700,
                                                       "product_data": {"name": "Car hire"}}}],
        "payment_intent_data": {"setup_future_usage": "off_session",
                                "metadata": {"payment_id": "7"}},
        "metadata": {"payment_id": "7"},
    }
    params.update(overrides)
    return params


def pay_on_hosted_page(url: str, card: str) -> requests.Response:
    return requests.post(url, data={"cardnumber": card, "exp": "12 / 34", "cvc": "123"},
                         allow_redirects=False, timeout=5)


def test_same_key_same_params_gives_the_same_object_and_other_params_are_refused(standin):
    client = sdk(standin)
    first = client.v1.checkout.sessions.create(session_params(), {"idempotency_key": "hire:1:checkout:1"})
    again = client.v1.checkout.sessions.create(session_params(), {"idempotency_key": "hire:1:checkout:1"})
    assert again.id == first.id
    with pytest.raises(stripe.IdempotencyError):
        client.v1.checkout.sessions.create(session_params(cancel_url="http://elsewhere.test/"),
                                           {"idempotency_key": "hire:1:checkout:1"})
    assert len(standin.objects("checkout.session")) == 1
    replays = [r["replayed"] for r in standin.requests("POST", "/v1/checkout/sessions")]
    assert replays == [False, True, False]


def test_hosted_page_declines_test_cards_then_completes_and_redirects(standin):
    client = sdk(standin)
    session = client.v1.checkout.sessions.create(session_params(), {"idempotency_key": "k"})
    page = requests.get(session.url, timeout=5)
    assert page.status_code == 200 and "£117.00" in page.text

    declined = pay_on_hosted_page(session.url, CARD_DECLINED)
    assert declined.status_code == 200 and "Your card was declined." in declined.text
    no_funds = pay_on_hosted_page(session.url, CARD_NO_FUNDS)
    assert "Your card has insufficient funds." in no_funds.text
    assert client.v1.checkout.sessions.retrieve(session.id).status == "open"

    paid = pay_on_hosted_page(session.url, CARD_OK)
    assert paid.status_code == 303
    assert paid.headers["Location"] == f"http://portal.test/pay/ACM1/return?session_id={session.id}"
    done = client.v1.checkout.sessions.retrieve(session.id, {"expand": ["payment_intent.payment_method"]})
    assert (done.status, done.payment_status) == ("complete", "paid")
    assert done.payment_intent.status == "succeeded"
    assert done.payment_intent.metadata.payment_id == "7"
    assert done.payment_intent.payment_method.card.last4 == "4242"
    assert done.payment_intent.payment_method.customer == done.customer  # saved for later
    types = [e["type"] for e in standin.events()]
    assert types.count("payment_intent.payment_failed") == 2
    assert "checkout.session.completed" in types and "payment_intent.succeeded" in types


def test_manual_capture_takes_part_and_releases_the_rest(standin):
    client = sdk(standin)
    intent = client.v1.payment_intents.create(
        {"amount": 25000, "currency": "gbp", "payment_method": "pm_card_visa", "confirm": True,
         "off_session": True, "capture_method": "manual", "expand": ["latest_charge"]},
        {"idempotency_key": "hire:1:deposit:1"})
    assert (intent.status, intent.amount_capturable) == ("requires_capture", 25000)
    assert intent.latest_charge.payment_method_details.card.capture_before > time.time()
    captured = client.v1.payment_intents.capture(intent.id, {"amount_to_capture": 4000},
                                                 {"idempotency_key": "capture-1"})
    assert (captured.status, captured.amount_received) == ("succeeded", 4000)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_intents.capture(intent.id, {"amount_to_capture": 4000},
                                          {"idempotency_key": "capture-2"})
    other = client.v1.payment_intents.create(
        {"amount": 25000, "currency": "gbp", "payment_method": "pm_card_visa", "confirm": True,
         "capture_method": "manual"}, {"idempotency_key": "hire:2:deposit:1"})
    assert client.v1.payment_intents.cancel(other.id, None, {"idempotency_key": "c"}).status == "canceled"


def test_off_session_decline_is_a_card_error_and_is_replayed_for_the_same_key(standin):
    client = sdk(standin)
    params = {"amount": 25000, "currency": "gbp", "confirm": True, "off_session": True,
              "payment_method": "pm_card_chargeDeclinedInsufficientFunds", "capture_method": "manual"}
    for _ in range(2):
        with pytest.raises(stripe.CardError) as declined:
            client.v1.payment_intents.create(params, {"idempotency_key": "hire:3:deposit:1"})
        assert declined.value.error.decline_code == "insufficient_funds"
    assert len(standin.objects("payment_intent")) == 1


def test_refunds_are_limited_to_what_was_captured(standin):
    client = sdk(standin)
    intent = client.v1.payment_intents.create(
        {"amount": 11700, "currency": "gbp", "payment_method": "pm_card_visa", "confirm": True},
        {"idempotency_key": "pay"})
    refund = client.v1.refunds.create({"payment_intent": intent.id, "amount": 7000},
                                      {"idempotency_key": "refund:1"})
    assert (refund.status, refund.amount) == ("succeeded", 7000)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.refunds.create({"payment_intent": intent.id, "amount": 5000},
                                 {"idempotency_key": "refund:2"})
    assert client.v1.refunds.create({"payment_intent": intent.id}, {"idempotency_key": "refund:3"}).amount == 4700


def test_slow_switch_answers_after_the_client_gave_up_and_the_retry_is_replayed(standin):
    client = sdk(standin, read_timeout=0.2)
    intent = client.v1.payment_intents.create(
        {"amount": 11700, "currency": "gbp", "payment_method": "pm_card_visa", "confirm": True},
        {"idempotency_key": "pay"})
    standin.fail_next("slow", path="/v1/refunds")
    with pytest.raises(stripe.APIConnectionError):
        client.v1.refunds.create({"payment_intent": intent.id}, {"idempotency_key": "refund:9"})
    again = client.v1.refunds.create({"payment_intent": intent.id}, {"idempotency_key": "refund:9"})
    assert [r["id"] for r in standin.objects("refund")] == [again.id]
    assert [r["replayed"] for r in standin.requests("POST", "/v1/refunds")] == [False, True]


def test_500_switch_fails_without_doing_the_work(standin):
    client = sdk(standin)
    standin.fail_next("500", times=2)
    for _ in range(2):
        with pytest.raises(stripe.APIError):
            client.v1.customers.create({"email": "a@example.com"}, {"idempotency_key": "c1"})
    assert standin.objects("customer") == []
    client.v1.customers.create({"email": "a@example.com"}, {"idempotency_key": "c1"})
    assert len(standin.objects("customer")) == 1


def test_webhooks_are_signed_as_stripe_signs_them(standin):
    client = sdk(standin)
    client.v1.customers.create({"email": "a@example.com"})
    client.v1.payment_intents.create({"amount": 500, "currency": "gbp", "payment_method": "pm_card_visa",
                                      "confirm": True})
    event = standin.events("payment_intent.succeeded")[0]
    body, headers = standin.signed(event)
    verified = stripe.Webhook.construct_event(body, headers["Stripe-Signature"], standin.webhook_secret)
    assert verified.id == event["id"] and verified.data.object.amount == 500
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body.replace(b"500", b"1"), headers["Stripe-Signature"],
                                       standin.webhook_secret)
    old_body, old_headers = standin.signed(event, timestamp=int(time.time()) - 3600)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(old_body, old_headers["Stripe-Signature"], standin.webhook_secret)


def test_webhooks_are_delivered_to_the_configured_url(standin):
    received = StripeStandin(port=0)  # any HTTP server will do as a receiver; use a second stand-in
    received.start()
    try:
        standin.webhook_url = f"{received.url}/v1/customers"  # answers 401 without a key: recorded
        sdk(standin).v1.customers.create({"email": "a@example.com"})
        sdk(standin).v1.payment_intents.create({"amount": 500, "currency": "gbp",
                                                "payment_method": "pm_card_visa", "confirm": True})
        standin.wait_for_deliveries(timeout=5)
        assert [d["status"] for d in standin.deliveries] == [401, 401]
        assert [d["type"] for d in standin.deliveries] == ["charge.succeeded", "payment_intent.succeeded"]
    finally:
        received.stop()


def test_runs_from_the_command_line():
    process = subprocess.Popen([sys.executable, "-m", "devtools.stripe_standin", "--port", "0"],
                               stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("Stripe stand-in on http://127.0.0.1:")
        url = line.split()[3]
        assert requests.get(f"{url}/_standin/health", timeout=5).json() == {"ok": True}
    finally:
        process.terminate()
        process.wait(timeout=5)
        process.stdout.close()

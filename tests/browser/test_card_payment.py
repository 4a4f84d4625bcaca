"""Issue 5 (card): a customer pays a held booking in real Chromium, through the Stripe
stand-in's hosted Checkout page, over real HTTP with real signed webhooks.

Choose card, confirm the amount, land on the stand-in's Checkout page, get declined once,
pay with a good card, come back to "Payment processing" which turns into "Confirmed" by
itself. No console errors along the way (the strict CSP admits the htmx polling and the
hand-off to Checkout), and no sideways scrolling on a phone.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.extensions import db
from app.models import HireState, OutboundEmail, Payment, utcnow
from devtools.stripe_standin import start
from tests import factories

from .conftest import PHONE, browser_sign_in

CARD_DETAILS_WAIT_SECONDS = 15


def _wait_for_card_details(hire) -> None:
    """Until the hire's card payment records the card used (a background job writes it)."""
    deadline = time.monotonic() + CARD_DETAILS_WAIT_SECONDS
    while time.monotonic() < deadline:
        db.session.expire_all()
        if any((p.details or {}).get("card") for p in db.session.scalars(
                select(Payment).where(Payment.hire_id == hire.id, Payment.kind == "charge"))):
            return
        time.sleep(0.1)
    raise AssertionError("the card payment never recorded the card used")

pytestmark = [pytest.mark.browser, pytest.mark.postgres]


@pytest.fixture
def standin():
    server = start()
    yield server
    server.stop()


def test_customer_pays_by_card_through_checkout(app, make_live_server, new_page, standin):
    live = make_live_server(STRIPE_API_BASE=standin.url, STRIPE_SECRET_KEY="sk_test_browser",
                            STRIPE_WEBHOOK_SECRET=standin.webhook_secret,
                            PAYMENT_STATUS_POLL_SECONDS=1)
    standin.webhook_url = f"{live.url}/pay/webhooks/stripe"
    customer = factories.make_user("customer")
    hire = factories.make_hire(customer=customer, state=HireState.HELD)
    hire.hold_expires_at = utcnow() + timedelta(minutes=15)
    db.session.commit()

    width, height = PHONE
    page = new_page(width, height)
    browser_sign_in(page, live.url, customer.email)
    page.goto(f"{live.url}/pay/{hire.reference}")
    expect(page.locator("#price-lines")).to_contain_text("£117.00")
    assert page.evaluate("document.scrollingElement.scrollWidth") <= width
    page.locator("#pay-by-card").click()

    # The confirm step; the button is disabled while the request is in flight.
    confirm = page.get_by_role("button", name="Confirm and pay £117.00")
    confirm.click()
    page.wait_for_url(f"{standin.url}/checkout/pay/**")
    expect(page.locator("#total")).to_have_text("£117.00")

    page.get_by_label("Card number").fill("4000 0000 0000 0002")
    page.get_by_label("Expiry (MM / YY)").fill("12 / 34")
    page.get_by_label("CVC").fill("123")
    page.get_by_role("button", name="Pay £117.00").click()
    expect(page.get_by_role("alert")).to_have_text("Your card was declined.")

    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_label("Expiry (MM / YY)").fill("12 / 34")
    page.get_by_label("CVC").fill("123")
    page.get_by_role("button", name="Pay £117.00").click()

    page.wait_for_url(f"{live.url}/pay/{hire.reference}/return**")
    status = page.locator("#payment-status")
    expect(status).to_contain_text("Confirmed", timeout=15_000)
    expect(status).not_to_have_attribute("hx-get", f"/pay/{hire.reference}/status")

    standin.wait_for_deliveries()
    assert {d["status"] for d in standin.deliveries} == {200}
    db.session.expire_all()
    assert hire.state == "confirmed"
    assert len(db.session.scalars(select(OutboundEmail).where(
        OutboundEmail.to_address == customer.email, OutboundEmail.subject.contains("confirmed"))).all()) == 1

    # The webhook confirms the booking; the card's brand and last digits come from the
    # Checkout Session the return page's job retrieves (expanded), which may finish later.
    _wait_for_card_details(hire)
    page.goto(f"{live.url}/pay/{hire.reference}/receipt")
    expect(page.locator("#payments")).to_contain_text("Card payment")
    expect(page.locator("#payments")).to_contain_text("Visa •••• 4242")
    assert page.console_errors == []

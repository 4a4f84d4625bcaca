"""The counter marks a no-show on a tablet, in real Chromium: from the board, by the visible
button, through the in-page confirmation that shows the money (issue 14, item 4)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from app.extensions import db
from app.models import utcnow
from app import payments
from tests import factories
from tests.browser.conftest import browser_sign_in
from tests.browser.test_counter import PORTRAIT, audit, small_targets
from tests.test_payments_card import customer, paid_hire, standin, stripe_app  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.postgres]
SCREENSHOT = "/tmp/h4-no-show-confirmation.png"


def test_staff_mark_a_no_show_from_the_board(stripe_app, client, customer, standin,
                                             make_live_server, new_page):
    hire = paid_hire(client, standin, customer, start=utcnow() - timedelta(minutes=40))
    payments.place_deposit_hold(hire)
    ref, total = hire.reference, hire.total_pence
    staff = factories.enrol_two_factor(factories.make_user("staff"))
    served = make_live_server(STRIPE_API_BASE=standin.url, STRIPE_SECRET_KEY="sk_test_card_tests",
                              STRIPE_WEBHOOK_SECRET=standin.webhook_secret)

    page = new_page(*PORTRAIT)
    browser_sign_in(page, served.url, staff.email)
    page.locator("input[name=code]").fill(factories.two_factor_code(staff))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{served.url}/counter/**")

    row = page.locator(".board-item", has_text=ref)
    expect(row.get_by_text("late to collect: 40 min")).to_be_visible()
    row.get_by_role("button", name=f"Mark no-show: {ref}").click()
    confirmation = page.get_by_role("group", name=f"Mark {ref} as a no-show?", exact=True)
    expect(confirmation).to_be_visible()
    fee = stripe_app.config["NO_SHOW_FEE_PENCE"]
    refund = total - fee
    terms = confirmation.locator("dl")
    expect(terms.locator("dt")).to_have_text(
        ["No-show fee kept", "Refunded to the customer", "Deposit released"])
    expect(terms.locator("dd")).to_have_text(
        [f"£{fee // 100}.00", f"£{refund // 100}.{refund % 100:02d}", "£250.00"])
    # The board refreshes itself (every 30 s, or as staff search): the open question stays.
    with page.expect_response(lambda r: "/counter/?" in r.url and "q=" in r.url):
        page.get_by_label("Find a booking").fill(ref)
    expect(page.locator(".board-item")).to_have_count(1)
    expect(confirmation).to_be_visible()
    assert audit(page) == [] and small_targets(page) == []
    page.screenshot(path=SCREENSHOT, full_page=True)

    confirmation.get_by_role("button", name="Confirm no-show").click()
    expect(page.get_by_text(f"{ref} marked as a no-show")).to_be_visible()
    expect(page.locator(".board-item", has_text=ref)).to_have_count(0)
    assert page.console_errors == []

    deadline = time.monotonic() + 10  # the refund and the release are jobs off the request
    while time.monotonic() < deadline and not (
            standin.objects("refund") and standin.get(hire_hold_ref(hire))["status"] == "canceled"):
        time.sleep(0.1)
    db.session.expire_all()
    assert hire.state == "no_show" and hire.occupancy is None
    assert [r["amount"] for r in standin.objects("refund")] == [refund]
    assert standin.get(hire_hold_ref(hire))["status"] == "canceled"


def hire_hold_ref(hire) -> str:
    db.session.expire_all()
    return payments.latest_hold(hire).provider_ref

"""Workflow 4 in real Chromium, at phone and tablet sizes: search, change a filter, pick a
car, add an extra and watch the total change in place, confirm, land on the payment step
(or the booking's page); then cancel it from My bookings after the confirm step.
No console errors along the way, and no sideways scrolling on a phone.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from app.booking.seed import seed_rate_tables
from app.extensions import db
from tests import factories
from tests.test_booking import FMT, local_day

from .conftest import PHONE, TABLET, browser_sign_in

pytestmark = [pytest.mark.browser, pytest.mark.postgres]

LANDING = re.compile(r"/(pay|book/hires)/AC[A-Z0-9]{8}$")


def golf_and_octavia():
    """A branch with a compact (Golf, £39 a day) and an estate (Octavia, £54), the rate
    tables, and a customer (returned) who may book."""
    branch = factories.make_branch("LHR")
    compact = factories.make_car_class("compact", daily_rate_pence=3900)
    estate = factories.make_car_class("estate", daily_rate_pence=5400)
    factories.make_car(car_class=compact, branch=branch, make="Volkswagen", model="Golf")
    factories.make_car(car_class=estate, branch=branch, make="Skoda", model="Octavia")
    seed_rate_tables()
    db.session.commit()
    return factories.make_user("customer")


def _fits_width(page: Page, width: int) -> None:
    assert page.evaluate("document.scrollingElement.scrollWidth") <= width


@pytest.mark.parametrize("size", [PHONE, TABLET], ids=["phone", "tablet"])
def test_search_quote_confirm_then_cancel(live_server, new_page, size):
    width, height = size
    user = golf_and_octavia()

    page = new_page(width, height)
    browser_sign_in(page, live_server.url, user.email)
    page.goto(f"{live_server.url}/book/")
    form = page.locator("#search-form")
    cards = page.locator("#results .car-card")

    # Search: type the dates; the results follow without a page load.
    with page.expect_response(lambda r: "/book/?" in r.url and r.request.headers.get("hx-request")):
        form.get_by_label("Pick up", exact=True).fill(local_day(12).strftime(FMT))
        form.get_by_label("Return", exact=True).fill(local_day(15).strftime(FMT))
    expect(cards).to_have_count(2)
    expect(page.locator("#results")).to_contain_text("2 cars are free")
    _fits_width(page, width)

    # Change a filter: only the estate is left.
    form.get_by_label("Class").select_option("estate")
    expect(cards).to_have_count(1)
    expect(cards.first).to_contain_text("Skoda Octavia")
    assert "car_class=estate" in page.url  # the search is in the address bar (back button)

    # Pick the car: an itemised quote.
    cards.first.get_by_role("link", name=re.compile("Choose")).click()
    page.wait_for_url(re.compile(r"/book/cars/\d+\?"))
    total = page.locator("#quote .quote-total")
    expect(page.locator("#quote")).to_contain_text("Rental: 3 days × £54.00")
    before = total.inner_text()

    # Add an extra: the total changes in place.
    page.get_by_label("Satellite navigation").check()
    expect(total).not_to_have_text(before)
    expect(page.locator("#quote")).to_contain_text("Satellite navigation: 3 days × £6.00")
    after = total.inner_text()
    _fits_width(page, width)

    # The confirm step states what is about to happen before any money moves.
    page.locator("#book-button").click()
    statement = page.locator("#statement")
    expect(statement).to_contain_text("You are about to book the Skoda Octavia")
    expect(statement).to_contain_text(f"for {after}; a deposit of £250.00 will be held")
    assert page.console_errors == []  # type: ignore[attr-defined]
    page.get_by_role("button", name="Confirm and continue to payment").click()
    page.wait_for_url(LANDING)
    reference = LANDING.search(page.url).group(0).rsplit("/", 1)[1]

    # My bookings: cancel, after the inline confirm step.
    page.goto(f"{live_server.url}/book/mine")
    row = page.locator(f"#booking-{reference}")
    expect(row).to_contain_text("Awaiting payment")
    row.get_by_role("link", name="Cancel").click()
    expect(row).to_contain_text("Nothing has been charged")
    row.get_by_role("button", name="Yes, cancel booking").click()
    expect(page.locator(".flash-success")).to_contain_text(f"Booking {reference} is cancelled.")
    expect(page.locator(f"#booking-{reference}")).to_contain_text("Cancelled")
    _fits_width(page, width)
    errors = [e for e in page.console_errors if "/pay/" not in e]  # type: ignore[attr-defined]
    assert errors == []

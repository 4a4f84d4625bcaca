"""The storefront in real Chromium, at a phone's size and a desktop's (issue 17): from the home
page, see the classes and their from-prices, search from there, sort the results by size, pick
a car and read each extra's price before picking it (the cover choices a radio and its label
on one line), book it and see the same breakdown, with its subtotal, on the pay page; and
when nothing is free, follow the nearest dates offered. No page scrolls sideways.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect

from app.booking.seed import seed_rate_tables
from app.extensions import db
from app.models import HireState, utcnow
from app.models.crypto import ChainPayment, CryptoQuote
from tests import factories
from tests.test_booking import FMT, as_utc, local_day

from .conftest import PHONE, browser_sign_in
from .test_fleet_admin import _sign_in_with_code

pytestmark = [pytest.mark.browser, pytest.mark.postgres]

DESKTOP = (1366, 900)
SIZES = pytest.mark.parametrize("size", [PHONE, DESKTOP], ids=["phone", "desktop"])


def storefront():
    """A branch with a mini (4 seats), a compact and an estate; a second branch with a compact;
    the rate tables; a customer who may book (returned)."""
    lhr, man = factories.make_branch("LHR"), factories.make_branch("MAN")
    mini = factories.make_car_class("mini", daily_rate_pence=2900)
    compact = factories.make_car_class("compact", daily_rate_pence=3900)
    estate = factories.make_car_class("estate", daily_rate_pence=5400)
    cars = [factories.make_car(car_class=mini, branch=lhr, make="Fiat", model="500", seats=4, doors=3),
            factories.make_car(car_class=compact, branch=lhr, make="Volkswagen", model="Golf"),
            factories.make_car(car_class=estate, branch=lhr, make="Skoda", model="Octavia")]
    factories.make_car(car_class=compact, branch=man, make="Ford", model="Focus")
    seed_rate_tables()
    db.session.commit()
    return factories.make_user("customer"), lhr, cars


def fits_width(page: Page) -> None:
    """No sideways scrolling: the document is no wider than the window."""
    width = page.viewport_size["width"]
    assert page.evaluate("document.scrollingElement.scrollWidth") <= width, page.url


def search_from_home(page: Page, base_url: str, start, end) -> None:
    page.goto(f"{base_url}/")
    form = page.locator("#home-search-form")
    form.get_by_label("Pick up", exact=True).fill(start.strftime(FMT))
    form.get_by_label("Return", exact=True).fill(end.strftime(FMT))
    form.get_by_role("button", name="Search cars").click()
    page.wait_for_url(re.compile(r"/book/\?"))


@SIZES
def test_from_the_home_page_to_the_pay_page(live_server, new_page, size):
    user, _, _ = storefront()
    page = new_page(*size)
    browser_sign_in(page, live_server.url, user.email)

    # The home page: the search, the classes with their pictures and from-prices, the terms.
    page.goto(f"{live_server.url}/")
    expect(page.get_by_role("heading", name="Hire a car", level=1)).to_be_visible()
    classes = page.locator(".class-card")
    expect(classes).to_have_count(3)
    expect(classes.first).to_contain_text("from £34.80 a day")
    expect(classes.first.locator("img.class-picture")).to_have_attribute("src", re.compile(r"mini\.svg$"))
    expect(page.locator("#term-cancellation")).to_contain_text("Free until 48 hours before pickup")
    fits_width(page)

    # Search from there: the results page, cheapest first.
    search_from_home(page, live_server.url, local_day(12), local_day(15))
    cards = page.locator("#results .car-card")
    expect(cards).to_have_count(3)
    expect(cards.first).to_contain_text("Fiat 500")
    expect(cards.first.locator(".car-photo img")).to_have_attribute("width", "320")
    fits_width(page)

    # Sort by size: the estate first, the 4-seat mini last; the order is in the address.
    page.get_by_label("Sort by").select_option(label="Size: largest first")
    expect(cards.first).to_contain_text("Skoda Octavia")
    expect(cards.last).to_contain_text("Fiat 500")
    expect(page.locator("#results")).to_contain_text("Sorted by size: largest first")
    assert "sort=size" in page.url
    fits_width(page)

    # Pick the estate: each extra's price is there before it is picked.
    cards.first.get_by_role("link", name=re.compile("Choose")).click()
    page.wait_for_url(re.compile(r"/book/cars/\d+\?"))
    expect(page.get_by_label("Satellite navigation")).not_to_be_checked()
    expect(page.locator("label", has_text="Satellite navigation")).to_contain_text(
        "£6.00 a day, at most £36.00 a hire + VAT")
    cover_plus = page.get_by_label(re.compile("Cover Plus"))
    cover_label = page.locator("label.check", has_text="Cover Plus")
    expect(cover_label).to_contain_text("£9.00 a day, at most £90.00 a hire")
    # The radio is a radio-sized box with its words beside it, on the same line.
    radio = cover_plus.bounding_box()
    words = cover_label.locator("span").first.bounding_box()
    assert radio["width"] < 32, radio
    assert words["x"] >= radio["x"] + radio["width"] and words["x"] - (radio["x"] + radio["width"]) < 24
    assert abs(words["y"] - radio["y"]) < 12, (radio, words)
    fits_width(page)
    cover_plus.check()
    expect(page.locator("#quote")).to_contain_text("Cover Plus: 3 days × £9.00")
    total = page.locator("#quote .quote-total").inner_text()

    # Book it: the pay page shows the same breakdown, subtotal included.
    page.locator("#book-button").click()
    page.get_by_role("button", name="Confirm and continue to payment").click()
    page.wait_for_url(re.compile(r"/pay/AC[A-Z0-9]{8}$"))
    lines = page.locator("#price-lines")
    expect(lines).to_contain_text("Subtotal before VAT")
    expect(lines).to_contain_text("Cover Plus: 3 days × £9.00")
    expect(lines.locator(".quote-total")).to_have_text(total)
    fits_width(page)
    assert [e for e in page.console_errors if "/pay/" not in e] == []  # type: ignore[attr-defined]


@SIZES
def test_nothing_free_offers_the_nearest_dates_and_the_other_branch(live_server, new_page, size):
    _, _, cars = storefront()
    for car in cars:
        factories.make_hire(car=car, start=as_utc(local_day(10)), days=3)

    page = new_page(*size)
    search_from_home(page, live_server.url, local_day(11), local_day(12))

    why = page.locator("#nothing-free-why")
    expect(why).to_contain_text("All 3 cars at")
    expect(why).to_contain_text("are booked for these dates")
    expect(page.locator("#other-branches")).to_contain_text("1 car free")
    fits_width(page)
    later = f"{local_day(13):%a %d %b} 10:00 to {local_day(14):%a %d %b} 10:00"
    page.get_by_role("link", name=later).click()
    expect(page.locator("#results .car-card")).to_have_count(3)
    expect(page.get_by_label("Pick up", exact=True)).to_have_value(local_day(13).strftime(FMT))
    fits_width(page)
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_the_header_keeps_sign_out_on_one_line_on_a_phone(live_server, new_page):
    user, _, _ = storefront()
    page = new_page(*PHONE)
    browser_sign_in(page, live_server.url, user.email)
    page.goto(f"{live_server.url}/")
    sign_out = page.get_by_role("button", name="Sign out")
    find = page.locator(".site-header nav").get_by_role("link", name="Find a car")
    box, first = sign_out.bounding_box(), find.bounding_box()
    assert abs(box["y"] - first["y"]) < 4, "the menu is one row"
    line_height = float(sign_out.evaluate("e => parseFloat(getComputedStyle(e).lineHeight)"))
    text_height = sign_out.evaluate("e => { const r = document.createRange(); r.selectNodeContents(e);"
                                    " return r.getBoundingClientRect().height; }")
    assert text_height < 1.5 * line_height, "Sign out is on one line"
    fits_width(page)


def a_short_payment_to_review():
    """A held hire, its crypto quote, and a payment short of it that waits for staff."""
    hire = factories.make_hire(state=HireState.HELD)
    now = utcnow()
    quote = CryptoQuote(hire=hire, booking_ref="0x" + "42" * 32, chain_id=1337,
                        contract_address="0x" + "11" * 20, amount_pence=hire.total_pence,
                        rate_pence_per_eth=250_000, rate_source="Fixed demonstration rate",
                        rate_at=now, amount_wei=46_800_000_000_000_000, created_at=now,
                        expires_at=now + timedelta(minutes=15))
    db.session.add(quote)
    db.session.flush()
    db.session.add(ChainPayment(
        chain_id=1337, contract_address=quote.contract_address, tx_hash="0x" + "ab" * 32, log_index=0,
        block_number=7, block_hash="0x" + "cd" * 32, booking_ref=quote.booking_ref,
        payer="0x" + "22" * 20, amount_wei=40_000_000_000_000_000, quote=quote, state="review",
        outcome="partial", review_reason="Short of the price by 0.0068 ETH.", seen_at=now, paid_at=now))
    db.session.commit()


def test_the_crypto_review_queue_shows_its_buttons_on_a_desktop(live_server, new_page):
    a_short_payment_to_review()
    admin = factories.enrol_two_factor(factories.make_user("admin", branch=factories.make_branch()))
    page = new_page(*DESKTOP)
    _sign_in_with_code(page, live_server.url, admin)
    page.goto(f"{live_server.url}/pay/crypto/review")
    wrap = page.locator(".table-wrap")
    assert wrap.evaluate("e => e.scrollWidth <= e.clientWidth"), "the table fits its box"
    right = wrap.bounding_box()["x"] + wrap.bounding_box()["width"]
    for name in ("Accept for this booking", "Refund in full"):
        button = page.get_by_role("button", name=name)
        expect(button).to_be_visible()
        box = button.bounding_box()
        assert box["x"] + box["width"] <= right, name
    fits_width(page)

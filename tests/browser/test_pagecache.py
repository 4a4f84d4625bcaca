"""The public page cache in real Chromium (app/pagecache.py): a visitor who is not signed in
searches, goes back to an earlier question and gets it from the cache, swaps still land in
place; once signed in, the pages are theirs again (their menu, a fresh page)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from app.metrics import _page_cache_registry
from tests import factories
from tests.test_booking import FMT, local_day

from .conftest import TABLET
from .test_booking import golf_and_octavia

pytestmark = [pytest.mark.browser, pytest.mark.postgres]


def hits(route: str) -> float:
    return _page_cache_registry.get_sample_value(
        "acme_page_cache_total", {"route": route, "result": "hit"}) or 0.0


def wait_for_answer(page, **question: str) -> None:
    """Wait until the results shown answer this search: htmx puts the question in the address
    bar in the same step as it swaps its answer in (hx-push-url)."""
    page.wait_for_function(
        """(question) => {
            const asked = new URLSearchParams(location.search);
            return Object.entries(question).every(([name, value]) => asked.get(name) === value);
        }""", arg=question)


def test_a_visitor_gets_cached_answers_then_signs_in_to_book(make_live_server, new_page):
    server = make_live_server(PUBLIC_PAGE_CACHE_SECONDS=300)
    user = golf_and_octavia()

    page = new_page(*TABLET)
    page.goto(f"{server.url}/book/")
    form = page.locator("#search-form")
    cards = page.locator("#results .car-card")
    # The first page already shows both cars (for its default dates): wait for the answer to
    # the new dates before going on, or choosing a class replaces that search in the queue and
    # "every class for these dates" is never asked (then never cached).
    trip = {"pickup_at": local_day(12).strftime(FMT), "return_at": local_day(15).strftime(FMT)}
    form.get_by_label("Pick up", exact=True).fill(trip["pickup_at"])
    form.get_by_label("Return", exact=True).fill(trip["return_at"])
    wait_for_answer(page, **trip, car_class="")
    expect(cards).to_have_count(2)
    form.get_by_label("Class").select_option("estate")
    wait_for_answer(page, **trip, car_class="estate")
    expect(cards).to_have_count(1)

    # Back to every class: the same question as before, answered from the cache, in place.
    searches = hits("booking.search")
    form.get_by_label("Class").select_option("")
    wait_for_answer(page, **trip, car_class="")
    expect(cards).to_have_count(2)
    assert hits("booking.search") == searches + 1
    expect(page.locator("#results")).to_contain_text("2 cars are free")
    expect(page.get_by_role("link", name="Sign in")).to_be_visible()

    # A car's price, then an extra on, off and on again: the breakdown swaps in place each time.
    cards.filter(has_text="Skoda Octavia").get_by_role("link", name=re.compile("Choose")).click()
    page.wait_for_url(re.compile(r"/book/cars/\d+\?"))
    total = page.locator("#quote .quote-total")
    before = total.inner_text()
    satnav = page.get_by_label("Satellite navigation")
    satnav.check()
    expect(total).not_to_have_text(before)
    with_satnav = total.inner_text()
    satnav.uncheck()
    expect(total).to_have_text(before)
    quotes = hits("booking.quote")
    satnav.check()  # asked before: from the cache
    expect(total).to_have_text(with_satnav)
    assert hits("booking.quote") == quotes + 1

    # Booking needs signing in; after it, the pages are the customer's own, never the cache's.
    page.locator("#book-button").click()
    page.wait_for_url(re.compile(r"/account/sign-in"))
    sign_in = page.locator("#sign-in-form")
    sign_in.get_by_label("Email").fill(user.email)
    sign_in.get_by_label("Password", exact=True).fill(factories.PASSWORD)
    sign_in.get_by_role("button", name="Sign in").click()
    expect(page.locator("#statement")).to_contain_text("You are about to book the Skoda Octavia")
    searches = hits("booking.search")
    page.goto(f"{server.url}/book/")
    expect(page.get_by_role("link", name="My bookings")).to_be_visible()
    assert hits("booking.search") == searches
    assert page.console_errors == []  # type: ignore[attr-defined]

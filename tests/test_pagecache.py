"""The public page cache (app/pagecache.py, issue 9): repeated anonymous searches and price
pages are answered from memory for a few seconds, and nobody ever gets someone else's page."""

from __future__ import annotations

import re

import pytest
from flask import session
from sqlalchemy import event

from app.extensions import db
from app.pagecache import public_cache
from app.security import allow
from tests.conftest import CSRF_RE, AuthActions
from tests.test_booking import local_day, shop, trip_args  # noqa: F401  (shop: a fixture)

TTL = 30.0


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def counting_sql(app):
    """`app`, with every SQL statement it runs appended to `app.sql`."""
    app.sql = []
    with app.app_context():
        event.listen(db.engine, "before_cursor_execute",
                     lambda conn, cursor, statement, *a: app.sql.append(statement))
    return app


@pytest.fixture
def cached(make_app):
    """An app with the cache on, its clock in the test's hands, and its SQL counted."""
    app = counting_sql(make_app(PUBLIC_PAGE_CACHE_SECONDS=TTL))
    app.extensions["acme_page_cache"].clock = Clock()
    return app


def search_url(fleet, days: int = 10) -> str:
    args = trip_args(fleet, local_day(days), local_day(days + 3))
    return "/book/?" + "&".join(f"{k}={v}" for k, v in args.items())


def get(app, url: str, **kwargs):
    """One request from a fresh browser (no cookies); returns (response, SQL statements run)."""
    before = len(app.sql)
    response = app.test_client().get(url, **kwargs)
    return response, app.sql[before:]


def test_a_repeated_anonymous_search_is_answered_without_the_database(cached, shop):  # noqa: F811
    url = search_url(shop)
    first, first_sql = get(cached, url)
    again, again_sql = get(cached, url)
    assert first.status_code == again.status_code == 200
    assert "Volkswagen" in first.get_data(as_text=True) and first_sql
    assert again.get_data() == first.get_data() and again_sql == []
    # Nothing personal in it: no session started, no CSRF token on the page.
    assert "Set-Cookie" not in first.headers and "csrf" not in first.get_data(as_text=True).lower()
    # Each answer has its own request id; the security headers are kept.
    assert first.headers["X-Request-ID"] != again.headers["X-Request-ID"]
    assert again.headers["Content-Security-Policy"] == first.headers["Content-Security-Policy"]
    assert again.headers["X-Frame-Options"] == "DENY"


def test_a_price_change_shows_once_the_seconds_are_over(cached, shop):  # noqa: F811
    url = f"/book/cars/{shop.car.id}?" + search_url(shop).split("?", 1)[1]
    before, _ = get(cached, url)
    shop.compact.daily_rate_pence = 12345
    db.session.commit()
    assert get(cached, url)[0].get_data() == before.get_data()  # within the seconds
    cached.extensions["acme_page_cache"].clock.now += TTL + 0.1
    after, sql = get(cached, url)
    assert sql and after.get_data() != before.get_data()
    assert "£123.45" in after.get_data(as_text=True)


def test_signed_in_visitors_never_get_or_leave_a_cached_page(cached, shop):  # noqa: F811
    url = search_url(shop)
    anonymous, _ = get(cached, url)
    customer = cached.test_client()
    AuthActions(customer).sign_in_as("customer")
    signed_in = customer.get(url)
    page = signed_in.get_data(as_text=True)
    assert "Sign out" in page and "My bookings" in page  # rendered for them, not the cached one
    assert signed_in.headers["Cache-Control"] == "no-store"
    again, sql = get(cached, url)
    assert again.get_data() == anonymous.get_data() and sql == []
    assert "Sign out" not in again.get_data(as_text=True)

    # And their page is never kept for the next visitor.
    other = search_url(shop, days=20)
    assert "Sign out" in customer.get(other).get_data(as_text=True)
    fresh, sql = get(cached, other)
    assert sql and "Sign out" not in fresh.get_data(as_text=True)


def test_htmx_swaps_and_whole_pages_are_kept_apart(cached, shop):  # noqa: F811
    url = search_url(shop)
    page, _ = get(cached, url)
    swap, sql = get(cached, url, headers={"HX-Request": "true"})
    assert sql, "the fragment was not in the cache yet"
    assert "<html" in page.get_data(as_text=True) and "<html" not in swap.get_data(as_text=True)
    assert get(cached, url, headers={"HX-Request": "true"})[0].get_data() == swap.get_data()
    assert get(cached, url)[0].get_data() == page.get_data()


def test_wrong_input_is_kept_too_but_each_question_has_its_own_answer(cached, shop):  # noqa: F811
    bad = "/book/?pickup_branch=999&pickup_at=tomorrow"
    first, _ = get(cached, bad)
    assert first.status_code == 422
    again, sql = get(cached, bad)
    assert again.status_code == 422 and sql == []
    other, sql = get(cached, search_url(shop))
    assert other.status_code == 200 and sql


def test_posts_other_pages_and_answers_that_start_a_session_are_never_kept(cached, shop):  # noqa: F811
    hits = []

    @cached.get("/__remember-me")
    @allow("public")
    @public_cache
    def remember_me():
        hits.append(1)
        session["seen"] = True  # personal: the answer carries a Set-Cookie
        return "hello"

    assert get(cached, "/__remember-me")[0].status_code == 200
    assert get(cached, "/__remember-me")[0].status_code == 200
    assert len(hits) == 2
    # The sign-in page puts a CSRF token in the session and is not marked: never kept.
    tokens = [CSRF_RE.search(get(cached, "/account/sign-in")[0].get_data(as_text=True)).group(1)
              for _ in range(2)]
    assert tokens[0] != tokens[1]  # each visitor got their own form
    # A visitor who has a session (a message waiting, a CSRF token) gets a fresh page.
    url = search_url(shop)
    get(cached, url)
    browser = cached.test_client()
    browser.get("/account/sign-in")
    before = len(cached.sql)
    assert browser.get(url).status_code == 200 and len(cached.sql) > before


def test_the_cache_holds_at_most_its_entries(make_app, shop):  # noqa: F811
    app = counting_sql(make_app(PUBLIC_PAGE_CACHE_SECONDS=TTL, PUBLIC_PAGE_CACHE_ENTRIES=2))
    first, second, third = (search_url(shop, days) for days in (10, 11, 12))
    for url in (first, second, third):
        get(app, url)
    assert get(app, third)[1] == [] and get(app, second)[1] == []
    assert get(app, first)[1], "the least recently used entry was dropped"


def test_hits_are_counted_in_the_metrics(cached, shop):  # noqa: F811
    def counts() -> dict[str, float]:
        metrics = cached.test_client().get("/metrics").get_data(as_text=True)
        return {result: float(value) for result, value in re.findall(
            r'acme_page_cache_total\{result="(\w+)",route="booking.search"\} ([\d.]+)', metrics)}

    before = counts()
    for _ in range(3):
        get(cached, search_url(shop))
    after = counts()
    assert after.get("hit", 0) - before.get("hit", 0) == 2
    assert after.get("stored", 0) - before.get("stored", 0) == 1


def test_off_when_the_setting_is_zero(make_app, shop):  # noqa: F811
    app = counting_sql(make_app(PUBLIC_PAGE_CACHE_SECONDS=0))
    url = search_url(shop)
    get(app, url)
    assert get(app, url)[1]

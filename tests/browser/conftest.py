"""Browser-test fixtures: the portal served over real HTTP, driven by real Chromium.

- `live_server`, `make_live_server(**overrides)`: the portal over real HTTP
  (tests/live_server.py, shared with the race tests).
- `browser`: one Chromium for the whole run (Debian's /usr/bin/chromium).
- `new_page(width, height)`: a fresh page in its own context with that viewport. Console
  errors and uncaught page errors (CSP violations arrive as console errors) are collected
  in `page.console_errors` so a test can assert there are none; what the Content-Security-Policy
  refused (each `securitypolicyviolation`, across navigations) in `page.csp_violations`.
- `browser_sign_in(page, base_url, email, password)`: sign in through the real form.

Browser tests are marked `browser` and `postgres`: they run in the PostgreSQL pass only.
"""

from __future__ import annotations

import os
import re
from typing import Callable
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests import factories
from tests.live_server import live_server, make_live_server  # noqa: F401  (fixtures)

PHONE = (390, 844)
TABLET = (1024, 768)
# Long enough for a slow CI machine, short enough that a broken page fails fast.
DEFAULT_TIMEOUT_MS = 10_000
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# Chromium logs every fetch answered 4xx as a console error. 422 is the portal's designed
# answer to an invalid form (re-rendered with its messages), and 409 to a request the calendar
# refuses (the car is taken, or booked straight after: said on the page with what to do
# instead), and 401 to a page's background request once its session has ended (the page is
# then taken to sign in, app/security.py: answer_signed_out), so those lines are not faults.
EXPECTED_NETWORK_LOG = re.compile(r"^Failed to load resource: the server responded with a status of (401|409|422)\b")
# Chromium asks every site for /favicon.ico by itself: the local Stripe stand-in's Checkout page
# has no icon, and its 404 is not something a page did wrong. (The portal's own icon is tested
# in tests/test_storefront.py.)
BROWSER_OWN_REQUESTS = ("/favicon.ico",)

CSP_LISTENER = """document.addEventListener('securitypolicyviolation', e => window.acmeCspViolation(
    e.violatedDirective + ' refused ' + (e.blockedURI || 'inline') + ' at ' + e.sourceFile + ':' + e.lineNumber));"""

expect.set_options(timeout=DEFAULT_TIMEOUT_MS)


# Without it, `context.set_offline(True)` and `context.route` do not reach what a service
# worker fetches (the counter's, issue 20): an "offline" tablet would still be served by the
# network through its worker. Read by Playwright's driver when it starts.
SERVICE_WORKER_NETWORK = "PW_EXPERIMENTAL_SERVICE_WORKER_NETWORK_EVENTS"


@pytest.fixture(scope="session")
def _playwright():
    os.environ.setdefault(SERVICE_WORKER_NETWORK, "1")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(_playwright) -> Browser:
    chromium = _playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


@pytest.fixture
def new_page(browser) -> Callable[[int, int], Page]:
    """Factory: a fresh page (own cookies and storage) at width x height CSS pixels."""
    contexts = []

    def open_page(width: int, height: int) -> Page:
        # Our customers are in the UK: dates in inputs read day/month/year, times London's.
        context = browser.new_context(viewport={"width": width, "height": height},
                                      locale="en-GB", timezone_id="Europe/London")
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        errors: list[str] = []

        def on_console(msg) -> None:
            source = msg.location.get("url") or ""
            if msg.type != "error" or EXPECTED_NETWORK_LOG.match(msg.text):
                return
            if urlsplit(source).path in BROWSER_OWN_REQUESTS:
                return
            errors.append(f"console: {msg.text} ({source})")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
        page.console_errors = errors  # type: ignore[attr-defined]
        # Every Content-Security-Policy violation, from every document the page shows (a
        # binding survives navigations): what the portal's strict CSP refused.
        violations: list[str] = []
        context.expose_binding("acmeCspViolation", lambda source, text: violations.append(text))
        context.add_init_script(CSP_LISTENER)
        page.csp_violations = violations  # type: ignore[attr-defined]
        return page

    yield open_page
    for context in contexts:
        context.close()


def browser_sign_in(page: Page, base_url: str, email: str,
                    password: str = factories.PASSWORD) -> None:
    """Sign in through the real sign-in form and wait for the page it leads to."""
    page.goto(f"{base_url}/account/sign-in")
    form = page.locator("#sign-in-form")
    form.get_by_label("Email").fill(email)
    form.get_by_label("Password", exact=True).fill(password)
    with page.expect_response(lambda r: r.request.method == "POST"
                              and "/account/sign-in" in r.url) as answer:
        form.get_by_role("button", name="Sign in").click()
    status = answer.value.status
    if status not in (204, 303):
        errors = form.locator(".error").all_inner_texts() if form.count() else []
        raise AssertionError(f"sign-in as {email} failed with {status}: {errors}")
    page.wait_for_url(lambda url: "/account/sign-in" not in url)
    page.wait_for_load_state()

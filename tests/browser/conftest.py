"""Browser-test fixtures: the portal served over real HTTP, driven by real Chromium.

- `live_server`: the portal on 127.0.0.1:<free port> in a background thread, on the same
  test database as the `app` fixture (whose teardown empties the tables), with jobs run
  in-process off the request as on the embedded default. `.url` has no trailing slash;
  `.app` is the served Flask app. `make_live_server(**overrides)` serves other settings.
- `browser`: one Chromium for the whole run (Debian's /usr/bin/chromium).
- `new_page(width, height)`: a fresh page in its own context with that viewport. Console
  errors and uncaught page errors (CSP violations arrive as console errors) are collected
  in `page.console_errors` so a test can assert there are none.
- `browser_sign_in(page, base_url, email, password)`: sign in through the real form.

Browser tests are marked `browser` and `postgres`: they run in the PostgreSQL pass only.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlsplit

import pytest
from flask import Flask
from playwright.sync_api import Browser, Page, expect, sync_playwright
from werkzeug.serving import BaseWSGIServer, make_server

from app import create_app, jobs
from app.extensions import db
from tests import factories
from tests.conftest import make_test_config

PHONE = (390, 844)
TABLET = (1024, 768)
# Long enough for a slow CI machine, short enough that a broken page fails fast.
DEFAULT_TIMEOUT_MS = 10_000
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
LIVE_SERVER_DEFAULTS = {"JOBS_MODE": "thread"}
# Chromium logs every fetch answered 4xx as a console error. 422 is the portal's designed
# answer to an invalid form (re-rendered with its messages), so that line is not a fault.
EXPECTED_NETWORK_LOG = re.compile(r"^Failed to load resource: the server responded with a status of 422\b")
# Chromium asks every site for /favicon.ico by itself; the portal has no icon yet, and a
# 404 there is not something a page did wrong.
BROWSER_OWN_REQUESTS = ("/favicon.ico",)

expect.set_options(timeout=DEFAULT_TIMEOUT_MS)


@dataclass
class LiveServer:
    url: str
    app: Flask
    _server: BaseWSGIServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        _wait_for_in_process_jobs()
        with self.app.app_context():
            db.engine.dispose()


def _wait_for_in_process_jobs() -> None:
    """Let jobs started by the served pages finish before the tables are emptied.

    JOBS_MODE="thread" runs them on a module-level pool; shutting it down waits for
    them, and `enqueue` builds a fresh pool on next use.
    """
    pool, jobs._executor = jobs._executor, None
    if pool is not None:
        pool.shutdown(wait=True)


def _serve(**overrides) -> LiveServer:
    served = create_app(make_test_config(**{**LIVE_SERVER_DEFAULTS, **overrides}))
    server = make_server("127.0.0.1", 0, served, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    return LiveServer(url=f"http://127.0.0.1:{server.server_port}", app=served,
                      _server=server, _thread=thread)


@pytest.fixture
def make_live_server(app):
    """Factory: serve the portal with these config overrides; every server stops at teardown."""
    servers: list[LiveServer] = []

    def start(**config_overrides) -> LiveServer:
        server = _serve(**config_overrides)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def live_server(make_live_server) -> LiveServer:
    return make_live_server()


@pytest.fixture(scope="session")
def _playwright():
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

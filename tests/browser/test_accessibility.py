"""Issue 17: every page, for every kind of visitor, checked in real Chromium by axe-core with
the WCAG 2.0/2.1/2.2 A and AA rules, at a phone, a tablet and a laptop size, in the light and
the dark colour scheme: no serious or critical violation, and nothing scrolls sideways.

One browser; one context per role, signed in once; each page is loaded once and checked at the
six combinations by resizing the viewport and switching the emulated colour scheme. The pages
come from seeds (tests/browser/site_pages.py: a hire in each state a page depends on) and a
crawl of the links on every page; the test also proves that no page of the app was missed.

    A11Y_REPORT=path       write axe's counts per page and screen to that file
    SCREENSHOTS_DIR=path   keep a full-page screenshot of each page at the three sizes
                           (scripts/screenshots sets this; for review, not pixel tests)
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

from tests import factories

from .a11y import SCHEMES, SIZES, axe_violations, blocking, last_examples, sideways_overflow, widest_elements
from .conftest import CHROMIUM_ARGS, DEFAULT_TIMEOUT_MS, browser_sign_in  # noqa: F401
from .site_pages import MAX_PER_ENDPOINT, build_world, every_page_endpoint, page_endpoint, seeds

pytestmark = [pytest.mark.browser, pytest.mark.postgres]

REPORT = os.environ.get("A11Y_REPORT", "")
SHOTS = os.environ.get("SCREENSHOTS_DIR", "")


@dataclass
class Sweep:
    app: object
    base: str
    failures: list[str] = field(default_factory=list)
    report: list[str] = field(default_factory=list)
    covered: set[str] = field(default_factory=set)
    pages: int = 0

    def check(self, page: Page, role: str, label: str) -> None:
        """axe and the sideways-scroll check at every size in both schemes, for the page as loaded."""
        self.pages += 1
        endpoint = page_endpoint(self.app, page.url) or "?"
        self.covered.add(endpoint)
        counts = []
        for scheme in SCHEMES:
            page.emulate_media(color_scheme=scheme)
            for width, height in SIZES:
                page.set_viewport_size({"width": width, "height": height})
                where = f"{role} {label} at {width}x{height} {scheme}"
                found = axe_violations(page)
                bad = blocking(found)
                over = sideways_overflow(page)
                counts.append(f"{width}x{height} {scheme}: {sum(bad.values())} serious/critical"
                              f" ({sum(c for _, c in found.values())} in all)"
                              + (f" [{', '.join(f'{r} {n}' for r, n in sorted(bad.items()))}]" if bad else "")
                              + (f" overflow {over}px" if over else ""))
                for rule, n in bad.items():
                    self.failures.append(f"{where}: {rule} ×{n}: {last_examples(rule)}")
                if over:
                    self.failures.append(f"{where}: scrolls sideways by {over}px: {widest_elements(page)}")
                if SHOTS and (scheme == "light" or width == SIZES[0][0]):
                    name = re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-")[:60] or "home"
                    folder = Path(SHOTS) / role
                    folder.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(folder / f"{self.pages:02d}-{name}-{width}x{height}-{scheme}.png"),
                                    full_page=True, caret="initial", animations="allow")
        page.emulate_media(color_scheme="light")
        self.report.append(f"{role:9} {label}  ->  {endpoint}\n    " + "\n    ".join(counts))

    def crawl(self, page: Page, role: str, start: list[str]) -> None:
        """Breadth-first over same-site links from `start`, checking each page once."""
        queue, seen, per_endpoint, seeded = deque(start), set(), Counter(), set(start)
        while queue:
            path = queue.popleft()
            endpoint = page_endpoint(self.app, path)
            if path in seen or endpoint is None:
                continue
            if path not in seeded and per_endpoint[endpoint] >= MAX_PER_ENDPOINT:
                continue
            seen.add(path)
            per_endpoint[endpoint] += 1
            page.goto(self.base + path)
            page.wait_for_load_state()
            self.check(page, role, path)
            for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"):
                parts = urlsplit(href)
                if f"{parts.scheme}://{parts.netloc}" == self.base and parts.path:
                    queue.append(parts.path + (f"?{parts.query}" if parts.query else ""))


def _staff_sign_in(sweep: Sweep, page: Page, user, role: str) -> None:
    """Password, then the two-factor step (a page of its own, checked too), then the code."""
    browser_sign_in(page, sweep.base, user.email)
    expect(page.get_by_label("Code")).to_be_visible()
    sweep.check(page, role, "/account/two-factor (sign-in step)")
    page.get_by_label("Code").fill(factories.two_factor_code(user))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/account/two-factor" not in url)


def test_every_page_meets_wcag_aa_at_every_size_in_both_schemes(live_server, browser, app):
    started = time.monotonic()
    world = build_world()
    sweep = Sweep(app=live_server.app, base=live_server.url)

    def context_page() -> Page:
        context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="en-GB",
                                      timezone_id="Europe/London")
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        return context.new_page()

    for role in ("anonymous", "customer", "staff", "admin"):
        page = context_page()
        if role == "customer":
            browser_sign_in(page, sweep.base, world.customer.email)
        elif role in ("staff", "admin"):
            _staff_sign_in(sweep, page, getattr(world, role), role)
        sweep.crawl(page, role, seeds(world, role))
        page.context.close()

    # The sign-in steps some staff see once: setting up two-factor, renewing an old password.
    page = context_page()
    browser_sign_in(page, sweep.base, world.new_staff.email)
    page.wait_for_url("**/account/two-factor/set-up")
    sweep.check(page, "staff", "/account/two-factor/set-up (first sign-in)")
    page.context.close()
    page = context_page()
    browser_sign_in(page, sweep.base, world.expired_staff.email)
    page.get_by_label("Code").fill(factories.two_factor_code(world.expired_staff))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/account/two-factor/new-password")
    sweep.check(page, "staff", "/account/two-factor/new-password (expired password)")
    page.context.close()

    seconds = time.monotonic() - started
    if REPORT:
        Path(REPORT).write_text(
            f"axe-core WCAG 2.0/2.1/2.2 A+AA: {sweep.pages} pages x {len(SIZES)} sizes x {len(SCHEMES)} schemes"
            f" in {seconds:.0f} s\n\n" + "\n".join(sweep.report) + "\n")
    missed = every_page_endpoint(live_server.app) - sweep.covered
    assert not missed, f"pages no role reached: {sorted(missed)}"
    assert sweep.failures == [], "\n".join(sweep.failures)


def test_the_site_follows_the_systems_colour_scheme_and_motion_setting(live_server, new_page):
    page = new_page(390, 844)
    page.goto(live_server.url + "/")
    background = "() => getComputedStyle(document.body).backgroundColor"
    light = page.evaluate(background)
    page.emulate_media(color_scheme="dark")
    dark = page.evaluate(background)
    assert light == "rgb(245, 247, 250)" and dark == "rgb(17, 21, 27)"
    indicator = """() => { const e = document.createElement('span'); e.className = 'htmx-indicator';
        document.body.append(e); return parseFloat(getComputedStyle(e).transitionDuration); }"""
    assert page.evaluate(indicator) == 0.2
    page.emulate_media(reduced_motion="reduce")
    assert page.evaluate(indicator) < 0.001


def test_the_accessibility_statement_is_linked_from_every_footer(live_server, new_page):
    page = new_page(390, 844)
    page.goto(live_server.url + "/book/")
    page.get_by_role("contentinfo").get_by_role("link", name="Accessibility statement").click()
    expect(page.get_by_role("heading", name="Accessibility statement", level=1)).to_be_visible()
    for what in ("How we test", "Report a problem"):
        expect(page.get_by_role("heading", name=what)).to_be_visible()
    expect(page.get_by_role("link", name=live_server.app.config["ACCESSIBILITY_CONTACT_EMAIL"])).to_have_attribute(
        "href", "mailto:" + live_server.app.config["ACCESSIBILITY_CONTACT_EMAIL"])
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_what_the_csp_refuses_is_caught(live_server, new_page):
    """The CSP watch the counter walks rely on (`page.csp_violations`) sees an inline style,
    what htmx would inject for its indicator if its configuration (base.html) allowed it."""
    page = new_page(390, 844)
    page.goto(live_server.url + "/")
    assert page.evaluate("htmx.config.includeIndicatorStyles") is False
    assert page.csp_violations == []  # type: ignore[attr-defined]
    page.evaluate("document.head.insertAdjacentHTML('beforeend', '<style>.x { color: red }</style>')")
    page.wait_for_function("() => true")
    assert any(v.startswith("style-src") for v in page.csp_violations)  # type: ignore[attr-defined]

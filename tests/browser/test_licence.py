"""Issue 3: the licence check in real Chromium. The customer submits a gov.uk check code; the
status shows "Checking…" at once and turns into Verified by itself (htmx polls the
self-replacing fragment) — no page reload, no console errors under the strict CSP.

The served app talks to the licence stand-in over HTTP through the real client; the check
runs on the in-process job thread, and the stand-in's WAITABIT code answers after a pause
so the pending state is there to be seen.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from app.models import LicenceStatus
from devtools.licence_standin import LicenceStandIn
from tests import factories

from .conftest import PHONE, TABLET, browser_sign_in

pytestmark = [pytest.mark.browser, pytest.mark.postgres]


@pytest.mark.parametrize("size", [PHONE, TABLET], ids=["phone", "tablet"])
def test_checking_turns_into_verified_without_a_reload(make_live_server, new_page, size):
    customer = factories.make_user("customer", licence_status=LicenceStatus.UNCHECKED.value)
    with LicenceStandIn(pause_seconds=1.5) as standin:
        server = make_live_server(LICENCE_API_URL=standin.url, LICENCE_API_KEY=standin.api_key)
        page = new_page(*size)
        browser_sign_in(page, server.url, customer.email)
        page.goto(f"{server.url}/account/profile")
        status = page.locator("#licence-status")
        expect(status).to_contain_text("Not checked yet")
        page.evaluate("window.stillTheSamePage = true")

        form = page.locator("#licence-form")
        form.get_by_label("Licence check code").fill("WAITABIT")
        form.get_by_role("button", name="Check my licence").click()

        expect(status).to_contain_text("Checking…")
        expect(status).to_have_attribute("data-state", "pending")
        expect(status).to_contain_text("Verified", timeout=10_000)
        expect(status).to_have_attribute("data-state", "verified")
        assert page.evaluate("window.stillTheSamePage") is True  # swapped in place, not reloaded
        assert page.console_errors == []  # type: ignore[attr-defined]
        assert [r["check_code"] for r in standin.requests] == ["WAITABIT"]


def test_a_refusal_explains_why(make_live_server, new_page):
    customer = factories.make_user("customer", licence_status=LicenceStatus.UNCHECKED.value)
    with LicenceStandIn() as standin:
        server = make_live_server(LICENCE_API_URL=standin.url, LICENCE_API_KEY=standin.api_key)
        page = new_page(*PHONE)
        browser_sign_in(page, server.url, customer.email)
        page.goto(f"{server.url}/account/licence")
        page.evaluate("window.stillTheSamePage = true")
        form = page.locator("#licence-form")
        form.get_by_label("Licence check code").fill("POINTS12")
        form.get_by_role("button", name="Check my licence").click()
        status = page.locator("#licence-status")
        expect(status).to_contain_text("Refused")
        expect(status).to_contain_text("12 penalty points")
        assert page.evaluate("window.stillTheSamePage") is True
        assert page.console_errors == []  # type: ignore[attr-defined]

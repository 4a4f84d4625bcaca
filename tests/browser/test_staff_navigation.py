"""Issue 14, §5 in real Chromium: the staff navigation on a phone, the counter's tablet and a
desktop. Staff sign in, see what waits ("Crypto review (1)") and open it from the menu; the
menu fits the screen (no sideways scroll) and offers staff only the pages they may open.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from app.extensions import db
from app.models import utcnow
from app.models.crypto import ChainPayment
from tests import factories

from .conftest import PHONE
from .test_fleet_admin import _fits_width, _sign_in_with_code

pytestmark = [pytest.mark.browser, pytest.mark.postgres]

COUNTER_TABLET = (820, 1180)
DESKTOP = (1280, 800)


def a_payment_to_review() -> None:
    """A payment seen on chain naming no booking: it waits for staff in the review queue."""
    db.session.add(ChainPayment(
        chain_id=1337, contract_address="0x" + "11" * 20, tx_hash="0x" + "ab" * 32, log_index=0,
        block_number=7, block_hash="0x" + "cd" * 32, booking_ref="0x" + "42" * 32,
        payer="0x" + "22" * 20, amount_wei=10**15, state="review", outcome="unknown_booking",
        review_reason="No price quote has this booking reference.", seen_at=utcnow()))
    db.session.commit()


def staff_menu(page: Page):
    return page.get_by_role("navigation", name="Staff")


@pytest.mark.parametrize("size", [PHONE, COUNTER_TABLET, DESKTOP], ids=["phone", "tablet", "desktop"])
def test_admin_opens_the_waiting_review_queue_from_the_staff_menu(live_server, new_page, tmp_path, size):
    a_payment_to_review()
    admin = factories.enrol_two_factor(factories.make_user("admin", branch=factories.make_branch()))
    page = new_page(*size)
    _sign_in_with_code(page, live_server.url, admin)
    menu = staff_menu(page)
    for name in ("Counter", "Fleet", "Prices", "Staff", "Reports", "Audit log"):
        expect(menu.get_by_role("link", name=name, exact=True)).to_be_visible()
    _fits_width(page, size[0])
    page.screenshot(path=str(tmp_path / f"staff-nav-admin-{size[0]}x{size[1]}.png"))

    menu.get_by_role("link", name="Crypto review (1)").click()
    expect(page.get_by_role("heading", name="Crypto payments to review")).to_be_visible()
    expect(staff_menu(page).get_by_role("link", name="Crypto review (1)")).to_have_attribute(
        "aria-current", "page")
    _fits_width(page, size[0])
    assert page.console_errors == []


def test_staff_see_only_the_pages_they_may_open(live_server, new_page):
    staff = factories.enrol_two_factor(factories.make_user("staff", branch=factories.make_branch()))
    page = new_page(*PHONE)
    _sign_in_with_code(page, live_server.url, staff)
    menu = staff_menu(page)
    expect(menu.get_by_role("link", name="Crypto review", exact=True)).to_be_visible()
    expect(menu.get_by_role("link", name="Audit log")).to_have_count(0)
    expect(menu.get_by_role("link", name="Prices")).to_have_count(0)
    _fits_width(page, PHONE[0])

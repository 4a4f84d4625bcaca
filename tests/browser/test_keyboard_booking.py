"""Issue 17: a booking with the keyboard only, in real Chromium. From the home page to a
confirmed card booking with Tab, Shift+Tab, Enter, Space and the arrow keys (and typing into
fields), never the mouse; at every key press on the portal's pages the focused element shows a
focus ring; a wrong password on the way is announced (the focus moves to the message, which is
an alert). The card is paid on the Stripe stand-in's Checkout page (Stripe's own page in
production), also by keyboard.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Locator, Page, expect
from sqlalchemy import select

from app.demo import load_demo
from app.extensions import db
from app.models import Hire, HireState
from devtools.stripe_standin import start
from tests import factories

from .conftest import PHONE

pytestmark = [pytest.mark.browser, pytest.mark.postgres]

MAX_TABS = 60  # more than any page here has focusable elements before its main action
FOCUS_RING = """() => { const e = document.activeElement;
  if (!e || e === document.body) return 'nothing has the focus';
  const s = getComputedStyle(e);
  const outline = s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2;
  return outline || s.boxShadow !== 'none' ? '' : 'no focus ring on ' + e.outerHTML.slice(0, 120); }"""


@pytest.fixture
def standin():
    server = start()
    yield server
    server.stop()


# The page as the customer sees it: its stylesheets (render-blocking, the focus ring is in the
# last one, static/css/a11y.css) applied and a frame drawn. A key press can land before that on a
# page that has just loaded (Playwright sees the elements as soon as they are laid out); the
# focus ring is judged on what is on the screen, not on a page that is not drawn yet.
STYLED = "() => [...document.querySelectorAll('link[rel=stylesheet]')].every(l => l.sheet !== null)"


def ring_shown(page: Page) -> None:
    page.wait_for_function(STYLED, polling="raf")  # checked in an animation frame: a frame is drawn
    problem = page.evaluate(FOCUS_RING)
    assert problem == "", f"{page.url}: {problem}"


def focused(target: Locator) -> bool:
    return target.count() == 1 and target.evaluate("e => e === document.activeElement")


def tab_to(page: Page, target: Locator, *, back: bool = False, ring: bool = True,
           not_via: Locator | None = None) -> None:
    """Tab (or Shift+Tab) until `target` has the focus, checking the focus ring at each stop;
    `not_via`: an element the way there must not pass (the focus went back to the page's top)."""
    for _ in range(MAX_TABS):
        page.keyboard.press("Shift+Tab" if back else "Tab")
        if ring:
            ring_shown(page)
        if focused(target):
            return
        if not_via is not None and focused(not_via):
            raise AssertionError(f"{page.url}: Tab went to {not_via} on the way to {target}")
    raise AssertionError(f"{page.url}: Tab never reached {target}")


def test_a_card_booking_from_the_home_page_with_the_keyboard_only(app, make_live_server, new_page, standin):
    live = make_live_server(STRIPE_API_BASE=standin.url, STRIPE_SECRET_KEY="sk_test_keyboard",
                            STRIPE_WEBHOOK_SECRET=standin.webhook_secret, PAYMENT_STATUS_POLL_SECONDS=1)
    standin.webhook_url = f"{live.url}/pay/webhooks/stripe"
    load_demo()
    customer = factories.make_user("customer", full_name="Kim Keys")

    page = new_page(*PHONE)
    page.goto(live.url + "/")
    # The first Tab offers the skip link, with its ring.
    page.keyboard.press("Tab")
    ring_shown(page)
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()

    # The home page is the search: its dates are filled in; search with them.
    tab_to(page, page.locator("#main").get_by_role("button", name="Search cars"))
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Find a car")).to_be_visible()

    # The results for the default dates are there; choose the first car.
    first = page.locator(".car-card").first.get_by_role("link", name="Choose")
    expect(first).to_be_visible()
    tab_to(page, first)
    page.keyboard.press("Enter")
    book = page.get_by_role("link", name="Sign in to book")
    expect(book).to_be_visible()

    # Extras: a radio group moves with the arrow keys, a checkbox ticks with Space.
    radios = page.locator("#extras-form input[type=radio]")
    if radios.count() > 1:
        tab_to(page, radios.first if radios.first.is_checked() else page.locator("#extras-form input[type=radio]:checked"))
        page.keyboard.press("ArrowDown")
        ring_shown(page)
        expect(radios.nth(1)).to_be_checked()
        chosen = radios.nth(1).get_attribute("value")
        expect(book).to_have_attribute("href", re.compile(f"{radios.nth(1).get_attribute('name')}={chosen}"))
        expect(radios.nth(1)).to_be_focused()  # the price refresh leaves the customer where they were
        page.keyboard.press("ArrowUp")
        expect(radios.first).to_be_checked()
        expect(book).not_to_have_attribute("href", re.compile(f"={chosen}"))  # the price followed
        expect(radios.first).to_be_focused()
        ring_shown(page)
    # From the extras on to the button, not from the top of the page again.
    tab_to(page, book, not_via=page.get_by_role("link", name="Skip to content"))
    page.keyboard.press("Enter")

    # Sign in; a wrong password first: the message is announced (focus moves to the alert).
    page.wait_for_url("**/account/sign-in**")
    email = page.get_by_label("Email")
    expect(email).to_be_visible()
    tab_to(page, email)
    page.keyboard.type(customer.email)
    tab_to(page, page.get_by_label("Password", exact=True))
    page.keyboard.type("not-the-password")
    page.keyboard.press("Enter")
    alert = page.get_by_role("alert")
    expect(alert).to_be_focused()
    expect(alert).not_to_be_empty()
    ring_shown(page)
    tab_to(page, page.get_by_label("Password", exact=True))
    page.keyboard.type(factories.PASSWORD)
    page.keyboard.press("Enter")

    # Check and confirm, then pay by card.
    confirm = page.get_by_role("button", name="Confirm and continue to payment")
    expect(confirm).to_be_visible()
    tab_to(page, confirm)
    page.keyboard.press("Enter")
    by_card = page.locator("#pay-by-card")
    expect(by_card).to_be_visible()
    tab_to(page, by_card)
    page.keyboard.press("Enter")
    pay = page.get_by_role("button", name="Confirm and pay")
    expect(pay).to_be_visible()
    tab_to(page, pay)
    page.keyboard.press("Space")

    # The Checkout page (the stand-in's; Stripe's own in production): typed, Tab, Enter.
    page.wait_for_url(f"{standin.url}/checkout/pay/**")
    card = page.get_by_label("Card number")
    tab_to(page, card, ring=False)
    page.keyboard.type("4242 4242 4242 4242")
    page.keyboard.press("Tab")
    page.keyboard.type("12 / 34")
    page.keyboard.press("Tab")
    page.keyboard.type("123")
    page.keyboard.press("Enter")

    page.wait_for_url(f"{live.url}/pay/**/return**")
    expect(page.locator("#payment-status")).to_contain_text("Confirmed", timeout=15_000)
    page.keyboard.press("Tab")
    ring_shown(page)
    db.session.expire_all()
    hire = db.session.scalars(select(Hire).where(Hire.customer_id == customer.id)).one()
    assert hire.state == HireState.CONFIRMED.value
    assert page.console_errors == []  # type: ignore[attr-defined]

"""Issue 8 in real Chromium: workflow 5 (an admin adds a car with a photo; it is in the fleet
list and in customer search), and a joiner and leaver (an admin invites a member of staff,
who sets a password, enrols TOTP from the QR page and signs in; the admin deactivates them
and their open session is thrown out). No console errors (so the CSP admits every page).
"""

from __future__ import annotations

import re

import pyotp
import pytest
from PIL import Image
from playwright.sync_api import Page, expect
from sqlalchemy import select

from app.extensions import db
from app.models import OutboundEmail, User
from tests import factories
from tests.test_booking import FMT, local_day

from .conftest import PHONE, TABLET, browser_sign_in

pytestmark = [pytest.mark.browser, pytest.mark.postgres]


def _sign_in_with_code(page: Page, base_url: str, user: User) -> None:
    browser_sign_in(page, base_url, user.email)
    expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()
    page.locator("input[name=code]").fill(factories.two_factor_code(user))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/account/two-factor" not in url)


def _fits_width(page: Page, width: int) -> None:
    assert page.evaluate("document.scrollingElement.scrollWidth") <= width


def test_admin_adds_a_car_with_a_photo_and_customers_find_it(live_server, new_page, tmp_path):
    branch = factories.make_branch("LHR")
    compact = factories.make_car_class("compact", daily_rate_pence=3900)
    factories.make_car(plate="XY99ZZZ", make="Ford", model="Fiesta", car_class=compact, branch=branch)
    admin = factories.enrol_two_factor(factories.make_user("admin", full_name="Alex Admin"))
    photo = tmp_path / "golf.jpg"
    Image.new("RGB", (320, 200), (30, 90, 200)).save(photo, "JPEG")

    width, height = TABLET
    page = new_page(width, height)
    _sign_in_with_code(page, live_server.url, admin)
    page.goto(f"{live_server.url}/fleet/cars/new")
    form = page.locator("#car-form")
    form.get_by_label("Registration plate").fill("ab12 cde")
    form.get_by_label("VIN").fill("WVWZZZ1KZAW000123")
    form.get_by_label("Make").fill("Volkswagen")
    form.get_by_label("Model", exact=True).fill("Golf")
    form.get_by_label("Class").select_option(label=f"{compact.name} (compact)")
    form.get_by_label("Home branch").select_option(label=branch.name)
    form.get_by_label("CO2 (g/km)").fill("128")
    form.get_by_label("Odometer (miles)").fill("1200")
    form.get_by_label("Photos").set_input_files(str(photo))
    form.get_by_role("button", name="Add the car").click()
    expect(page.get_by_text("AB12 CDE is in the fleet.")).to_be_visible()
    cover = page.locator("#photos img").first
    expect(cover).to_be_visible()
    # Visible (its size is set) is not loaded: wait until the browser has the picture.
    page.wait_for_function("img => img.complete", arg=cover.element_handle())
    assert page.evaluate("img => img.naturalWidth", cover.element_handle()) == 320

    # The fleet list filters as the admin types.
    page.goto(f"{live_server.url}/fleet/")
    rows = page.locator("#fleet-results tbody tr")
    expect(rows).to_have_count(2)
    with page.expect_response(lambda r: "/fleet/?" in r.url and r.request.headers.get("hx-request")):
        page.locator("#q").fill("golf")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("AB12 CDE")
    assert "q=golf" in page.url
    _fits_width(page, width)
    assert page.console_errors == []

    # A customer searching for those dates sees it, with its photo.
    customer = new_page(*PHONE)
    customer.goto(f"{live_server.url}/book/")
    search = customer.locator("#search-form")
    with customer.expect_response(lambda r: "/book/?" in r.url and r.request.headers.get("hx-request")):
        search.get_by_label("Pick up", exact=True).fill(local_day(12).strftime(FMT))
        search.get_by_label("Return", exact=True).fill(local_day(15).strftime(FMT))
    card = customer.locator("#results .car-card", has_text="Volkswagen Golf")
    expect(card).to_have_count(1)
    image = card.locator("img")
    expect(image).to_be_visible()
    assert "/media/cars/" in image.get_attribute("src")
    customer.wait_for_function("img => img.complete", arg=image.element_handle())
    assert customer.evaluate("img => img.naturalWidth", image.element_handle()) == 320
    assert customer.console_errors == []


def test_invite_enrol_sign_in_then_deactivate(live_server, new_page):
    branch = factories.make_branch("MAN")
    admin = factories.enrol_two_factor(factories.make_user("admin", full_name="Alex Admin"))

    admin_page = new_page(*TABLET)
    _sign_in_with_code(admin_page, live_server.url, admin)
    admin_page.goto(f"{live_server.url}/admin/staff")
    admin_page.get_by_role("link", name="Invite a member of staff").click()
    form = admin_page.locator("#invite-form")
    form.get_by_label("Full name").fill("Sam Joiner")
    form.get_by_label("Email").fill("sam.joiner@example.com")
    form.get_by_label("Role").select_option("staff")
    form.get_by_label("Branch").select_option(label=branch.name)
    form.get_by_role("button", name="Send the invitation").click()
    expect(admin_page.get_by_text("Sam Joiner is invited")).to_be_visible()
    expect(admin_page.locator("#staff-table")).to_contain_text("Invited")

    db.session.expire_all()
    email = db.session.scalar(select(OutboundEmail).where(OutboundEmail.to_address == "sam.joiner@example.com"))
    link = re.search(r"https?://\S+(/account/invite/\S+)", email.body_text).group(1)

    # The joiner, on their phone: a password, then the QR page, then a code.
    width, height = PHONE
    joiner = new_page(width, height)
    joiner.goto(f"{live_server.url}{link}")
    expect(joiner.get_by_role("heading", name="Welcome, Sam Joiner")).to_be_visible()
    joiner.get_by_label("New password", exact=True).fill("Counter-shift-passphrase-77")
    joiner.get_by_label("Repeat new password").fill("Counter-shift-passphrase-77")
    joiner.get_by_role("button", name="Set password").click()
    expect(joiner.get_by_role("heading", name="Set up two-factor sign-in")).to_be_visible()
    expect(joiner.locator(".qr svg")).to_be_visible()
    secret = re.sub(r"\s", "", joiner.locator("#totp-secret").inner_text())
    joiner.get_by_label("Code").fill(pyotp.TOTP(secret).now())
    joiner.get_by_role("button", name="Turn on two-factor sign-in").click()
    expect(joiner.locator("#recovery-codes li")).to_have_count(10)
    joiner.get_by_role("link", name="I have saved them: continue").click()
    joiner.wait_for_url(f"{live_server.url}/counter/")
    _fits_width(joiner, width)
    assert joiner.console_errors == []

    # The admin deactivates the leaver; the open session is thrown out on its next request.
    db.session.expire_all()
    sam = db.session.scalar(select(User).where(User.email == "sam.joiner@example.com"))
    admin_page.goto(f"{live_server.url}/admin/staff/{sam.id}")
    admin_page.locator("#deactivate-form").get_by_role("button").click()
    expect(admin_page.get_by_text("Sam Joiner is deactivated")).to_be_visible()
    joiner.goto(f"{live_server.url}/counter/")
    joiner.wait_for_url(re.compile(r"/account/sign-in"))
    expect(joiner.get_by_role("heading", name="Sign in")).to_be_visible()
    assert admin_page.console_errors == []

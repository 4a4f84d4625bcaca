"""Issue 18 in real Chromium, from the home page: online check-in (details, terms, licence
photo, an additional driver), extending a hire after its confirm step, and the customer's own
data (download the ZIP, then delete the account). No console errors along the way."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import expect
from sqlalchemy import select

from app.booking.seed import seed_rate_tables
from app.extensions import db
from app.models import Hire, HireCheckin, User, utcnow
from devtools.licence_standin import LicenceStandIn
from tests import factories
from tests.test_booking import as_utc, local_day

from .conftest import PHONE, browser_sign_in

pytestmark = [pytest.mark.browser, pytest.mark.postgres]


def _hire(days_ahead_hours: float | None = None, start=None, days: int = 2,
          state=factories.HireState.CONFIRMED):
    branch = factories.make_branch("LHR")
    car_class = factories.make_car_class("compact", daily_rate_pence=3900)
    car = factories.make_car(car_class=car_class, branch=branch, make="Volkswagen", model="Golf")
    seed_rate_tables()
    db.session.commit()
    customer = factories.make_user("customer", full_name="Bea Browser")
    start = start or utcnow() + timedelta(hours=days_ahead_hours)
    return factories.make_hire(car=car, customer=customer, start=start, days=days, state=state)


def _home_then_my_bookings(page, base_url: str) -> None:
    page.goto(f"{base_url}/")
    page.get_by_role("link", name="My bookings").click()
    expect(page.get_by_role("heading", name="My bookings")).to_be_visible()


def test_online_check_in_from_my_bookings(make_live_server, new_page, tmp_path):
    with LicenceStandIn() as licence:
        server = make_live_server(LICENCE_API_URL=licence.url, LICENCE_API_KEY=licence.api_key)
        with server.app.app_context():
            hire = _hire(days_ahead_hours=20)
            ref, email = hire.reference, hire.customer.email
        photo = tmp_path / "licence.jpg"
        Image.new("RGB", (800, 500), (30, 90, 200)).save(photo, "JPEG")

        page = new_page(*PHONE)
        browser_sign_in(page, server.url, email)
        _home_then_my_bookings(page, server.url)
        page.get_by_role("link", name="Check in online").click()
        expect(page.get_by_role("heading", name=f"Check in for {ref}")).to_be_visible()
        expect(page.locator("#terms-text")).to_contain_text("terms of hire (version 1)")
        # Sent without the licence photo: said beside the field.
        page.get_by_label("My details above are correct").check()
        page.get_by_label("I have read and accept the terms of hire").check()
        page.get_by_role("button", name="Check in").click()
        expect(page.get_by_text("Add a photo of the front of your driving licence.")).to_be_visible()
        page.get_by_label("My details above are correct").check()
        page.get_by_label("I have read and accept the terms of hire").check()
        page.get_by_label("Photo of the front of your driving licence").set_input_files(str(photo))
        page.get_by_role("button", name="Check in").click()
        expect(page.locator("#checked-in")).to_contain_text("You are checked in online")
        expect(page.get_by_role("img", name="Your licence photo")).to_be_visible()

        page.get_by_label("Driver's full name").fill("Sam Smith")
        page.get_by_label("Driving licence number").fill("SMITH802140JJ9AB")
        page.get_by_label("Their gov.uk check code").fill("ABCD2345")
        page.get_by_role("button", name="Add driver").click()
        expect(page.locator(".driver")).to_contain_text("Sam Smith")
        page.reload()
        expect(page.locator(".driver")).to_contain_text("verified")
        assert page.console_errors == []
        with server.app.app_context():
            assert db.session.scalar(select(HireCheckin.completed_at)) is not None


def test_extend_a_hire_from_my_bookings(live_server, new_page):
    with live_server.app.app_context():
        hire = _hire(start=as_utc(local_day(3)))
        ref, email, old_total = hire.reference, hire.customer.email, hire.total_pence
    page = new_page(*PHONE)
    browser_sign_in(page, live_server.url, email)
    _home_then_my_bookings(page, live_server.url)
    page.locator(f"#booking-{ref}").get_by_role("link", name="Extend").click()
    expect(page.get_by_role("heading", name=f"Extend {ref}")).to_be_visible()
    page.get_by_label("New return time").fill(local_day(6).strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Check the price").click()
    price = page.locator("#extend-price")
    expect(price).to_be_visible()
    with live_server.app.app_context():  # nothing moves before the confirm step
        assert db.session.scalar(select(Hire.end_at).where(Hire.reference == ref)) == as_utc(local_day(5))
    page.get_by_role("button", name=f"Extend for {price.inner_text()}").click()
    page.wait_for_url(f"**/pay/{ref}")  # no saved card: the payment step asks for the difference
    with live_server.app.app_context():
        extended = db.session.scalar(select(Hire).where(Hire.reference == ref))
        assert extended.end_at == as_utc(local_day(6)) and extended.total_pence > old_total
    assert page.console_errors == []


def test_download_my_data_then_delete_my_account(live_server, new_page):
    with live_server.app.app_context():
        customer = factories.make_user("customer", full_name="Dee Delete")
        email, user_id = customer.email, customer.id
    page = new_page(*PHONE)
    browser_sign_in(page, live_server.url, email)
    page.goto(f"{live_server.url}/")
    page.get_by_role("link", name="My account").click()
    page.get_by_role("link", name="My data: download it, or delete my account").click()
    page.get_by_role("button", name="Prepare my data").click()
    link = page.get_by_role("link", name="Download my data (ZIP)")
    expect(link).to_be_visible()  # the page polls until the job has built it
    with page.expect_download() as download:
        link.click()
    with zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes())) as archive:
        assert json.loads(archive.read("data.json"))["profile"]["full_name"] == "Dee Delete"

    page.get_by_label("I understand that my account and personal data will be deleted for good").check()
    page.get_by_label("Your password").fill(factories.PASSWORD)
    page.get_by_role("button", name="Delete my account").click()
    expect(page.get_by_text("Your account is deleted.")).to_be_visible()
    assert page.console_errors == []
    with live_server.app.app_context():
        assert db.session.get(User, user_id).erased_at is not None


def test_extending_a_car_already_out_says_until_when_and_extends_that_far(live_server, new_page,
                                                                           tmp_path):
    """Picked up yesterday; someone else has the car from day 4: the customer asks for day 6,
    is told until when they can keep it and what to do for longer, and takes that instead."""
    with live_server.app.app_context():
        hire = _hire(start=as_utc(local_day(-1)), days=3, state=factories.HireState.ACTIVE)
        factories.make_hire(car=hire.car, start=as_utc(local_day(4)), days=2)
        db.session.commit()
        ref, email = hire.reference, hire.customer.email
    page = new_page(*PHONE)
    browser_sign_in(page, live_server.url, email)
    _home_then_my_bookings(page, live_server.url)
    page.locator(f"#booking-{ref}").get_by_role("link", name="Extend").click()
    page.get_by_label("New return time").fill(local_day(6).strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Check the price").click()
    expect(page.get_by_text("It cannot be swapped from here, as it is already with you")).to_be_visible()
    page.screenshot(path=str(tmp_path / "phone-extend-car-out.png"), full_page=True)
    page.get_by_role("link", name="Extend until").click()
    price = page.locator("#extend-price")
    expect(price).to_be_visible()
    page.get_by_role("button", name=f"Extend for {price.inner_text()}").click()
    page.wait_for_url(f"**/pay/{ref}")
    with live_server.app.app_context():
        until = as_utc(local_day(4)) - timedelta(minutes=60)  # less the cleaning buffer
        assert db.session.scalar(select(Hire.end_at).where(Hire.reference == ref)) == until
    assert page.console_errors == []

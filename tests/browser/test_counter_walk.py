"""Issue 14, section 3: a day at the counter on the tablet, in real Chromium, from the board
and by visible controls only (found by role or label): a pickup (licence re-check, photo ID,
condition, photo, signature, hand-over) and a return with late and fuel charges, settled
against the deposit hold. The confirmations are in-page dialogs with the amounts; the native
`confirm()` never appears.

The served app reaches the Stripe stand-in (hires paid through Checkout, deposit holds,
captures) and the licence stand-in (whose WAITABIT code answers after a pause, so the pending
state is there to be seen) over HTTP through the real clients; jobs run on the in-process
thread. Set COUNTER_SHOTS_DIR to keep screenshots of the pickup page and its dialog.
"""

from __future__ import annotations

import base64
import os
import re
import time
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from app.extensions import db
from app.filters import money
from app.models import Hire, LicenceCheck, Payment, utcnow
from app import payments
from app.counter import car_return, inspections
from devtools.licence_standin import LicenceStandIn
from tests import factories
from tests.browser.test_counter import audit, draw_signature, photo_file
from tests.test_counter import signature_png
from tests.test_counter_money import picked_up
from tests.test_payments_card import paid_hire, standin, stripe_app  # noqa: F401 (fixtures)

from .conftest import PHONE, browser_sign_in

pytestmark = [pytest.mark.browser, pytest.mark.postgres]

PORTRAIT = (820, 1180)
SHOTS = os.environ.get("COUNTER_SHOTS_DIR", "")


def shot(page: Page, name: str, *, full_page: bool = True) -> None:
    if SHOTS:  # caret and animations left alone: hiding them injects a style the page's CSP refuses
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=full_page,
                        caret="initial", animations="allow")


def eventually(check, timeout: float = 10.0):
    """Wait for a background job's result (a thread of the served app): its value when truthy."""
    deadline = time.monotonic() + timeout
    while True:
        db.session.expire_all()
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


@pytest.fixture
def served(make_live_server, standin):  # noqa: F811 (the Stripe stand-in fixture)
    """The portal pointed at the Stripe stand-in and at a licence stand-in."""
    with LicenceStandIn(pause_seconds=3) as licence_api:  # time to see "Checking…"
        yield make_live_server(STRIPE_API_BASE=standin.url, STRIPE_SECRET_KEY="sk_test_card_tests",
                               STRIPE_WEBHOOK_SECRET=standin.webhook_secret,
                               LICENCE_API_URL=licence_api.url, LICENCE_API_KEY=licence_api.api_key)


def staff_at_the_board(page: Page, server, staff) -> list[str]:
    """Sign in with password and authenticator code; the board is where staff land.
    Returns the native dialogs the page opens from then on (there should be none)."""
    native: list[str] = []
    page.on("dialog", lambda dialog: (native.append(dialog.message), dialog.dismiss()))
    browser_sign_in(page, server.url, staff.email)
    page.get_by_label("Code").fill(factories.two_factor_code(staff))
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Counter", exact=True)).to_be_visible()
    return native


def step_done(page: Page, label: str):
    return expect(page.get_by_role("list", name="Steps").get_by_role("listitem").filter(has_text=label))


def test_a_pickup_and_a_return_from_the_board(stripe_app, client, auth, standin, served, new_page,  # noqa: F811
                                              tmp_path):
    now = utcnow()
    branch = factories.make_branch()
    pat = auth.sign_in_as("customer", full_name="Pat Pickup")
    out = paid_hire(client, standin, pat, car=factories.make_car(branch=branch, odometer_miles=20_000),
                    start=now + timedelta(hours=1), days=2)
    auth.sign_out()
    robin = auth.sign_in_as("customer", full_name="Robin Return")
    # Out three days ago with a full tank and 100 miles; due back 90 minutes ago: two started hours late.
    back = paid_hire(client, standin, robin, car=factories.make_car(branch=branch),
                     start=now - timedelta(days=3, minutes=90), days=3)
    hold = payments.place_deposit_hold(back)  # the scheduler holds the deposit the day before
    assert hold.state == "authorised"
    picked_up(back)
    staff = factories.enrol_two_factor(factories.make_user("staff", full_name="Sam Counter", branch=branch))
    cfg = served.app.config
    late = 2 * cfg["LATE_FEE_PER_HOUR_PENCE"]
    fuel = 2 * cfg["FUEL_PRICE_PER_EIGHTH_PENCE"]
    owed = late + fuel + cfg["REFUELLING_FEE_PENCE"]
    deposit = hold.amount_pence

    page = new_page(*PORTRAIT)
    native = staff_at_the_board(page, served, staff)

    # --- the pickup ---------------------------------------------------------------------------
    page.get_by_role("link", name=re.compile(out.reference)).click()
    expect(page.get_by_role("heading", name=f"{out.reference} · Pickup")).to_be_visible()
    status = page.locator("#licence-status")
    expect(status).to_contain_text("Not checked yet")
    hand_over = page.get_by_role("button", name="Hand over the keys")
    expect(hand_over).to_be_disabled()
    page.evaluate("window.stillTheSamePage = true")

    page.get_by_label("Licence check code").fill("WAITABIT")  # a fresh code from the customer's phone
    page.get_by_role("button", name="Check the licence now").click()
    expect(status).to_contain_text("Checking…")
    shot(page, "pickup-checking-820x1180")
    expect(status).to_contain_text("Verified")
    expect(status).to_contain_text("by Sam Counter")
    assert page.evaluate("window.stillTheSamePage") is True  # in place, not a reload

    page.get_by_label("Photo ID seen and matches the booking").check()
    page.get_by_role("button", name="Save ID check").click()
    expect(page.get_by_text("Photo ID checked by Sam Counter")).to_be_visible()
    step_done(page, "Licence and ID").to_contain_text("✓")

    page.get_by_label("Odometer (miles)").fill("20010")
    page.get_by_label("Fuel").select_option("8")
    page.get_by_role("button", name="Save condition").click()
    step_done(page, "Condition out").to_contain_text("✓")

    page.get_by_label("Part of the car").select_option("front")
    page.get_by_label("Photo", exact=True).set_input_files(photo_file(tmp_path, "front.jpg", (180, 20, 20)))
    page.get_by_role("button", name="Add photo").click()
    expect(page.get_by_role("img", name="front", exact=True)).to_be_visible()

    draw_signature(page)
    page.get_by_role("button", name="Save signature").click()
    expect(page.get_by_text("Signed at")).to_be_visible()
    expect(hand_over).to_be_enabled()
    shot(page, "pickup-ready-820x1180")

    # The confirmation says what happens, and going back changes nothing.
    hand_over.click()
    dialog = page.get_by_role("dialog", name=f"Hand over {out.car.plate} to Pat Pickup?")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("row", name="Rental paid")).to_contain_text(money(out.total_pence))
    expect(dialog.get_by_role("row", name="Deposit")).to_contain_text(money(out.deposit_pence))
    expect(dialog).to_contain_text("Held on the customer's saved card when you hand over (not charged).")
    shot(page, "handover-dialog-820x1180", full_page=False)
    assert audit(page) == []
    dialog.get_by_role("button", name="Go back").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("heading", name=f"{out.reference} · Pickup")).to_be_visible()

    hand_over.click()
    dialog.get_by_role("button", name="Confirm hand-over").click()
    expect(page.get_by_role("heading", name=f"{out.reference} · Return")).to_be_visible()
    expect(page.locator(".status")).to_have_text("active")
    # The whole pickup under the strict CSP: htmx injected no inline style (issue 17).
    assert page.evaluate("htmx.config.includeIndicatorStyles") is False
    assert page.csp_violations == [] and page.console_errors == []  # type: ignore[attr-defined]
    # The hand-over put the deposit on the customer's saved card.
    assert eventually(lambda: db.session.scalar(select(Payment.state).where(
        Payment.hire_id == out.id, Payment.kind == "deposit_hold"))) == "authorised"

    # --- the return ---------------------------------------------------------------------------
    page.get_by_role("link", name="Counter board").click()
    overdue = page.get_by_role("link", name=re.compile(back.reference))
    expect(overdue).to_contain_text("overdue")
    overdue.click()
    expect(page.get_by_role("heading", name=f"{back.reference} · Return")).to_be_visible()
    page.get_by_label("Odometer (miles)").fill("300")
    page.get_by_label("Fuel").select_option("6")
    page.get_by_role("button", name="Save condition").click()
    charges = page.get_by_role("table").filter(has_text="Charge")
    # How late and how the fee adds up (issue 17); each charge has its own row to waive it.
    late_row = charges.get_by_role("row", name=re.compile(r"^Late return: 1 h 3\d min late \(2 started hours × £15\.00\)"))
    expect(late_row).to_contain_text(money(late))
    expect(charges.get_by_role("row", name=re.compile(r"^Fuel: 2\/8 of a tank short"))).to_contain_text(money(fuel))
    expect(charges.get_by_role("row", name=re.compile("^Refuelling service"))).to_contain_text(
        money(cfg["REFUELLING_FEE_PENCE"]))
    expect(charges.get_by_label(re.compile("^Reason for waiving Late return"))).to_be_visible()

    page.get_by_role("button", name=f"Settle {money(owed)}").click()
    dialog = page.get_by_role("dialog", name=f"Settle {back.reference}?")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("row", name="Total")).to_contain_text(money(owed))
    expect(dialog.get_by_role("row", name="Taken from the deposit")).to_contain_text(money(owed))
    expect(dialog.get_by_role("row", name="Deposit released")).to_contain_text(money(deposit - owed))
    shot(page, "settle-dialog-820x1180", full_page=False)
    assert audit(page) == []
    dialog.get_by_role("button", name="Confirm and settle").click()
    expect(page.get_by_role("heading", name="Settled")).to_be_visible()
    expect(page.get_by_role("row", name="Total")).to_contain_text(money(owed))

    assert native == []  # no native confirm() anywhere
    assert page.console_errors == [] and page.csp_violations == []  # type: ignore[attr-defined]
    captures = eventually(lambda: standin.requests("POST", f"/v1/payment_intents/{hold.provider_ref}/capture"))
    assert [c["params"]["amount_to_capture"] for c in captures] == [str(owed)]
    # Settling closes the hire once its money has moved: at once if the capture job was
    # quicker, else at the scheduler's next tick (run here). Either way it ends closed.
    assert eventually(lambda: db.session.get(Payment, hold.id).state == "succeeded")
    car_return.close_settled_returns(utcnow())
    db.session.expire_all()
    assert db.session.get(Hire, back.id).state == "closed"


def test_hand_over_opens_in_place_when_the_licence_check_comes_back(served, new_page):
    """The check is the last step done: its answer enables the hand-over without a reload (phone width)."""
    branch = factories.make_branch()
    staff = factories.enrol_two_factor(factories.make_user("staff", full_name="Sam Counter", branch=branch))
    customer = factories.make_user("customer", full_name="Pat Pickup")
    hire = factories.make_hire(car=factories.make_car(branch=branch), customer=customer,
                               start=utcnow() + timedelta(hours=1), days=2)
    # The code the customer shared when booking; the counter re-checks with it.
    db.session.add(LicenceCheck(user_id=customer.id, licence_number="CUSTO907150J99AB", check_code="WAITABIT",
                                idempotency_key="booking-check", status="verified", completed_at=utcnow()))
    now = utcnow()
    insp = inspections.open_inspection(hire, inspections.PICKUP, by=staff, now=now)
    inspections.tick_id_checked(insp, by=staff, now=now)
    inspections.record_condition(insp, by=staff, now=now, odometer=1000, fuel_eighths=8,
                                 checklist={p: {"state": "ok", "note": ""} for p in served.app.config["CONDITION_PANELS"]})
    inspections.record_signature(insp, png=base64.b64decode(signature_png().split(",", 1)[1]), by=staff, now=now)

    page = new_page(*PHONE)
    native = staff_at_the_board(page, served, staff)
    page.get_by_role("link", name=re.compile(hire.reference)).click()
    hand_over = page.get_by_role("button", name="Hand over the keys")
    expect(hand_over).to_be_disabled()
    expect(page.get_by_text("The licence has not been checked for this hire yet.").first).to_be_visible()
    page.evaluate("window.stillTheSamePage = true")

    page.get_by_role("button", name="Check the licence now").click()  # the code they shared last
    expect(page.locator("#licence-status")).to_contain_text("Checking…")
    expect(page.get_by_text("The licence check is still running.")).to_be_visible()
    expect(hand_over).to_be_disabled()
    shot(page, "pickup-checking-390x844")
    expect(hand_over).to_be_enabled()
    step_done(page, "Licence and ID").to_contain_text("✓")
    assert page.evaluate("window.stillTheSamePage") is True
    shot(page, "pickup-ready-390x844")

    hand_over.click()
    dialog = page.get_by_role("dialog", name=f"Hand over {hire.car.plate} to Pat Pickup?")
    expect(dialog.get_by_role("button", name="Confirm hand-over")).to_be_in_viewport()
    expect(dialog).to_contain_text("No saved card: take the deposit another way.")
    shot(page, "handover-dialog-390x844", full_page=False)
    dialog.get_by_role("button", name="Confirm hand-over").click()
    expect(page.get_by_role("heading", name=f"{hire.reference} · Return")).to_be_visible()
    assert native == [] and page.console_errors == [] and page.csp_violations == []  # type: ignore[attr-defined]

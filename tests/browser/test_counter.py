"""The counter on a tablet, in real Chromium: a pickup and a return end to end, with photos
taken through the file input, a signature drawn on the screen, and axe-core's audit."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import expect

from app.extensions import db
from app.models import Hire, LicenceCheck
from tests import factories
from tests.browser.conftest import browser_sign_in

pytestmark = [pytest.mark.browser, pytest.mark.postgres]

PORTRAIT = (820, 1180)
LANDSCAPE = (1180, 820)
AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"
MIN_TARGET_PX = 44


def photo_file(tmp_path, name: str, colour) -> str:
    path = tmp_path / name
    Image.new("RGB", (640, 480), colour).save(path, "JPEG")
    return str(path)


def audit(page) -> list[str]:
    """Serious or critical accessibility violations axe-core finds on the page."""
    assert AXE.exists(), "run `npm ci --prefix tests/browser` (done by .ci/run)"
    page.evaluate(AXE.read_text())  # through DevTools, so the page's strict CSP stays on
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [f"{v['id']}: {v['help']} ({len(v['nodes'])}×)" for v in result["violations"]
            if v["impact"] in ("serious", "critical")]


def small_targets(page) -> list[str]:
    """Visible buttons, inputs, selects and step links smaller than 44 px on either side."""
    return page.evaluate(f"""() => Array.from(document.querySelectorAll(
        '#main button, #main input:not([type=hidden]):not([type=checkbox]), #main select, #main summary, .board-link'))
      .filter(el => el.offsetParent !== null)
      .map(el => [el, el.getBoundingClientRect()])
      .filter(([el, r]) => r.height < {MIN_TARGET_PX} || r.width < {MIN_TARGET_PX})
      .map(([el, r]) => el.outerHTML.slice(0, 80) + ' ' + Math.round(r.width) + 'x' + Math.round(r.height))""")


def draw_signature(page) -> None:
    canvas = page.locator("canvas.signature-pad")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    x, y = box["x"] + 30, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    for i in range(1, 30):
        page.mouse.move(x + i * 12, y + (15 if i % 2 else -15), steps=2)
    page.mouse.up()


@pytest.mark.parametrize("size", [PORTRAIT, LANDSCAPE], ids=["portrait", "landscape"])
def test_pickup_and_return_on_a_tablet(live_server, new_page, tmp_path, size):
    with live_server.app.app_context():
        branch = factories.make_branch()
        staff = factories.enrol_two_factor(factories.make_user("staff", branch=branch))
        car = factories.make_car(branch=branch, odometer_miles=20_000)
        hire = factories.make_hire(car=car, start=datetime.now(timezone.utc) + timedelta(hours=1), days=2,
                                   customer=factories.make_user("customer", full_name="Pat Pickup"))
        db.session.add(LicenceCheck(user_id=hire.customer_id, hire_id=hire.id, licence_number="CUSTO907150J99AB",
                                    check_code="ABCD1234", idempotency_key=f"browser-{hire.id}",
                                    status="verified", completed_at=datetime.now(timezone.utc)))
        db.session.commit()
        ref, staff_email, plate = hire.reference, staff.email, car.plate
        staff_id = staff.id

    page = new_page(*size)
    native_dialogs: list[str] = []  # confirmations are in the page; a native one would be dismissed
    page.on("dialog", lambda dialog: (native_dialogs.append(dialog.message), dialog.dismiss()))
    browser_sign_in(page, live_server.url, staff_email)
    with live_server.app.app_context():  # staff sign in with their authenticator's code
        code = factories.two_factor_code(db.session.get(factories.User, staff_id))
    page.locator("input[name=code]").fill(code)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server.url}/counter/**")
    page.goto(f"{live_server.url}/counter/")
    assert audit(page) == []
    assert small_targets(page) == []

    # The search box filters as you type.
    page.fill("#q", plate[:5])
    expect(page.locator(".board-link", has_text=ref)).to_be_visible()

    # Tap 1: the booking; the first question (licence and ID) is right there.
    page.locator(".board-link", has_text=ref).click()
    expect(page.get_by_role("heading", name="1. Licence and photo ID")).to_be_visible()
    page.get_by_label("Photo ID seen and matches the booking").check()
    page.get_by_role("button", name="Save ID check").click()
    expect(page.get_by_text("Photo ID checked by")).to_be_visible()

    page.get_by_label("Odometer (miles)").fill("20010")
    page.get_by_label("Fuel").select_option("8")
    page.get_by_role("button", name="Save condition").click()
    expect(page.locator(".steps li.done")).to_have_count(2)

    page.get_by_label("Part of the car").first.select_option("front")
    page.locator("input[type=file][name=photo]").set_input_files(photo_file(tmp_path, "front.jpg", (180, 20, 20)))
    page.get_by_role("button", name="Add photo").click()
    expect(page.locator("img[alt='front']")).to_have_count(1)

    # An empty signature box is refused; a drawn one is kept.
    page.get_by_role("button", name="Save signature").click()
    expect(page.locator("#signature-error")).to_be_visible()
    draw_signature(page)
    page.get_by_role("button", name="Save signature").click()
    expect(page.get_by_text("Signed at")).to_be_visible()
    assert audit(page) == []
    assert small_targets(page) == []

    page.get_by_role("button", name="Hand over the keys").click()
    page.get_by_role("dialog").get_by_role("button", name="Confirm hand-over").click()
    expect(page.get_by_role("heading", name=f"{ref} · Return")).to_be_visible()

    # Return: less fuel, a photo of the front again, shown beside the pickup photo.
    page.get_by_label("Odometer (miles)").fill("20200")
    page.get_by_label("Fuel").select_option("6")
    page.get_by_role("button", name="Save condition").click()
    expect(page.get_by_role("cell", name="Fuel: 2/8 of a tank short", exact=True)).to_be_visible()
    page.get_by_label("Part of the car").first.select_option("front")
    page.locator("input[type=file][name=photo]").set_input_files(photo_file(tmp_path, "front-in.jpg", (20, 20, 180)))
    page.get_by_role("button", name="Add photo").click()
    front = page.locator("fieldset.panel", has=page.locator("legend", has_text="Front"))
    expect(front.locator(".compare img")).to_have_count(2)  # out and in, side by side
    assert audit(page) == []

    page.get_by_role("button", name="Settle").click()
    page.get_by_role("dialog").get_by_role("button", name="Confirm and settle").click()
    expect(page.get_by_role("heading", name="Settled")).to_be_visible()
    assert native_dialogs == []
    assert page.console_errors == [] and page.csp_violations == []
    with live_server.app.app_context():
        # No card on file: the charges beyond the (absent) deposit are left to staff, so the
        # hire stays returned until they are settled.
        assert db.session.query(Hire).filter_by(reference=ref).one().state == "returned"

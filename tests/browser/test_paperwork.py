"""Issue 18's paperwork in real Chromium, by visible controls only (found by role or label):
staff finish a pickup from the counter board (ID, condition, photo, signature, hand-over; the
licence was verified beforehand) and the hire page offers the rental agreement once its job
has made it; the customer signs in from the home page and downloads the same agreement from
My bookings (a PDF naming the booking); staff open "Invoices" from the staff menu, choose
the dates, see the booking's invoice and download the CSV.

The hire is paid through the Stripe stand-in's Checkout, so its VAT invoice is the real one
issued at payment; jobs (the agreement's PDF, the deposit hold) run on the served app's thread.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect
from pypdf import PdfReader

from app.models import utcnow
from app.paperwork import invoices_of
from tests import factories
from tests.browser.test_counter import draw_signature, photo_file
from tests.browser.test_counter_walk import served, staff_at_the_board, step_done  # noqa: F401 (fixture)
from tests.test_counter import verified_check
from tests.test_payments_card import paid_hire, standin, stripe_app  # noqa: F401 (fixtures)

from .conftest import PHONE

pytestmark = [pytest.mark.browser, pytest.mark.postgres]

PORTRAIT = (820, 1180)
AGREEMENT_LINK = "Download the rental agreement (PDF)"


def pdf_text(path: str) -> str:
    data = Path(path).read_bytes()
    assert data.startswith(b"%PDF-"), data[:20]
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def download(page: Page, link) -> str:
    """Click a visible download link; the path of the file the browser saved."""
    expect(link).to_be_visible()
    with page.expect_download() as saved:
        link.click()
    assert saved.value.failure() is None
    return saved.value.path()


def test_agreement_and_invoices_from_the_counter_my_bookings_and_the_staff_list(
        stripe_app, client, auth, standin, served, new_page, tmp_path):  # noqa: F811
    branch = factories.make_branch()
    customer = auth.sign_in_as("customer", full_name="Petra Paper")
    car = factories.make_car(branch=branch, odometer_miles=30_000, make="Skoda", model="Octavia",
                             vin="TMBJJ7NE5L0654321")
    hire = paid_hire(client, standin, customer, car=car, start=utcnow() + timedelta(hours=1), days=2)
    auth.sign_out()
    ref, email, plate = hire.reference, customer.email, car.plate
    [invoice] = invoices_of(hire)  # issued when the rental was paid
    invoice_number, invoice_total = invoice.display_number, invoice.gross_pence
    verified_check(hire)  # the licence was checked with the customer's code beforehand
    staff = factories.enrol_two_factor(factories.make_user("staff", full_name="Sid Signer", branch=branch))

    # --- staff: the rest of the pickup from the board, then the agreement ----------------------
    page = new_page(*PORTRAIT)
    staff_at_the_board(page, served, staff)
    page.get_by_role("link", name=re.compile(ref)).click()
    expect(page.get_by_role("heading", name=f"{ref} · Pickup")).to_be_visible()
    expect(page.locator("#licence-status")).to_contain_text("Verified")
    page.get_by_label("Photo ID seen and matches the booking").check()
    page.get_by_role("button", name="Save ID check").click()
    step_done(page, "Licence and ID").to_contain_text("✓")
    page.get_by_label("Odometer (miles)").fill("30010")
    page.get_by_label("Fuel").select_option("8")
    page.get_by_role("button", name="Save condition").click()
    step_done(page, "Condition out").to_contain_text("✓")
    page.get_by_label("Part of the car").select_option("front")
    page.get_by_label("Photo", exact=True).set_input_files(photo_file(tmp_path, "front.jpg", (20, 120, 40)))
    page.get_by_role("button", name="Add photo").click()
    expect(page.get_by_role("img", name="front", exact=True)).to_be_visible()
    expect(page.get_by_text("Terms of hire, version v1")).to_be_visible()
    draw_signature(page)
    page.get_by_role("button", name="Save signature").click()
    expect(page.get_by_text("Signed at")).to_be_visible()
    page.get_by_role("button", name="Hand over the keys").click()
    page.get_by_role("dialog", name=f"Hand over {plate} to Petra Paper?").get_by_role(
        "button", name="Confirm hand-over").click()
    expect(page.get_by_role("heading", name=f"{ref} · Return")).to_be_visible()

    # The page asks again by itself until the job has made the PDF; then it offers it.
    agreement = page.locator(f"#agreement-{ref}")
    expect(agreement.get_by_role("link", name=AGREEMENT_LINK)).to_be_visible(timeout=20_000)
    expect(agreement).not_to_contain_text("Preparing the rental agreement")
    text = pdf_text(download(page, agreement.get_by_role("link", name=AGREEMENT_LINK)))
    assert ref in text and plate in text and "TMBJJ7NE5L0654321" in text
    expect(page.locator(f"#paperwork-{ref}").get_by_role("link", name=re.compile(invoice_number))).to_be_visible()
    assert page.console_errors == [] and page.csp_violations == []  # type: ignore[attr-defined]

    # --- the customer: home page, sign in, My bookings, the agreement --------------------------
    phone = new_page(*PHONE)
    phone.goto(f"{served.url}/")
    phone.get_by_role("link", name="Sign in").click()
    form = phone.locator("#sign-in-form")
    form.get_by_label("Email").fill(email)
    form.get_by_label("Password", exact=True).fill(factories.PASSWORD)
    form.get_by_role("button", name="Sign in").click()
    phone.get_by_role("link", name="My bookings").click()
    expect(phone.get_by_role("heading", name="My bookings")).to_be_visible()
    booking = phone.locator(f"#booking-{ref}")
    text = pdf_text(download(phone, booking.get_by_role("link", name=AGREEMENT_LINK)))
    assert ref in text and "Petra Paper" in text
    invoice_text = pdf_text(download(phone, booking.get_by_role("link", name=re.compile(invoice_number))))
    assert f"VAT invoice {invoice_number}" in invoice_text and ref in invoice_text
    assert phone.console_errors == []  # type: ignore[attr-defined]

    # --- staff: Invoices from the staff menu, a date range, the CSV ----------------------------
    page.get_by_role("navigation", name="Staff").get_by_role("link", name="Invoices").click()
    expect(page.get_by_role("heading", name="Invoices and credit notes")).to_be_visible()
    today = utcnow().astimezone(ZoneInfo(served.app.config["DEFAULT_TIMEZONE"])).date()
    # Yesterday and the day before: nothing was issued then.
    page.get_by_label("From").fill((today - timedelta(days=2)).isoformat())
    page.get_by_label("To").fill((today - timedelta(days=1)).isoformat())
    page.get_by_role("button", name="Show").click()
    results = page.get_by_role("region", name="Invoices and credit notes")
    expect(results).to_contain_text("No invoices or credit notes were issued on those days.")
    page.get_by_label("From").fill((today - timedelta(days=1)).isoformat())
    page.get_by_label("To").fill(today.isoformat())
    page.get_by_role("button", name="Show").click()
    row = results.get_by_role("row").filter(has_text=ref)
    expect(row).to_contain_text(invoice_number)
    expect(row).to_contain_text("Petra Paper")
    expect(row).to_contain_text(f"£{invoice_total / 100:,.2f}")
    saved = download(page, page.get_by_role("link", name="Download CSV"))
    rows = list(csv.DictReader(io.StringIO(Path(saved).read_text(encoding="utf-8-sig"))))
    [line] = [r for r in rows if ref in r.values()]
    assert invoice_number in line.values()
    assert page.console_errors == [] and page.csp_violations == []  # type: ignore[attr-defined]

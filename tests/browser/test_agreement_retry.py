"""Issue 18 in real Chromium: a rental agreement whose PDF job gave up is found from the counter
board, and staff retry it from the hire's page with the visible "Retry agreement" button; the
agreement is then made and can be downloaded. Only visible controls, found by role or label.

The hand-over itself is done through the counter's pages by the test client (the whole
hand-over in Chromium is `test_paperwork.py`); the worker is deployed without the terms text,
so every attempt of the agreement's job fails, then the cause is fixed before staff retry.
"""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import expect
from pypdf import PdfReader

from app.extensions import db
from app.paperwork import agreement_documents, agreement_for
from app.paperwork.agreements import GENERATE_TASK, JOB_ID
from app.queueing import enqueue
from tests import factories
from tests.browser.conftest import browser_sign_in
from tests.browser.test_counter_walk import staff_at_the_board
from tests.test_counter import _now, staff_client  # noqa: F401 (fixture)
from tests.test_paperwork_agreement import _customer, _hand_over, pending_agreement
from tests.test_paperwork_seams import _extended_after_hand_over

pytestmark = [pytest.mark.browser, pytest.mark.postgres]

TABLET = (820, 1180)


def _failed_agreement(app, hire, tmp_path) -> None:
    pending = pending_agreement(hire)
    terms_dir = app.config["TERMS_DIR"]
    app.config["TERMS_DIR"] = str(tmp_path)  # no terms text: each attempt fails
    enqueue(GENERATE_TASK, pending.id, job_id=JOB_ID.format(pending.id))
    app.config["TERMS_DIR"] = terms_dir
    db.session.expire_all()
    assert agreement_for(hire).state == "failed"


def test_staff_retry_a_failed_agreement_from_the_board(app, staff_client, make_live_server,  # noqa: F811
                                                       new_page, tmp_path):
    hire = _hand_over(staff_client, _customer())
    _failed_agreement(app, hire, tmp_path)
    hire.end_at = _now() + timedelta(hours=20)  # due back tomorrow: on the board's returns
    db.session.commit()
    staff = factories.enrol_two_factor(staff_client.staff)
    server = make_live_server()

    page = new_page(*TABLET)
    native = staff_at_the_board(page, server, staff)
    row = page.get_by_role("link").filter(has_text=hire.reference)
    expect(row).to_contain_text("agreement failed")
    row.click()

    expect(page.get_by_role("alert").filter(has_text="could not be made")).to_be_visible()
    page.screenshot(path=str(tmp_path / "tablet-agreement-failed.png"), full_page=True)
    page.get_by_role("button", name="Retry agreement").click()
    link = page.get_by_role("link", name="Download the rental agreement (PDF)")
    expect(link).to_be_visible()  # "Preparing…" polls until the job has made it
    expect(page.get_by_role("button", name="Retry agreement")).to_have_count(0)
    page.screenshot(path=str(tmp_path / "tablet-agreement-retried.png"), full_page=True)

    with page.expect_download() as saved:
        link.click()
    data = Path(saved.value.path()).read_bytes()
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages)
    assert "Rita Renter" in text and hire.reference in text

    # Back on the board, the hire no longer asks for a retry.
    page.get_by_role("link", name="Counter", exact=True).first.click()
    expect(page.get_by_role("link").filter(has_text=hire.reference)).not_to_contain_text("agreement failed")
    assert native == [] and page.console_errors == [] and page.csp_violations == []  # type: ignore[attr-defined]


def test_a_failed_addendum_is_retried_at_the_counter_then_the_customer_downloads_it(
        app, staff_client, make_live_server, new_page, tmp_path):  # noqa: F811
    """The hire was extended after hand-over; its addendum's job gave up. Staff see it on the
    hire's page at the tablet and retry it; the customer then finds it in My bookings on a phone."""
    hire = _extended_after_hand_over(staff_client)
    addendum = agreement_documents(hire)[1]
    addendum.state, addendum.pdf, addendum.attempts, addendum.last_error = "failed", None, 3, "no terms text"
    hire.end_at = _now() + timedelta(hours=20)  # due back tomorrow: on the board's returns
    db.session.commit()
    staff = factories.enrol_two_factor(staff_client.staff)
    ref, email = hire.reference, hire.customer.email
    server = make_live_server()

    page = new_page(*TABLET)
    native = staff_at_the_board(page, server, staff)
    page.get_by_role("link").filter(has_text=ref).click()
    expect(page.get_by_role("alert").filter(has_text="Addendum 1 could not be made")).to_be_visible()
    expect(page.get_by_role("link", name="Download the rental agreement (PDF)")).to_be_visible()
    page.get_by_role("button", name="Retry addendum 1").click()
    expect(page.get_by_text("Making addendum 1 again.")).to_be_visible()
    expect(page.get_by_role("link", name="Download addendum 1 (PDF)")).to_be_visible()
    page.screenshot(path=str(tmp_path / "tablet-addendum-retried.png"), full_page=True)
    assert native == [] and page.console_errors == [] and page.csp_violations == []  # type: ignore[attr-defined]

    phone = new_page(390, 844)
    browser_sign_in(phone, server.url, email)
    phone.goto(f"{server.url}/")
    phone.get_by_role("link", name="My bookings").click()
    link = phone.locator(f"#booking-{ref}").get_by_role("link", name="Download addendum 1 (PDF)")
    with phone.expect_download() as saved:
        link.click()
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(Path(saved.value.path()).read_bytes())).pages)
    assert f"Addendum 1 to the rental agreement {ref}" in text and "Return" in text
    phone.screenshot(path=str(tmp_path / "phone-addendum.png"), full_page=True)
    assert phone.console_errors == []

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
from app.paperwork import agreement_for
from app.paperwork.agreements import GENERATE_TASK, JOB_ID
from app.queueing import enqueue
from tests import factories
from tests.browser.test_counter_walk import staff_at_the_board
from tests.test_counter import _now, staff_client  # noqa: F401 (fixture)
from tests.test_paperwork_agreement import _customer, _hand_over, pending_agreement

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

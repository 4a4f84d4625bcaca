"""Paperwork meets check-in's neighbours (issue 18): an extension after hand-over gets an
invoice for the extra time and an addendum to the signed agreement; "download my data" holds
the customer's agreements and invoices; erasing the account deletes the agreements' PDFs
(they hold the signature) and keeps the invoices."""

from __future__ import annotations

import io
from datetime import timedelta

from pypdf import PdfReader
from sqlalchemy import select

from app import events
from app.booking.extending import end_token, extend_hire, preview_extension
from app.booking.trips import to_local
from app.extensions import db
from app.models import Invoice, RentalAgreement
from app.paperwork import agreement_documents, agreement_for, issue_booking_invoice
from tests.test_counter import _now
from tests.test_counter import staff_client  # noqa: F401 (fixture)
from tests.conftest import AuthActions, csrf_token
from tests.test_paperwork_agreement import _customer, _hand_over


def _text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def test_an_extension_after_hand_over_is_invoiced_and_added_to_the_agreement(staff_client):
    hire = _hand_over(staff_client, _customer())
    assert agreement_for(hire).state == "ready"
    # The next day after the booked return, at noon (the branch is open then).
    new_return = (to_local(hire.end_at, hire.return_branch.timezone) + timedelta(days=1)).replace(
        hour=12, minute=0, second=0, microsecond=0, tzinfo=None)
    extra = preview_extension(hire, new_return, now=_now()).extra_pence
    assert extra > 0

    extend_hire(hire, new_return, by=staff_client.staff, now=_now(), expected_extra=extra,
                expected_end=end_token(hire))

    documents = agreement_documents(hire)
    assert [(d.sequence, d.kind, d.state) for d in documents] == [
        (1, "agreement", "ready"), (2, "addendum", "ready")]
    text = _text(documents[1].pdf)
    assert f"Addendum 1 to the rental agreement {hire.reference}" in text and "Return" in text
    invoice = db.session.scalar(select(Invoice).where(Invoice.hire_id == hire.id,
                                                      Invoice.idempotency_key.like("%:extension:%")))
    assert invoice is not None and invoice.kind == "invoice" and invoice.gross_pence == extra
    assert invoice.lines[0]["label"].startswith("Extension to ")


def _extended_after_hand_over(staff_client):
    hire = _hand_over(staff_client, _customer())
    new_return = (to_local(hire.end_at, hire.return_branch.timezone) + timedelta(days=1)).replace(
        hour=12, minute=0, second=0, microsecond=0, tzinfo=None)
    extra = preview_extension(hire, new_return, now=_now()).extra_pence
    extend_hire(hire, new_return, by=staff_client.staff, now=_now(), expected_extra=extra,
                expected_end=end_token(hire))
    return hire


def test_the_customer_and_staff_download_the_addendum_from_the_hire_pages(staff_client, app):
    hire = _extended_after_hand_over(staff_client)
    addendum = agreement_documents(hire)[1]
    pdf_url = f"/paperwork/hires/{hire.reference}/agreement/addendum-1.pdf"

    own = app.test_client()
    AuthActions(own).sign_in(hire.customer.email)
    for page in ("/book/mine", f"/book/hires/{hire.reference}"):
        html = own.get(page).get_data(as_text=True)
        assert "Download addendum 1 (PDF)" in html and pdf_url in html, page
    response = own.get(pdf_url)
    assert response.status_code == 200 and response.data == addendum.pdf
    assert response.headers["Content-Disposition"].endswith(f"rental-agreement-{hire.reference}-addendum-1.pdf")
    assert own.get(f"/paperwork/hires/{hire.reference}/agreement/addendum-2.pdf").status_code == 404

    counter = staff_client.get(f"/counter/hires/{hire.reference}").get_data(as_text=True)
    assert "Download addendum 1 (PDF)" in counter
    assert staff_client.get(pdf_url).data == addendum.pdf

    # The list the page polls while an addendum is being made.
    fragment = own.get(f"/paperwork/hires/{hire.reference}/addenda", headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and "Download addendum 1 (PDF)" in fragment.get_data(as_text=True)
    assert "hx-trigger" not in fragment.get_data(as_text=True)  # nothing being made: no polling

    stranger = app.test_client()
    AuthActions(stranger).sign_in_as("customer", email="someone.else@example.com")
    assert stranger.get(pdf_url).status_code == 404
    assert stranger.get(f"/paperwork/hires/{hire.reference}/addenda").status_code == 404


def test_a_pending_addendum_polls_until_it_is_made(staff_client, app):
    hire = _extended_after_hand_over(staff_client)
    addendum = agreement_documents(hire)[1]
    addendum.state, addendum.pdf = "pending", None
    db.session.commit()
    own = app.test_client()
    AuthActions(own).sign_in(hire.customer.email)
    html = own.get(f"/book/hires/{hire.reference}").get_data(as_text=True)
    assert "Preparing addendum 1…" in html
    assert f'hx-get="/paperwork/hires/{hire.reference}/addenda"' in html
    assert own.get(f"/paperwork/hires/{hire.reference}/agreement/addendum-1.pdf").status_code == 409


def test_a_failed_addendum_is_shown_on_the_hire_page_and_retried_there(staff_client, app):
    hire = _extended_after_hand_over(staff_client)
    addendum = agreement_documents(hire)[1]
    addendum.state, addendum.pdf, addendum.attempts, addendum.last_error = "failed", None, 3, "disk full"
    db.session.commit()
    pdf_url = f"/paperwork/hires/{hire.reference}/agreement/addendum-1.pdf"

    own = app.test_client()
    AuthActions(own).sign_in(hire.customer.email)
    mine = own.get(f"/book/hires/{hire.reference}").get_data(as_text=True)
    assert "Addendum 1 could not be made yet; our staff have been told" in mine
    assert "Retry addendum" not in mine and "disk full" not in mine
    assert own.get(pdf_url).status_code == 409

    page = staff_client.get(f"/counter/hires/{hire.reference}").get_data(as_text=True)
    assert "Addendum 1 could not be made (3 attempts; last error: disk full)" in page
    assert "Download the rental agreement (PDF)" in page  # the agreement itself is fine
    retried = staff_client.post(f"/paperwork/hires/{hire.reference}/agreement/retry",
                                data={"csrf_token": csrf_token(staff_client)}, follow_redirects=True)
    assert retried.status_code == 200
    assert "Making addendum 1 again." in retried.get_data(as_text=True)
    db.session.expire_all()
    assert agreement_documents(hire)[1].state == "ready"  # jobs run in-process here
    assert "Download addendum 1 (PDF)" in staff_client.get(f"/counter/hires/{hire.reference}").get_data(as_text=True)
    assert own.get(pdf_url).status_code == 200


def test_the_data_download_holds_the_agreements_and_invoices(staff_client):
    customer = _customer()
    hire = _hand_over(staff_client, customer)
    invoice = issue_booking_invoice(hire, now=_now())
    collected = [files for _receiver, files in events.customer_documents.send(customer) if files]
    names = {name: content for files in collected for name, content in files}
    assert set(names) == {agreement_for(hire).filename, invoice.filename}
    assert names[agreement_for(hire).filename] == agreement_for(hire).pdf
    assert invoice.display_number in _text(names[invoice.filename])


def test_erasing_the_account_deletes_the_agreement_pdf_and_keeps_the_invoice(staff_client):
    customer = _customer()
    hire = _hand_over(staff_client, customer)
    invoice = issue_booking_invoice(hire, now=_now())
    content_hash = agreement_for(hire).content_sha256

    events.customer_erased.send(customer, now=_now())

    db.session.expire_all()
    agreement = db.session.scalar(select(RentalAgreement).where(RentalAgreement.hire_id == hire.id))
    assert agreement.state == "erased" and agreement.pdf is None
    assert "signature" not in agreement.snapshot and "customer" not in agreement.snapshot
    assert agreement.content_sha256 == content_hash  # a copy the customer kept can be checked
    assert staff_client.get(f"/paperwork/hires/{hire.reference}/agreement.pdf").status_code == 410
    assert db.session.get(Invoice, invoice.id).buyer["name"] == "Rita Renter"
    assert staff_client.get(f"/paperwork/documents/{invoice.id}.pdf").status_code == 200

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

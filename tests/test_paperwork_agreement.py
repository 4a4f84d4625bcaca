"""The rental agreement (issue 18): made at hand-over by a job, read back with pypdf (text,
the signature image, the footer's hash), emailed as an attachment, downloadable by the
customer and staff only, and "being prepared" while its job has not run."""

from __future__ import annotations

import hashlib
import io
import re
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image
from pypdf import PdfReader
from sqlalchemy import select

from app.counter import inspections
from app.extensions import db
from app.jobs.paperwork import generate_agreement
from app.models import AuditRecord, OutboundEmail, RentalAgreement
from app.paperwork.agreements import GENERATE_TASK, JOB_ID
from app.queueing import enqueue
from app.paperwork import agreement_for
from app.paperwork.agreement_pdf import rendered_body_sha256
from tests import factories
from tests.conftest import AuthActions, csrf_token
from tests.test_counter import _now, condition, jpeg_with_gps, post, signature_png, verified_check
from tests.test_counter import staff_client  # noqa: F401 (fixture)

HASH_RE = re.compile(r"SHA-256 of the document body: ([0-9a-f]{64})")


def _customer():
    customer = factories.make_user("customer", email="rita.renter@example.com", full_name="Rita Renter")
    return customer


def _hand_over(staff_client, customer):
    """The counter's whole pickup through the pages, as a tablet does it."""
    car = factories.make_car(branch=staff_client.branch, odometer_miles=12_000, make="Skoda", model="Octavia",
                             vin="TMBJJ7NE5L0123456")
    hire = factories.make_hire(car=car, customer=customer, start=_now() + timedelta(hours=2), days=3)
    ref = hire.reference
    verified_check(hire)
    assert post(staff_client, f"/counter/hires/{ref}/pickup/id-check", {"id_matches": "y"}).status_code == 303
    assert post(staff_client, f"/counter/hires/{ref}/pickup/condition",
                condition(12_050, 8, left=("scratch", "long scratch on rear door"))).status_code == 303
    assert post(staff_client, f"/counter/hires/{ref}/pickup/photos",
                {"panel": "left", "photo": (io.BytesIO(jpeg_with_gps()), "left.jpg")},
                content_type="multipart/form-data").status_code == 303
    page = staff_client.get(f"/counter/hires/{ref}").get_data(as_text=True)
    # The terms are in front of the customer before they sign, with their version.
    assert "Terms of hire, version v1" in page and "ACME Rentals: terms of hire (version 1)" in page
    assert post(staff_client, f"/counter/hires/{ref}/pickup/signature",
                {"signature": signature_png()}).status_code == 303
    assert post(staff_client, f"/counter/hires/{ref}/pickup/hand-over", {}).status_code == 303
    db.session.expire_all()
    return hire


def _text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def test_hand_over_makes_the_signed_agreement_and_emails_it(staff_client, app):
    customer = _customer()
    hire = _hand_over(staff_client, customer)
    agreement = agreement_for(hire)
    assert agreement is not None and agreement.state == "ready" and agreement.terms_version == "v1"

    text = _text(agreement.pdf)
    for expected in ("Rental agreement " + hire.reference, "Rita Renter", "rita.renter@example.com",
                     "Skoda Octavia", hire.car.plate, "TMBJJ7NE5L0123456", staff_client.branch.name,
                     "£117.00", "£250.00", "long scratch on rear door", "Odometer 12050 miles",
                     "terms of hire (version 1)", "per started hour", "miles a day",
                     f"witnessed by {staff_client.staff.full_name}"):
        assert expected in text, expected
    # Times are local, with the zone: 2 hours from now in London is BST or GMT.
    start_local = re.search(r"Pick up\s*(\w{3} \d{2} \w{3} \d{4} \d{2}:\d{2} (BST|GMT) \(Europe/London\))", text)
    assert start_local, text[:800]

    # The footer's hash is the stored one, and rendering the body again from what is stored
    # gives it again (a later copy can be checked); the file's own hash is stored too.
    assert set(HASH_RE.findall(text)) == {agreement.content_sha256}
    assert rendered_body_sha256(agreement) == agreement.content_sha256
    assert hashlib.sha256(agreement.pdf).hexdigest() == agreement.file_sha256

    # The signature is in the PDF, the very picture the customer drew.
    insp = inspections.inspection(hire, "pickup")
    with Image.open(inspections.upload_dir() / insp.signature_filename) as stored:
        signature_size = stored.size
    images = [img for page in PdfReader(io.BytesIO(agreement.pdf)).pages for img in page.images]
    assert any(img.image.size == signature_size for img in images)
    assert len(images) >= 2  # the signature and the left panel's photo thumbnail

    # Emailed to the customer with the PDF attached (the same bytes).
    email = db.session.scalar(select(OutboundEmail).where(
        OutboundEmail.idempotency_key == f"hire:{hire.id}:agreement:1"))
    assert email.to_address == "rita.renter@example.com"
    [attached] = email.attachments
    assert attached.mimetype == "application/pdf" and attached.data == agreement.pdf
    assert attached.filename == f"rental-agreement-{hire.reference}.pdf"

    # The counter's hire page offers it.
    page = staff_client.get(f"/counter/hires/{hire.reference}").get_data(as_text=True)
    assert "Download the rental agreement (PDF)" in page
    staff_copy = staff_client.get(f"/paperwork/hires/{hire.reference}/agreement.pdf")
    assert staff_copy.status_code == 200 and staff_copy.data == agreement.pdf


def test_only_the_customer_and_staff_can_fetch_the_agreement(staff_client, app):
    customer = _customer()
    hire = _hand_over(staff_client, customer)
    pdf_url = f"/paperwork/hires/{hire.reference}/agreement.pdf"

    own = app.test_client()
    AuthActions(own).sign_in(customer.email)
    mine = own.get("/book/mine").get_data(as_text=True)
    assert pdf_url in mine  # My bookings links it
    response = own.get(pdf_url)
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert "private" in response.headers["Cache-Control"]
    assert own.get(f"/book/hires/{hire.reference}").get_data(as_text=True).count(pdf_url) == 1

    stranger = app.test_client()
    AuthActions(stranger).sign_in_as("customer", email="someone.else@example.com")
    assert stranger.get(pdf_url).status_code == 404
    assert stranger.get(f"/paperwork/hires/{hire.reference}/agreement").status_code == 404

    anonymous = app.test_client().get(pdf_url)
    assert anonymous.status_code == 302 and "/account/sign-in" in anonymous.headers["Location"]


def pending_agreement(hire) -> RentalAgreement:
    """The hire's agreement put back as it is before its job has run: recorded, no PDF yet."""
    made = agreement_for(hire)
    pending = RentalAgreement(hire_id=hire.id, sequence=1, kind="agreement", state="pending",
                              terms_version="v1", snapshot=dict(made.snapshot))
    db.session.delete(made)
    db.session.commit()
    db.session.add(pending)
    db.session.commit()
    return pending


def test_the_agreement_is_shown_as_being_prepared_until_its_job_has_run(staff_client, app):
    customer = _customer()
    hire = _hand_over(staff_client, customer)
    # As it is between the hand-over and the job: the row recorded, no PDF yet.
    pending = pending_agreement(hire)

    own = app.test_client()
    AuthActions(own).sign_in(customer.email)
    status_url = f"/paperwork/hires/{hire.reference}/agreement"
    fragment = own.get(status_url, headers={"HX-Request": "true"})
    body = fragment.get_data(as_text=True)
    assert fragment.status_code == 200 and "<html" not in body
    assert "Preparing the rental agreement" in body and 'hx-trigger="every 2s"' in body
    assert "Preparing the rental agreement" in own.get("/book/mine").get_data(as_text=True)
    assert own.get(f"{status_url}.pdf").status_code == 409

    generate_agreement(pending.id)  # the job runs

    body = own.get(status_url, headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "Download the rental agreement (PDF)" in body and "hx-trigger" not in body
    pdf = own.get(f"{status_url}.pdf")
    assert pdf.status_code == 200 and "Rita Renter" in _text(pdf.data)


def test_an_addendum_takes_the_next_number_and_names_the_agreement_it_amends(staff_client, app):
    """What an extension (issue 18, another engineer) will call: a document of what changed."""
    from app.paperwork import agreement_documents, request_document
    hire = _hand_over(staff_client, _customer())
    agreement = agreement_for(hire)
    snapshot = {**agreement.snapshot, "changes": [{"label": "Return", "before": "Mon 01 Jun 10:00",
                                                   "after": "Wed 03 Jun 10:00"}]}
    addendum = request_document(hire, snapshot, kind="addendum", by=staff_client.staff, now=_now())
    assert [(d.sequence, d.kind) for d in agreement_documents(hire)] == [(1, "agreement"), (2, "addendum")]
    assert addendum.amends_id == agreement.id and addendum.state == "ready"
    text = _text(addendum.pdf)
    assert f"Addendum 1 to the rental agreement {hire.reference}" in text and "Wed 03 Jun 10:00" in text
    assert addendum.filename == f"rental-agreement-{hire.reference}-addendum-1.pdf"


@pytest.mark.parametrize("missing", ["v999"])
def test_a_missing_terms_text_stops_the_hand_over_not_a_job_later(staff_client, app, missing):
    from app.paperwork.company import TermsMissing, terms
    app.config["TERMS_VERSION"] = missing
    with pytest.raises(TermsMissing):
        terms()


def test_a_failed_agreement_alerts_staff_who_retry_it_from_the_counter(staff_client, app, tmp_path):
    app.config["STAFF_ALERT_EMAIL"] = "counter-alerts@acme-rentals.example"
    customer = _customer()
    hire = _hand_over(staff_client, customer)
    pending = pending_agreement(hire)
    # The worker was deployed without the terms text: every attempt of the job fails.
    terms_dir = Path(app.config["TERMS_DIR"])
    app.config["TERMS_DIR"] = str(tmp_path)
    enqueue(GENERATE_TASK, pending.id, job_id=JOB_ID.format(pending.id))  # with its bounded retries
    app.config["TERMS_DIR"] = str(terms_dir)  # the cause fixed (the pages need the terms too)
    _failed_then_retried(staff_client, app, hire, customer)


def _failed_then_retried(staff_client, app, hire, customer):
    db.session.expire_all()
    document = agreement_for(hire)
    assert document.state == "failed" and document.attempts == app.config["JOB_MAX_RETRIES"] + 1
    assert document.last_error

    # Staff are alerted once: the branch's staff and the alert address, with the hire's counter page.
    alerts = list(db.session.scalars(select(OutboundEmail).where(
        OutboundEmail.subject.contains("could not be made")).order_by(OutboundEmail.id)))
    assert sorted(a.to_address for a in alerts) == sorted([staff_client.staff.email,
                                                            "counter-alerts@acme-rentals.example"])
    for alert in alerts:
        assert hire.reference in alert.subject
        assert f"/counter/hires/{hire.reference}" in alert.body_text and "Retry agreement" in alert.body_text
    assert db.session.scalar(select(AuditRecord).where(AuditRecord.action == "paperwork.agreement_failed"))

    # The customer is told staff know, and cannot retry.
    own = app.test_client()
    AuthActions(own).sign_in(customer.email)
    mine = own.get("/book/mine").get_data(as_text=True)
    assert "our staff have been told" in mine and "Retry agreement" not in mine
    retry_url = f"/paperwork/hires/{hire.reference}/agreement/retry"
    assert own.post(retry_url, data={"csrf_token": csrf_token(own, "/book/mine")}).status_code == 403
    anonymous = app.test_client().post(retry_url)
    assert anonymous.status_code in (302, 400)  # refused by CSRF or sent to sign in
    assert agreement_for(hire).state == "failed"

    # Staff see it on the hire's page, with the button, and on the board.
    page = staff_client.get(f"/counter/hires/{hire.reference}").get_data(as_text=True)
    assert "The rental agreement PDF could not be made" in page and "Retry agreement" in page
    hire.end_at = _now() + timedelta(hours=20)  # back tomorrow: on the board's returns
    db.session.commit()
    board = staff_client.get("/counter/", query_string={"branch": "all"}).get_data(as_text=True)
    assert "agreement failed: retry on its page" in board
    assert staff_client.post(retry_url).status_code == 400  # no CSRF token: refused

    # Staff retry: the job makes the PDF, the customer gets it by email.
    response = post(staff_client, retry_url, {}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert "Download the rental agreement (PDF)" in response.get_data(as_text=True)
    db.session.expire_all()
    document = agreement_for(hire)
    assert document.state == "ready" and document.pdf and "Rita Renter" in _text(document.pdf)
    # Pressing again (a double tap, a stale tab) does nothing more.
    again = post(staff_client, retry_url, {})
    assert again.status_code == 303 and again.headers["Location"].endswith(f"/counter/hires/{hire.reference}")
    retried = db.session.scalars(select(AuditRecord).where(AuditRecord.action == "paperwork.agreement_retried")).all()
    assert len(retried) == 1 and retried[0].actor_id == staff_client.staff.id
    sent = db.session.scalars(select(OutboundEmail).where(
        OutboundEmail.to_address == customer.email, OutboundEmail.subject.contains("rental agreement"))).all()
    assert len(sent) == 1 and sent[0].files
    assert "agreement failed" not in staff_client.get("/counter/", query_string={"branch": "all"}).get_data(as_text=True)

"""The customer's own data (issue 18): the ZIP's JSON, erasure checked in the database,
refusal while a hire is open or money unsettled, retention by moving the clock."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from app.extensions import db
from app.jobs.booking import tick
from app.models import (AuditRecord, CustomerProfile, DataExport, HireCheckin, HireDriver,
                        HireState, HireStateChange, Inspection, LicenceCheck, OutboundEmail,
                        Payment, User, utcnow)
from app.privacy.retention import due_for_deletion
from tests import factories
from tests.conftest import post_form

RETENTION_DAYS = 90


def closed_hire(customer, *, ended_days_ago: float = 1, signature: str = "", photo: str = "", app=None):
    """A hire that ended (closed) `ended_days_ago`, with a signature, a licence photo, a driver."""
    ended = utcnow() - timedelta(days=ended_days_ago)
    hire = factories.make_hire(customer=customer, start=ended - timedelta(days=3), state=HireState.CLOSED,
                               occupy=False)
    hire.state_changes.append(HireStateChange(from_state="returned", to_state="closed", at=ended, reason="test"))
    db.session.add(Inspection(hire_id=hire.id, kind="pickup", checklist={}, damages=[], waivers={},
                              charge_lines=[], signature_filename=signature, signed_at=ended - timedelta(days=3)))
    db.session.add(HireCheckin(hire_id=hire.id, terms_version="v1", licence_photo_filename=photo,
                               licence_photo_content_type="image/jpeg", completed_at=ended - timedelta(days=4)))
    driver = HireDriver(hire_id=hire.id, full_name="Sam Smith", licence_number="SMITH802140JJ9AB")
    db.session.add(driver)
    db.session.flush()
    db.session.add(LicenceCheck(user_id=customer.id, hire_id=hire.id, licence_number="CUSTO907150J99AB",
                                check_code="ABCD2345", idempotency_key=f"t-{hire.id}", status="verified",
                                raw_response={"driver": {"dateOfBirth": "1990-07-15"}}))
    db.session.add(LicenceCheck(user_id=customer.id, hire_id=hire.id, driver_id=driver.id,
                                licence_number="SMITH802140JJ9AB", check_code="ABCD2345",
                                idempotency_key=f"t-d-{hire.id}", status="verified"))
    db.session.commit()
    return hire


def stored_file(app, folder: str, name: str) -> Path:
    path = Path(app.config["UPLOAD_DIR"]) / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"image bytes")
    return path


def test_download_my_data_is_a_zip_of_everything_held_for_its_owner_only(app, client, auth):
    customer = auth.sign_in_as("customer", full_name="Dana Download")
    hire = closed_hire(customer)
    db.session.add(Payment(hire_id=hire.id, method="card", kind="charge", state="succeeded",
                           amount_pence=11700, currency="GBP", idempotency_key="t-pay",
                           details={"purpose": "checkout"}))
    db.session.add(OutboundEmail(idempotency_key="t-mail", to_address=customer.email,
                                 subject="Booking confirmed", body_text="Hello Dana", state="sent"))
    db.session.commit()

    response = post_form(client, "/account/data/export", {}, token_from="/account/data")
    assert response.status_code == 303
    export = db.session.scalar(select(DataExport))
    assert export.state == "ready"  # the job ran (in-process in tests)
    page = client.get("/account/data").get_data(as_text=True)
    assert "Download my data (ZIP)" in page
    download = client.get(f"/account/data/export/{export.id}")
    assert download.status_code == 200 and download.mimetype == "application/zip"
    assert "no-store" in download.headers["Cache-Control"]
    with zipfile.ZipFile(io.BytesIO(download.get_data())) as archive:
        data = json.loads(archive.read("data.json"))
    download.close()
    assert data["profile"]["email"] == customer.email and data["profile"]["full_name"] == "Dana Download"
    assert data["profile"]["licence_number"] == "CUSTO907150J99AB"
    assert data["profile"]["date_of_birth"] == "1990-07-15" and data["profile"]["phone"] == "+447911123456"
    assert {c["licence_number"] for c in data["licence_checks"]} == {"CUSTO907150J99AB", "SMITH802140JJ9AB"}
    [booking] = data["bookings"]
    assert booking["reference"] == hire.reference and booking["state"] == "closed"
    assert booking["total_pence"] == hire.total_pence and booking["history"][-1]["to_state"] == "closed"
    assert booking["additional_drivers"][0]["full_name"] == "Sam Smith"
    assert booking["online_check_in"]["terms_version"] == "v1"
    assert [(p["kind"], p["amount_pence"]) for p in data["payments"]] == [("charge", 11700)]
    assert [e["subject"] for e in data["emails_sent"]] == ["Booking confirmed"]
    assert "privacy.export_requested" in [a["action"] for a in data["audit_entries"]]

    # Someone else: 404. Once expired (the tick, clock moved on): 410 and the file is gone.
    auth.sign_out()
    auth.sign_in_as("customer")
    assert client.get(f"/account/data/export/{export.id}").status_code == 404
    path = Path(app.config["UPLOAD_DIR"]) / "exports" / export.filename
    assert path.exists()
    tick((utcnow() + timedelta(hours=app.config["DATA_EXPORT_HOURS"], minutes=1)).isoformat())
    db.session.expire_all()
    assert db.session.get(DataExport, export.id).state == "expired" and not path.exists()


def test_delete_my_account_is_refused_while_a_hire_is_open_or_money_unsettled(client, auth):
    customer = auth.sign_in_as("customer")
    hire = factories.make_hire(customer=customer)  # confirmed, in the future
    page = client.get("/account/data").get_data(as_text=True)
    assert f"Booking {hire.reference} is booked: cancel it or wait until it is closed." in page
    response = post_form(client, "/account/data/delete", {"understand": "y", "password": factories.PASSWORD},
                         token_from="/account/data")
    assert response.status_code == 409
    hire.state = "closed"
    hire.occupancy = None
    db.session.add(Payment(hire_id=hire.id, method="card", kind="refund", state="pending", amount_pence=500,
                           currency="GBP", idempotency_key="t-refund", details={}))
    db.session.commit()
    response = post_form(client, "/account/data/delete", {"understand": "y", "password": factories.PASSWORD},
                         token_from="/account/data")
    assert response.status_code == 409
    assert f"A refund for booking {hire.reference} is still being processed." in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(User, customer.id).erased_at is None


def test_a_wrong_password_does_not_delete(client, auth):
    customer = auth.sign_in_as("customer")
    response = post_form(client, "/account/data/delete", {"understand": "y", "password": "not-it-at-all"},
                         token_from="/account/data")
    assert response.status_code == 422 and "That is not your password." in response.get_data(as_text=True)
    assert db.session.get(User, customer.id).erased_at is None


def test_erasure_removes_personal_data_and_keeps_the_accounting_records(app, client, auth):
    customer = auth.sign_in_as("customer", full_name="Erin Erase")
    signature = stored_file(app, "inspections", "a" * 64 + ".png")
    photo = stored_file(app, "licences", "b" * 64 + ".jpg")
    hire = closed_hire(customer, signature=signature.name, photo=photo.name)
    db.session.add(Payment(hire_id=hire.id, method="card", kind="charge", state="succeeded", amount_pence=11700,
                           currency="GBP", idempotency_key="t-pay", details={"purpose": "checkout"}))
    db.session.add(OutboundEmail(idempotency_key="t-mail", to_address=customer.email, subject="Booking confirmed",
                                 body_text="Dear Erin, born 15 July 1990", state="sent"))
    db.session.commit()
    email = customer.email

    response = post_form(client, "/account/data/delete", {"understand": "y", "password": factories.PASSWORD},
                         token_from="/account/data")
    assert response.status_code == 303
    db.session.expire_all()
    user = db.session.get(User, customer.id)
    profile = db.session.get(CustomerProfile, customer.id)
    assert user.erased_at is not None and not user.active
    assert user.email == f"erased-{user.id}@erased.invalid" and email not in user.password_hash
    assert profile.licence_number == "" and profile.phone == "" and profile.date_of_birth.year == 1900
    # Kept for the accounts: the name and address (invoices), the booking and its payment.
    assert user.full_name == "Erin Erase" and profile.address_line1 == "1 High Street"
    assert db.session.scalar(select(Payment.amount_pence).where(Payment.hire_id == hire.id)) == 11700
    assert all(c.licence_number == "" and c.raw_response is None and c.check_code == ""
               for c in db.session.scalars(select(LicenceCheck)))
    assert db.session.scalar(select(HireDriver.licence_number)) == ""
    assert db.session.scalar(select(HireCheckin.licence_photo_filename)) == ""
    assert db.session.scalar(select(Inspection.signature_filename)) == ""
    assert not signature.exists() and not photo.exists()
    mail = db.session.scalar(select(OutboundEmail))
    assert mail.to_address == user.email and "1990" not in mail.body_text
    assert db.session.scalar(select(AuditRecord).where(AuditRecord.action == "account.erased")) is not None
    # Signed out, and the old address and password no longer sign in.
    assert client.get("/account/data").status_code == 302
    assert auth.sign_in(email).status_code != 303
    # Staff see the account as erased.
    auth.sign_in_as("staff")
    page = client.get(f"/counter/hires/{hire.reference}").get_data(as_text=True)
    assert "erased" in page


def test_retention_deletes_licence_data_90_days_after_the_last_hire_ended(app, client, auth):
    customer = factories.make_user("customer", full_name="Rita Retain")
    signature = stored_file(app, "inspections", "c" * 64 + ".png")
    photo = stored_file(app, "licences", "d" * 64 + ".jpg")
    hire = closed_hire(customer, ended_days_ago=80, signature=signature.name, photo=photo.name)
    auth.sign_in_as("admin")

    # Day 80: not due yet, but the admins see it coming (within 30 days).
    tick(utcnow().isoformat())
    assert db.session.get(CustomerProfile, customer.id).licence_number == "CUSTO907150J99AB"
    page = client.get("/admin/privacy/retention").get_data(as_text=True)
    assert "Rita Retain" in page and "licence number, licence photo, signature" in page
    assert due_for_deletion(utcnow()) == []

    # The clock moves 11 days on: day 91, the tick deletes it, audited.
    later = utcnow() + timedelta(days=11)
    assert [d.user.id for d in due_for_deletion(later)] == [customer.id]
    result = tick(later.isoformat())
    assert result["retention_deleted"] == 1
    db.session.expire_all()
    assert db.session.get(CustomerProfile, customer.id).licence_number == ""
    assert all(c.licence_number == "" for c in db.session.scalars(select(LicenceCheck)))
    assert db.session.scalar(select(HireDriver.licence_number)) == ""
    assert db.session.scalar(select(HireCheckin.licence_photo_filename)) == ""
    assert db.session.scalar(select(Inspection.signature_filename)) == ""
    assert not signature.exists() and not photo.exists()
    record = db.session.scalar(select(AuditRecord).where(AuditRecord.action == "privacy.retention_deleted"))
    assert record.object_id == str(customer.id) and record.new["signatures"] == 1
    # The account itself stays (not erased), and a second tick finds nothing more.
    assert db.session.get(User, customer.id).erased_at is None
    assert tick((later + timedelta(minutes=1)).isoformat())["retention_deleted"] == 0
    assert hire.reference in [h.reference for h in db.session.scalars(select(factories.Hire))]


def test_an_open_hire_keeps_the_licence_data(app):
    customer = factories.make_user("customer")
    closed_hire(customer, ended_days_ago=200)
    factories.make_hire(customer=customer)  # a new booking: their licence is needed again
    assert due_for_deletion(utcnow()) == []


def test_a_customer_who_never_hired_has_their_licence_data_deleted_after_the_named_days(app, client, auth):
    days = app.config["NEVER_HIRED_RETENTION_DAYS"]
    signed_up = utcnow() - timedelta(days=days - 5)
    customer = factories.make_user("customer", full_name="Nora Neverhired")
    customer.created_at = signed_up
    db.session.add(LicenceCheck(user_id=customer.id, licence_number="CUSTO907150J99AB", check_code="ABCD2345",
                                idempotency_key=f"never-{customer.id}", status="verified",
                                raw_response={"driver": {"dateOfBirth": "1990-07-15"}}))
    # Another one signed up as long ago but signed in last week: their clock starts again then.
    active = factories.make_user("customer", full_name="Sid Signedin")
    active.created_at, active.last_sign_in_at = signed_up, utcnow() - timedelta(days=7)
    db.session.commit()
    auth.sign_in_as("admin")

    # Not due yet, but the admins' list shows it coming, counted from the sign-up.
    assert tick(utcnow().isoformat())["retention_deleted"] == 0
    page = client.get("/admin/privacy/retention").get_data(as_text=True)
    assert "Nora Neverhired" in page and "never hired" in page and "Sid Signedin" not in page
    assert f"{days} days after they signed up or" in page

    # The clock moves 6 days on: past the named days since sign-up; the tick deletes it, audited.
    later = utcnow() + timedelta(days=6)
    assert [d.user.id for d in due_for_deletion(later)] == [customer.id]
    assert tick(later.isoformat())["retention_deleted"] == 1
    db.session.expire_all()
    assert db.session.get(CustomerProfile, customer.id).licence_number == ""
    check = db.session.scalar(select(LicenceCheck).where(LicenceCheck.user_id == customer.id))
    assert (check.licence_number, check.raw_response) == ("", None)
    record = db.session.scalar(select(AuditRecord).where(AuditRecord.action == "privacy.retention_deleted"))
    assert record.object_id == str(customer.id) and record.new["rule"] == "never_hired"
    assert record.new["licence_numbers"] == 2
    # The recently active one keeps theirs; the account itself is not erased.
    assert db.session.get(CustomerProfile, active.id).licence_number == "CUSTO907150J99AB"
    assert db.session.get(User, customer.id).erased_at is None
    assert tick((later + timedelta(minutes=1)).isoformat())["retention_deleted"] == 0
    # Theirs falls due the named days after their last sign-in.
    assert [d.user.id for d in due_for_deletion(active.last_sign_in_at + timedelta(days=days + 1))] == [active.id]


def test_a_customer_with_any_hire_is_not_counted_as_never_hired(app):
    customer = factories.make_user("customer")
    customer.created_at = utcnow() - timedelta(days=1000)
    db.session.commit()
    factories.make_hire(customer=customer)  # booked: their licence is needed
    assert due_for_deletion(utcnow()) == []

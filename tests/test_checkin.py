"""Online check-in (issue 18): the window, the details, the terms version, the licence photo
(the upload safety of car photos), additional drivers checked by the licence job, and what
the counter then skips and measures."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

import pytest
from PIL import Image
from sqlalchemy import select

from app.counter import counter_board, pickup
from app.extensions import db
from app.models import AuditRecord, HireCheckin, HireDriver, Inspection, LicenceCheck, utcnow
from devtools.licence_standin import LicenceStandIn
from tests import factories
from tests.conftest import post_form
from tests.fuzz.sweeps import png

DRIVER_OK = "SMITH802140JJ9AB"
DRIVER_POINTS = "POINT802140JJ9AB"


@pytest.fixture
def licence_service(app):
    with LicenceStandIn(pause_seconds=0.05) as server:
        app.config.update(LICENCE_API_URL=server.url, LICENCE_API_KEY=server.api_key,
                          LICENCE_READ_TIMEOUT_SECONDS=2, LICENCE_MAX_RETRIES=0)
        yield server


def jpeg(colour=(200, 30, 30), size=(640, 400), exif: bool = False) -> bytes:
    out = io.BytesIO()
    image = Image.new("RGB", size, colour)
    if exif:
        data = Image.Exif()
        data[0x010F] = "SecretCam"  # camera maker: must not survive
        image.save(out, "JPEG", exif=data.tobytes())
    else:
        image.save(out, "JPEG")
    return out.getvalue()


def status_of(client, url: str) -> int:
    response = client.get(url)
    response.close()  # a file sent: close it
    return response.status_code


def soon_hire(customer, hours: float = 24, **kwargs):
    return factories.make_hire(customer=customer, start=utcnow() + timedelta(hours=hours), **kwargs)


def check_in(client, hire, *, photo: bytes | None = None, details=True, terms=True, version="v1"):
    data = {"terms_version": version}
    if details:
        data["confirm_details"] = "y"
    if terms:
        data["accept_terms"] = "y"
    if photo is not None:
        data["licence_photo"] = (io.BytesIO(photo), "licence.jpg")
    return post_form(client, f"/book/hires/{hire.reference}/check-in", data,
                     content_type="multipart/form-data")


def test_check_in_records_details_terms_and_a_clean_licence_photo(app, client, auth):
    customer = auth.sign_in_as("customer")
    hire = soon_hire(customer)
    page = client.get(f"/book/hires/{hire.reference}/check-in").get_data(as_text=True)
    assert "terms of hire (version 1)" in page and "Version v1" in page

    response = check_in(client, hire, photo=jpeg(exif=True))
    assert response.status_code == 303, response.get_data(as_text=True)
    found = db.session.scalar(select(HireCheckin).where(HireCheckin.hire_id == hire.id))
    assert found.is_complete and found.terms_version == "v1"
    assert found.details_confirmed_at is not None and found.terms_accepted_at is not None
    stored = app.config["UPLOAD_DIR"] + "/licences/" + found.licence_photo_filename
    with Image.open(stored) as image:
        assert image.format == "JPEG" and not image.getexif()  # EXIF stripped
    audit = db.session.scalar(select(AuditRecord).where(AuditRecord.action == "checkin.completed"))
    assert audit.new["terms_version"] == "v1" and len(audit.new["terms_sha256"]) == 64
    page = client.get("/book/mine").get_data(as_text=True)
    assert "Checked in" in page
    # The customer sees their photo; nobody else does, staff do.
    url = f"/book/hires/{hire.reference}/check-in/licence-photo/{found.licence_photo_filename}"
    assert status_of(client, url) == 200
    auth.sign_out()
    auth.sign_in_as("customer")
    assert status_of(client, url) == 404
    auth.sign_out()
    auth.sign_in_as("staff")
    assert status_of(client, url) == 200


def test_every_missing_part_is_said_beside_its_field(client, auth):
    hire = soon_hire(auth.sign_in_as("customer"))
    response = check_in(client, hire, details=False, terms=False)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Confirm that your details above are correct." in page
    assert "Read the terms and tick to accept them." in page
    assert "Add a photo of the front of your driving licence." in page
    assert db.session.scalar(select(HireCheckin)) is None


def test_terms_changed_since_the_page_was_opened_are_shown_again(client, auth):
    hire = soon_hire(auth.sign_in_as("customer"))
    response = check_in(client, hire, photo=jpeg(), version="v0")
    assert response.status_code == 422
    assert "The terms have changed since you opened this page" in response.get_data(as_text=True)


@pytest.mark.parametrize("upload, message", [
    (png(10_000, 5_000), "too large"),  # 50 megapixels in 146 kB: refused before decoding
    (b"%PDF-1.4 not a photo", "not a photo we can read"),
])
def test_a_hostile_licence_photo_is_refused_with_a_message(client, auth, upload, message):
    hire = soon_hire(auth.sign_in_as("customer"))
    response = check_in(client, hire, photo=upload)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert db.session.scalar(select(HireCheckin)) is None


def test_check_in_opens_48_hours_before_pickup_and_closes_at_pickup(client, auth):
    customer = auth.sign_in_as("customer")
    early = soon_hire(customer, hours=72)
    page = client.get(f"/book/hires/{early.reference}/check-in").get_data(as_text=True)
    assert "Online check-in opens" in page
    response = check_in(client, early, photo=jpeg())
    assert response.status_code == 422 and "opens 48 hours before pickup" in response.get_data(as_text=True)
    late = factories.make_hire(customer=customer, start=utcnow() - timedelta(minutes=5))
    response = check_in(client, late, photo=jpeg())
    assert response.status_code == 422 and "check-in has closed" in response.get_data(as_text=True)


def test_additional_drivers_are_checked_by_the_licence_job(client, auth, licence_service):
    hire = soon_hire(auth.sign_in_as("customer"))
    for name, number, code in (("Sam Smith", DRIVER_OK, "ABCD2345"), ("Pat Point", DRIVER_POINTS, "ABCD2345")):
        response = post_form(client, f"/book/hires/{hire.reference}/check-in/drivers",
                             {"full_name": name, "licence_number": number, "check_code": code},
                             token_from=f"/book/hires/{hire.reference}/check-in")
        assert response.status_code == 303, response.get_data(as_text=True)
    checks = {c.licence_number: c for c in db.session.scalars(
        select(LicenceCheck).where(LicenceCheck.driver_id.is_not(None)))}
    assert checks[DRIVER_OK].status == "verified"
    assert checks[DRIVER_POINTS].status == "refused" and "penalty points" in checks[DRIVER_POINTS].message
    assert all(c.hire_id == hire.id for c in checks.values())
    # The hirer's own licence status is not touched by the drivers' checks.
    assert hire.customer.profile.licence_status == "verified"
    page = client.get(f"/book/hires/{hire.reference}/check-in").get_data(as_text=True)
    assert "Sam Smith — licence check:" in page and "penalty points" in page


def test_a_driver_with_a_bad_licence_number_or_the_hirers_own_is_refused(client, auth):
    customer = auth.sign_in_as("customer")
    hire = soon_hire(customer)
    url = f"/book/hires/{hire.reference}/check-in/drivers"
    for number, message in (("NOTALICENCE", "16-character driving licence number"),
                            (customer.profile.licence_number, "That is your own licence")):
        response = post_form(client, url, {"full_name": "X Y", "licence_number": number,
                                           "check_code": "ABCD2345"},
                             token_from=f"/book/hires/{hire.reference}/check-in")
        assert response.status_code == 422 and message in response.get_data(as_text=True)
    assert db.session.scalar(select(HireDriver)) is None


def test_a_checked_in_hire_skips_the_licence_step_at_the_counter_and_the_board_says_so(
        client, auth, licence_service):
    customer = auth.sign_in_as("customer")
    hire = soon_hire(customer, hours=3)
    assert check_in(client, hire, photo=jpeg()).status_code == 303
    steps = pickup.pickup_steps(hire, None)
    assert steps[0].done  # hirer verified, no drivers: nothing else to check
    board = counter_board.board(branch_id=None, now=utcnow())
    assert hire.id in board.checked_in
    # A named driver whose licence is refused: the counter checks it after all.
    post_form(client, f"/book/hires/{hire.reference}/check-in/drivers",
              {"full_name": "Pat Point", "licence_number": DRIVER_POINTS, "check_code": "ABCD2345"},
              token_from=f"/book/hires/{hire.reference}/check-in")
    assert not pickup.pickup_steps(hire, None)[0].done

    auth.sign_out()
    auth.sign_in_as("staff")
    page = client.get("/counter/").get_data(as_text=True)
    assert "checked in online" in page


def test_the_board_shows_how_long_each_pickup_took(app, client, auth):
    hire = factories.make_hire(start=utcnow() - timedelta(hours=1), state=factories.HireState.ACTIVE)
    started = utcnow() - timedelta(minutes=1, seconds=5)
    db.session.add(Inspection(hire_id=hire.id, kind="pickup", started_at=started,
                              completed_at=started + timedelta(seconds=45), checklist={},
                              damages=[], waivers={}, charge_lines=[]))
    hire.end_at = utcnow() + timedelta(hours=3)
    hire.occupancy.ends_at = hire.end_at
    db.session.commit()
    auth.sign_in_as("staff")
    page = client.get("/counter/?branch=all").get_data(as_text=True)
    assert "picked up in 0 min 45 s" in page

"""Workflow 5: adding, editing and retiring cars; the fleet list; photos."""

from __future__ import annotations

import io
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

from PIL import Image
from sqlalchemy import select

from app.extensions import db
from app.fleet import validators as v
from app.models import AuditRecord, Car, CarPhoto, HireState
from tests import factories
from tests.conftest import AuthActions, csrf_token, post_form


def jpeg_with_secrets(size=(64, 48)) -> bytes:
    """A JPEG carrying a camera make, GPS position, a comment and a sideways orientation."""
    image = Image.new("RGB", size, (200, 30, 30))
    exif = Image.Exif()
    exif[0x010F] = "SpyCam"
    exif[0x0112] = 6  # rotate 90 degrees to show upright
    exif[0x8825] = {1: "N", 2: (51.0, 30.0, 12.0), 3: "W", 4: (0.0, 7.0, 5.0)}
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes(), comment=b"home address")
    return out.getvalue()


def png_bytes(size=(40, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (20, 120, 30)).save(out, "PNG")
    return out.getvalue()


def car_form(car_class, branch, **overrides) -> dict:
    data = {"plate": "ab12 cde", "vin": "wvwzzz1kzaw000123", "make": "Volkswagen", "model": "Golf",
            "year": "2024", "car_class_id": str(car_class.id), "seats": "5", "doors": "5",
            "transmission": "manual", "fuel_type": "petrol", "co2_g_km": "128",
            "odometer_miles": "1200", "home_branch_id": str(branch.id), "daily_rate_override": ""}
    data.update(overrides)
    return data


def add_car(client, data, photos=()):
    payload = {"csrf_token": csrf_token(client, "/fleet/cars/new"), **data,
               "photos": [(io.BytesIO(p), name) for name, p in photos]}
    return client.post("/fleet/cars/new", data=payload, content_type="multipart/form-data")


# --- validators ----------------------------------------------------------------------------

def test_plates_in_every_uk_format_normalised():
    for typed, stored in (("ab12 cde", "AB12CDE"), (" AB12CDE ", "AB12CDE"), ("a123 bcd", "A123BCD"),
                          ("abc 123d", "ABC123D"), ("1234 ab", "1234AB"), ("ab-12-cde", "AB12CDE")):
        assert v.plate_error(typed) is None, typed
        assert v.normalise_plate(typed) == stored
    assert v.plate_error("") == "Enter the registration plate."
    assert "at most 7" in v.plate_error("AB12CDEF")
    assert "not a UK registration" in v.plate_error("QQ12ABC")
    assert "not a UK registration" in v.plate_error("AB00CDE")
    assert "letters and numbers" in v.plate_error("AB12CD!")
    assert v.format_plate("AB12CDE") == "AB12 CDE"


def test_vins():
    assert v.vin_error("wvwzzz1kzaw000123") is None
    assert "17 characters; this one has 16" in v.vin_error("WVWZZZ1KZAW00012")
    assert "never contains I, O" in v.vin_error("WVWZZZ1KZAW00O1I3")
    assert "capital letters and digits" in v.vin_error("WVWZZZ1KZAW00012*")


# --- adding a car ---------------------------------------------------------------------------

def test_staff_add_a_car_with_a_photo_and_it_is_in_the_list(app, client, auth):
    staff = auth.sign_in_as("staff")
    cls, branch = factories.make_car_class(), factories.make_branch()
    response = add_car(client, car_form(cls, branch, daily_rate_override="45.50"),
                       photos=[("front.jpg", jpeg_with_secrets())])
    assert response.status_code == 303, response.get_data(as_text=True)
    car = db.session.scalar(select(Car).where(Car.plate == "AB12CDE"))
    assert car.vin == "WVWZZZ1KZAW000123" and car.daily_rate_override_pence == 4550
    assert car.status == "available" and len(car.photos) == 1 and car.photo == car.photos[0].filename
    page = client.get("/fleet/").get_data(as_text=True)
    assert "AB12 CDE" in page and f"/media/cars/{car.photo}" in page
    record = db.session.scalar(select(AuditRecord).where(AuditRecord.action == "car.added"))
    assert record.actor_id == staff.id and record.object_id == str(car.id)
    assert record.new["plate"] == "AB12CDE"


def test_duplicates_are_refused_in_any_case_or_spacing(client, auth):
    auth.sign_in_as("admin")
    existing = factories.make_car(plate="AB12CDE", vin="WVWZZZ1KZAW000999")
    cls, branch = existing.car_class, existing.home_branch
    for plate, vin in (("ab 12cde", "wvwzzz1kzaw000999"), (" Ab-12 cDe ", "WVW ZZZ 1KZ AW0 00999"),
                       ("AB12  CDE", "wvw-zzz-1kz-aw0-00999")):
        response = add_car(client, car_form(cls, branch, plate=plate, vin=vin))
        page = response.get_data(as_text=True)
        assert response.status_code == 422, plate
        assert "AB12 CDE is already in the fleet." in page
        assert "That VIN belongs to AB12 CDE already." in page
    assert db.session.scalar(select(db.func.count(Car.id))) == 1
    # Editing another car onto the same plate or VIN, typed another way, is refused too.
    other = factories.make_car(plate="CD34EFG")
    response = post_form(client, f"/fleet/cars/{other.id}/edit", car_form(
        cls, branch, plate="cd34 efg", vin="wvw zzz1kzaw000999", odometer_miles="99999"))
    assert response.status_code == 422
    assert "That VIN belongs to AB12 CDE already." in response.get_data(as_text=True)
    assert db.session.get(Car, other.id).vin != "WVWZZZ1KZAW000999"


def test_every_field_is_checked_with_a_clear_message(client, auth):
    auth.sign_in_as("staff")
    cls, branch = factories.make_car_class(), factories.make_branch()
    response = add_car(client, car_form(
        cls, branch, plate="QQ12ABC", vin="WVWZZZ1KZAW0001O3", make="<script>", model="",
        year="1850", car_class_id="0", seats="12", doors="x", transmission="cvt",
        fuel_type="coal", co2_g_km="-5", odometer_miles="2000000", home_branch_id="999",
        daily_rate_override="lots"))
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    for message in ("That is not a UK registration; enter it like AB12 CDE.",
                    "A VIN never contains O", "Use letters, numbers, spaces and - . &amp; &#39; / ( ) in the make.",
                    "Enter the model.", "Enter from 1900 to 2100.", "Choose a class.", "Enter from 1 to 9.",
                    "Enter a whole number, like 5.", "Not a valid choice", "Enter from 0 to 500 g/km.",
                    "Enter from 0 to 1,000,000 miles.", "Enter an amount in pounds, like 45 or 45.50"):
        assert message in page, message
    assert "<script>" not in page.split("<main", 1)[1].split("</main>")[0].replace(
        'value="&lt;script&gt;"', "")
    assert db.session.scalar(select(db.func.count(Car.id))) == 0


def test_rules_across_fields_and_the_database(client, auth):
    auth.sign_in_as("staff")
    cls, branch = factories.make_car_class(), factories.make_branch()
    response = add_car(client, car_form(cls, branch, year="1989", fuel_type="electric",
                                        co2_g_km="90", home_branch_id="999999"))
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Enter a year from 1990" in page
    assert "An electric car emits 0 g/km" in page
    assert "Choose a branch from the list." in page


def test_edit_a_car_and_the_odometer_never_goes_back(client, auth):
    auth.sign_in_as("staff")
    car = factories.make_car(plate="AB12CDE", odometer_miles=5000)
    other = factories.make_car(plate="CD34EFG")
    page = client.get(f"/fleet/cars/{car.id}/edit").get_data(as_text=True)
    assert 'value="AB12 CDE"' in page
    # (The factory's VINs are not real ones; the form makes staff correct it.)
    form = car_form(car.car_class, car.home_branch, plate="ab12cde", vin="WVWZZZ1KZAW000555",
                    odometer_miles="4999")
    response = post_form(client, f"/fleet/cars/{car.id}/edit", form)
    assert response.status_code == 422
    assert "The odometer cannot go down: it last read 5,000 miles." in response.get_data(as_text=True)
    response = post_form(client, f"/fleet/cars/{car.id}/edit", {**form, "plate": "cd34 efg"})
    assert "CD34 EFG is already in the fleet." in response.get_data(as_text=True)
    response = post_form(client, f"/fleet/cars/{car.id}/edit", {**form, "odometer_miles": "6100"})
    assert response.status_code == 303
    db.session.refresh(car)
    assert car.odometer_miles == 6100 and car.make == "Volkswagen"
    record = db.session.scalar(select(AuditRecord).where(AuditRecord.action == "car.updated"))
    assert record.old["odometer_miles"] == 5000 and record.new["odometer_miles"] == 6100
    assert other.plate == "CD34EFG"


# --- the fleet list ------------------------------------------------------------------------

def test_the_list_filters_and_sorts(client, auth):
    auth.sign_in_as("staff")
    mini, estate = factories.make_car_class(code="mini"), factories.make_car_class(code="estate")
    london, leeds = factories.make_branch(), factories.make_branch()
    factories.make_car(plate="AA11AAA", make="Fiat", model="500", year=2019, car_class=mini, branch=london)
    factories.make_car(plate="BB22BBB", make="Skoda", model="Octavia Estate", year=2023,
                       car_class=estate, branch=leeds, fuel_type="diesel")
    factories.make_car(plate="CC33CCC", make="Fiat", model="Panda", year=2021, car_class=mini,
                       branch=leeds, status="retired")

    def plates(**params):
        page = client.get("/fleet/", query_string=params).get_data(as_text=True)
        return re.findall(r'<span class="plate">([A-Z0-9 ]+)</span>', page)

    assert plates() == ["AA11 AAA", "BB22 BBB"]  # retired cars are hidden by default
    assert plates(status="all", q="fiat") == ["AA11 AAA", "CC33 CCC"]
    assert plates(status="all", q="cc33 c") == ["CC33 CCC"]
    assert plates(status="all", q="octavia est") == ["BB22 BBB"]
    assert plates(car_class=estate.id) == ["BB22 BBB"]
    assert plates(branch=leeds.id, status="all") == ["BB22 BBB", "CC33 CCC"]
    assert plates(fuel="diesel") == ["BB22 BBB"]
    assert plates(status="all", sort="year", order="desc") == ["BB22 BBB", "CC33 CCC", "AA11 AAA"]
    assert plates(status="retired") == ["CC33 CCC"]
    assert plates(q="%") == []  # LIKE wildcards are matched literally


def test_a_search_with_control_characters_says_so_and_shows_the_unfiltered_list(client, auth):
    """A NUL in the search is refused with a message (PostgreSQL cannot even be asked it)."""
    auth.sign_in_as("staff")
    factories.make_car(plate="AA11AAA", make="Fiat")
    for url, headers in (("/fleet/?q=fi%00at", {}), ("/fleet/?q=%1b", {"HX-Request": "true"})):
        response = client.get(url, headers=headers)
        page = response.get_data(as_text=True)
        assert response.status_code == 422, url
        assert "Search: Remove the control characters." in page
        assert "AA11 AAA" in page
    assert client.get("/fleet/?fuel=coal").status_code == 422
    assert client.get("/fleet/hires/AB%00C").status_code == 400  # a NUL in the address: refused up front


def test_typing_in_the_filter_returns_just_the_results(client, auth):
    auth.sign_in_as("staff")
    factories.make_car(plate="AA11AAA", make="Fiat")
    response = client.get("/fleet/?q=fia", headers={"HX-Request": "true"})
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert page.lstrip().startswith('<div id="fleet-results"') and "<html" not in page
    assert "AA11 AAA" in page
    assert "HX-Request" in response.headers["Vary"]


# --- retiring -------------------------------------------------------------------------------

def test_retire_is_refused_while_hires_are_to_come_and_lists_them(client, auth):
    auth.sign_in_as("staff")
    car = factories.make_car()
    future = factories.make_hire(car=car, start=datetime.now(timezone.utc) + timedelta(days=10))
    past = factories.make_hire(car=car, start=datetime.now(timezone.utc) - timedelta(days=30),
                               state=HireState.CLOSED, occupy=False)
    response = post_form(client, f"/fleet/cars/{car.id}/retire", {}, token_from=f"/fleet/cars/{car.id}")
    page = response.get_data(as_text=True)
    assert response.status_code == 409
    assert "1 hire still to come" in page
    assert f'href="/fleet/hires/{future.reference}"' in page
    assert f"/fleet/hires/{past.reference}" not in page
    assert db.session.get(Car, car.id).status == "available"
    assert client.get(f"/fleet/hires/{future.reference}").status_code == 200


def test_retire_a_car_with_no_hires_to_come(client, auth):
    auth.sign_in_as("admin")
    car = factories.make_car()
    factories.make_hire(car=car, start=datetime.now(timezone.utc) - timedelta(days=30),
                        state=HireState.CLOSED, occupy=False)
    response = post_form(client, f"/fleet/cars/{car.id}/retire", {}, token_from=f"/fleet/cars/{car.id}")
    assert response.status_code == 303
    car = db.session.get(Car, car.id)
    assert car.status == "retired" and car.retired_at is not None
    assert db.session.scalar(select(AuditRecord).where(AuditRecord.action == "car.retired"))
    response = post_form(client, f"/fleet/cars/{car.id}/reinstate", {}, token_from=f"/fleet/cars/{car.id}")
    assert db.session.get(Car, car.id).status == "available"


# --- photos ---------------------------------------------------------------------------------

def test_photos_are_stripped_named_by_content_and_public(app, client, auth):
    auth.sign_in_as("staff")
    car = factories.make_car()
    original = jpeg_with_secrets()
    response = client.post(f"/fleet/cars/{car.id}/photos", content_type="multipart/form-data", data={
        "csrf_token": csrf_token(client, f"/fleet/cars/{car.id}"),
        "photos": [(io.BytesIO(original), "../../etc/passwd.jpg"), (io.BytesIO(png_bytes()), "b.gif")]})
    assert response.status_code == 303
    photos = db.session.scalars(select(CarPhoto).where(CarPhoto.car_id == car.id)
                                .order_by(CarPhoto.position)).all()
    assert [p.content_type for p in photos] == ["image/jpeg", "image/png"]
    jpeg = photos[0]
    assert re.fullmatch(r"[0-9a-f]{64}\.jpg", jpeg.filename)
    stored = (Path(app.config["UPLOAD_DIR"]) / "cars" / jpeg.filename).read_bytes()
    import hashlib
    assert hashlib.sha256(stored).hexdigest() == jpeg.filename[:64]
    assert b"SpyCam" not in stored and b"home address" not in stored
    image = Image.open(io.BytesIO(stored))
    assert not dict(image.getexif())
    assert image.size == (48, 64) == (jpeg.width, jpeg.height)  # turned upright
    # Anyone may fetch it: customers see it in search.
    anonymous = app.test_client()
    served = anonymous.get(f"/media/cars/{jpeg.filename}")
    assert served.status_code == 200 and served.mimetype == "image/jpeg"
    assert served.data == stored
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert "immutable" in served.headers["Cache-Control"]
    served.close()
    assert anonymous.get("/media/cars/" + "a" * 64 + ".jpg").status_code == 404
    assert anonymous.get("/media/cars/..%2F..%2Fconfig.py").status_code == 404


def test_bad_uploads_are_refused_with_reasons(make_app):
    app = make_app(CAR_PHOTO_MAX_BYTES=2000, CAR_PHOTO_MAX_PIXELS=10_000)
    with app.app_context():
        client = app.test_client()
        AuthActions(client).sign_in_as("staff")
        car = factories.make_car()

        def upload(data: bytes, name: str):
            return client.post(f"/fleet/cars/{car.id}/photos", content_type="multipart/form-data",
                               data={"csrf_token": csrf_token(client, f"/fleet/cars/{car.id}"),
                                     "photos": [(io.BytesIO(data), name)]})

        not_image = upload(b"<?php system($_GET['x']); ?>", "car.jpg")
        assert not_image.status_code == 422
        assert "not a photo we can read" in not_image.get_data(as_text=True)
        gif = io.BytesIO()
        Image.new("RGB", (10, 10)).save(gif, "GIF")
        assert "Upload a JPEG, PNG or WebP" in upload(gif.getvalue(), "car.gif").get_data(as_text=True)
        big = upload(b"\xff" * 3000, "big.jpg")
        assert "too large" in big.get_data(as_text=True)
        huge = upload(png_bytes((200, 100)), "wide.png")
        assert "too large (200×100 pixels)" in huge.get_data(as_text=True)
        assert db.session.scalar(select(db.func.count(CarPhoto.id))) == 0


def test_cover_photo_and_removal(app, client, auth):
    auth.sign_in_as("staff")
    car = factories.make_car()
    client.post(f"/fleet/cars/{car.id}/photos", content_type="multipart/form-data", data={
        "csrf_token": csrf_token(client, f"/fleet/cars/{car.id}"),
        "photos": [(io.BytesIO(png_bytes((40, 30))), "a.png"), (io.BytesIO(png_bytes((50, 30))), "b.png")]})
    car = db.session.get(Car, car.id)
    first, second = car.photos
    second_name = second.filename
    assert car.photo == first.filename
    post_form(client, f"/fleet/cars/{car.id}/photos/{second.id}/cover", {}, token_from=f"/fleet/cars/{car.id}")
    db.session.refresh(car)
    assert car.photo == second.filename
    post_form(client, f"/fleet/cars/{car.id}/photos/{second.id}/delete", {}, token_from=f"/fleet/cars/{car.id}")
    db.session.refresh(car)
    assert car.photo == first.filename and len(car.photos) == 1
    assert not (Path(app.config["UPLOAD_DIR"]) / "cars" / second_name).exists()
    assert app.test_client().get(f"/media/cars/{second_name}").status_code == 404

"""The counter: board, pickup and return through the HTTP layer, as a tablet would use it."""

from __future__ import annotations

import base64
import io
from datetime import datetime, timedelta, timezone

import pytest
from PIL import Image
from sqlalchemy import func, select

from app.extensions import db
from app.filters import money
from app.hire_access import hire_by_reference
from app.models import AuditRecord, HireState, Inspection, InspectionPhoto, LicenceCheck, Occupancy
from app.counter import car_return, inspections
from tests import factories
from tests.conftest import csrf_token
from tests.test_licence import GOOD_CODE, HX, service, standin  # noqa: F401 (fixtures)

PANELS = ("front", "rear", "left", "right", "roof", "windscreen", "wheels", "interior")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def jpeg_with_gps(size=(64, 48)) -> bytes:
    img = Image.new("RGB", size, (200, 10, 10))
    exif = Image.Exif()
    exif[0x010F] = "SpyCam"
    exif[0x8825] = {1: "N", 2: (51.0, 30.0, 12.5), 3: "W", 4: (0.0, 7.0, 39.0)}
    out = io.BytesIO()
    img.save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


def signature_png(blank: bool = False) -> str:
    img = Image.new("RGBA", (300, 100), (0, 0, 0, 0))
    if not blank:
        for x in range(20, 280):
            img.putpixel((x, 50 + (x % 7)), (0, 0, 0, 255))
    out = io.BytesIO()
    img.save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def verified_check(hire, *, status="verified"):
    check = LicenceCheck(user_id=hire.customer_id, hire_id=hire.id, licence_number="CUSTO907150J99AB",
                         check_code="ABCD1234", idempotency_key=f"test-check-{hire.id}-{status}",
                         status=status, completed_at=_now(), message="" if status == "verified" else "Disqualified")
    db.session.add(check)
    db.session.commit()
    return check


@pytest.fixture
def staff_client(app, client, auth):
    branch = factories.make_branch()
    staff = auth.sign_in_as("staff", branch=branch)
    client.staff = staff
    client.branch = branch
    return client


def post(client, url, data, **kw):
    return client.post(url, data={"csrf_token": csrf_token(client, "/counter/"), **data}, **kw)


def condition(odometer, fuel, **panel_states):
    data = {"odometer": str(odometer), "fuel_eighths": str(fuel)}
    for p in PANELS:
        state, note = panel_states.get(p, ("ok", ""))
        data[f"panel_{p}"], data[f"note_{p}"] = state, note
    return data


def _pickup_hire(branch, **kw):
    car = factories.make_car(branch=branch, odometer_miles=12_000)
    start = _now() + timedelta(hours=2)
    return factories.make_hire(car=car, start=start, days=3, **kw)


def test_board_lists_pickups_returns_and_overdue_and_filters(staff_client):
    branch = staff_client.branch
    pickup = _pickup_hire(branch)
    active = factories.make_hire(car=factories.make_car(branch=branch), start=_now() - timedelta(days=2),
                                 days=3, state=HireState.ACTIVE)
    late = factories.make_hire(car=factories.make_car(branch=branch), start=_now() - timedelta(days=4),
                               days=3, state=HireState.ACTIVE)
    elsewhere = _pickup_hire(factories.make_branch())
    html = staff_client.get("/counter/").get_data(as_text=True)
    for h in (pickup, active, late):
        assert h.reference in html
    assert elsewhere.reference not in html  # staff see their own branch by default
    assert "· overdue" in html.split(late.reference, 1)[1][:500]
    assert elsewhere.reference in staff_client.get("/counter/?branch=all").get_data(as_text=True)
    fragment = staff_client.get(f"/counter/?q={pickup.car.plate.lower()}", headers={"HX-Request": "true"})
    body = fragment.get_data(as_text=True)
    assert "<html" not in body and pickup.reference in body and active.reference not in body


def test_whole_pickup_then_return(staff_client, app):
    hire = _pickup_hire(staff_client.branch)
    ref = hire.reference
    verified_check(hire)
    page = staff_client.get(f"/counter/hires/{ref}")
    assert page.status_code == 200 and "Licence and photo ID" in page.get_data(as_text=True)

    # Handing over before the steps are done is refused.
    early = post(staff_client, f"/counter/hires/{ref}/pickup/hand-over", {"version": ""})
    assert early.status_code == 422 and "Finish these steps first" in early.get_data(as_text=True)

    assert post(staff_client, f"/counter/hires/{ref}/pickup/id-check", {"id_matches": "y"}).status_code == 303
    r = post(staff_client, f"/counter/hires/{ref}/pickup/condition",
             condition(12_050, 8, left=("scratch", "long scratch on rear door")))
    assert r.status_code == 303
    r = post(staff_client, f"/counter/hires/{ref}/pickup/photos",
             {"panel": "left", "photo": (io.BytesIO(jpeg_with_gps()), "left.jpg")},
             content_type="multipart/form-data")
    assert r.status_code == 303
    assert post(staff_client, f"/counter/hires/{ref}/pickup/signature",
                {"signature": signature_png()}).status_code == 303
    r = post(staff_client, f"/counter/hires/{ref}/pickup/hand-over", {})
    assert r.status_code == 303, r.get_data(as_text=True)
    db.session.expire_all()
    hire = hire_by_reference(ref)
    assert hire.state == "active" and hire.car.odometer_miles == 12_050

    # Return: 400 miles over three days (600 allowed), one eighth short, a dent charged.
    r = post(staff_client, f"/counter/hires/{ref}/return/condition",
             condition(12_450, 7, left=("dent", "new dent in front door")))
    assert r.status_code == 303
    page = staff_client.get(f"/counter/hires/{ref}").get_data(as_text=True)
    assert "Fuel: 1/8 of a tank short" in page and "Refuelling service" in page
    bad = post(staff_client, f"/counter/hires/{ref}/return/damage",
               {"panel": "left", "amount": "-5", "reason": "dent"})
    assert bad.status_code == 422 and "Enter an amount in pounds" in bad.get_data(as_text=True)
    too_much = post(staff_client, f"/counter/hires/{ref}/return/damage",
                    {"panel": "left", "amount": "100000", "reason": "dent"})
    assert too_much.status_code == 422 and "most a counter can charge" in too_much.get_data(as_text=True)
    assert post(staff_client, f"/counter/hires/{ref}/return/damage",
                {"panel": "left", "amount": "120.50", "reason": "dent in front door"}).status_code == 303
    no_reason = post(staff_client, f"/counter/hires/{ref}/return/waive", {"code": "refuelling", "reason": ""})
    assert no_reason.status_code == 422
    assert post(staff_client, f"/counter/hires/{ref}/return/waive",
                {"code": "refuelling", "reason": "regular customer"}).status_code == 303
    insp = inspections.inspection(hire, "return")
    r = post(staff_client, f"/counter/hires/{ref}/return/settle", {"version": str(insp.version)})
    assert r.status_code == 303, r.get_data(as_text=True)
    db.session.expire_all()
    insp = inspections.inspection(hire, "return")
    owed = {line["code"]: (0 if line["waived_reason"] else line["amount_pence"]) for line in insp.charge_lines}
    # Returned about three days early: three unused days back at 50% of the 39.00 day rate.
    assert owed == {"fuel": 1200, "refuelling": 0, "damage1": 12_050, "unused": -3 * 3900 // 2}
    assert insp.total_pence == sum(owed.values())
    # No card on file: the charge beyond the (absent) deposit is left to staff, so the hire
    # stays returned (closed only once the money is settled).
    assert hire_by_reference(ref).state == "returned"
    actions = set(db.session.scalars(select(AuditRecord.action).where(AuditRecord.object_id == str(hire.id))))
    assert {"pickup.id_checked", "pickup.condition", "pickup.photo", "pickup.signed", "pickup.handed_over",
            "return.condition", "return.damage_added", "return.charge_waived", "return.settled",
            "return.payment_problem"} <= actions


def test_second_tablet_cannot_settle_again(staff_client, app):
    hire = factories.make_hire(car=factories.make_car(branch=staff_client.branch, odometer_miles=100),
                               start=_now() - timedelta(days=2), days=3, state=HireState.ACTIVE)
    staff = staff_client.staff
    out = Inspection(hire_id=hire.id, kind="pickup", odometer_miles=100, fuel_eighths=8, checklist={},
                     damages=[], waivers={}, charge_lines=[], condition_recorded_at=_now())
    db.session.add(out)
    db.session.commit()
    insp = inspections.open_inspection(hire, "return", by=staff, now=_now())
    inspections.record_condition(insp, by=staff, now=_now(), odometer=150, fuel_eighths=8,
                                 checklist={p: {"state": "ok", "note": ""} for p in PANELS})
    seen_version = insp.version
    first = post(staff_client, f"/counter/hires/{hire.reference}/return/settle", {"version": str(seen_version)})
    assert first.status_code == 303
    second = post(staff_client, f"/counter/hires/{hire.reference}/return/settle", {"version": str(seen_version)})
    body = second.get_data(as_text=True)
    assert second.status_code == 409
    assert f"already updated by {staff.full_name}" in body


def test_photo_uploads_are_checked_and_stripped(staff_client, app):
    hire = _pickup_hire(staff_client.branch)
    url = f"/counter/hires/{hire.reference}/pickup/photos"
    not_image = post(staff_client, url, {"panel": "front", "photo": (io.BytesIO(b"%PDF-1.4 nope"), "x.jpg")},
                     content_type="multipart/form-data")
    assert not_image.status_code == 422 and "not a photo" in not_image.get_data(as_text=True)
    app.config["PHOTO_MAX_BYTES"] = 500
    big = post(staff_client, url, {"panel": "front", "photo": (io.BytesIO(jpeg_with_gps((400, 300))), "big.jpg")},
               content_type="multipart/form-data")
    assert big.status_code == 422 and "too large" in big.get_data(as_text=True)
    app.config["PHOTO_MAX_BYTES"] = 8 * 1024 * 1024
    ok = post(staff_client, url, {"panel": "front", "photo": (io.BytesIO(jpeg_with_gps()), "car.jpg")},
              content_type="multipart/form-data")
    assert ok.status_code == 303
    photo = db.session.scalars(select(InspectionPhoto)).one()
    stored = (inspections.upload_dir() / photo.filename).read_bytes()
    exif = Image.open(io.BytesIO(stored)).getexif()
    assert 0x8825 not in exif and 0x010F not in exif  # GPS and camera make gone
    served = staff_client.get(f"/counter/photos/{photo.thumb_filename}")
    assert served.status_code == 200 and served.mimetype == "image/jpeg"
    assert Image.open(io.BytesIO(served.get_data())).size[0] <= 320  # a thumbnail
    served.close()


def test_blank_signature_refused(staff_client):
    hire = _pickup_hire(staff_client.branch)
    r = post(staff_client, f"/counter/hires/{hire.reference}/pickup/signature",
             {"signature": signature_png(blank=True)})
    assert r.status_code == 422 and "empty" in r.get_data(as_text=True)


def test_resume_after_dropped_connection(staff_client):
    hire = _pickup_hire(staff_client.branch)
    verified_check(hire)
    post(staff_client, f"/counter/hires/{hire.reference}/pickup/id-check", {"id_matches": "y"})
    post(staff_client, f"/counter/hires/{hire.reference}/pickup/condition", condition(12_010, 6))
    # The tablet reloads (or a second tablet opens the hire): everything done so far is there.
    page = staff_client.get(f"/counter/hires/{hire.reference}").get_data(as_text=True)
    assert 'value="12010"' in page
    assert "Photo ID checked by" in page
    steps = page.split('aria-label="Steps"')[1].split("</ol>")[0]
    assert steps.count("✓") == 2  # licence+ID and condition done; signature next


def test_refused_licence_blocks_hand_over(staff_client):
    hire = _pickup_hire(staff_client.branch)
    verified_check(hire, status="refused")
    post(staff_client, f"/counter/hires/{hire.reference}/pickup/id-check", {"id_matches": "y"})
    page = staff_client.get(f"/counter/hires/{hire.reference}").get_data(as_text=True)
    assert "Disqualified" in page
    refused = post(staff_client, f"/counter/hires/{hire.reference}/pickup/hand-over", {})
    assert refused.status_code == 422 and "Licence and ID" in refused.get_data(as_text=True)
    assert hire_by_reference(hire.reference).state == "confirmed"


def test_customer_cannot_reach_counter(client, auth):
    auth.sign_in_as("customer")
    assert client.get("/counter/").status_code == 403


def test_forged_version_is_a_clear_4xx_not_a_500(staff_client):
    hire = _pickup_hire(staff_client.branch)
    r = post(staff_client, f"/counter/hires/{hire.reference}/pickup/id-check",
             {"id_matches": "y", "version": "9" * 400_000})
    assert r.status_code == 422


# --- issue 14, section 3: the pickup page alone is enough -----------------------------------

def _section(page: str, section_id: str) -> str:
    return page.split(f'id="{section_id}"', 1)[1].split("</section>", 1)[0]


def test_step_one_rechecks_the_licence_and_refreshes_the_pickup_when_the_answer_is_in(staff_client, service):
    hire = _pickup_hire(staff_client.branch)
    ref = hire.reference
    step_one = _section(staff_client.get(f"/counter/hires/{ref}").get_data(as_text=True), "step-licence")
    assert "Not checked yet" in step_one
    assert f'hx-post="/counter/hires/{ref}/licence-check"' in step_one and "Check the licence now" in step_one

    started = post(staff_client, f"/counter/hires/{ref}/licence-check", {"check_code": GOOD_CODE}, headers=HX)
    assert started.status_code == 200 and started.headers["HX-Trigger"] == "licence-check-started"
    status = staff_client.get(f"/counter/hires/{ref}/licence-check", headers=HX)
    assert "Verified" in status.get_data(as_text=True)
    assert status.headers["HX-Trigger"] == "licence-checked"  # the steps and hand-over refresh
    page = staff_client.get(f"/counter/hires/{ref}").get_data(as_text=True)
    assert 'hx-trigger="licence-check-started from:body, licence-checked from:body"' in page
    assert "The licence has not been checked" not in _section(page, "step-handover")


def test_a_check_still_running_does_not_refresh_the_pickup(staff_client):
    hire = _pickup_hire(staff_client.branch)
    db.session.add(LicenceCheck(user_id=hire.customer_id, hire_id=hire.id, licence_number="CUSTO907150J99AB",
                                check_code="ABCD1234", idempotency_key="running", status="pending",
                                requested_at=_now()))
    db.session.commit()
    status = staff_client.get(f"/counter/hires/{hire.reference}/licence-check", headers=HX)
    assert "Checking…" in status.get_data(as_text=True) and "HX-Trigger" not in status.headers


def test_hand_over_refusal_and_settle_confirm_in_the_page_with_the_amounts(staff_client):
    hire = _pickup_hire(staff_client.branch)
    ref = hire.reference
    verified_check(hire)
    page = staff_client.get(f"/counter/hires/{ref}").get_data(as_text=True)
    assert "hx-confirm" not in page and "confirm(" not in page  # no native dialog
    handover = _section(page, "step-handover")
    dialog = handover.split('<dialog class="confirm" id="handover-dialog"', 1)[1].split("</dialog>", 1)[0]
    assert f"Hand over {hire.car.plate} to {hire.customer.full_name}?" in dialog
    assert "£250.00" in dialog and "No saved card: take the deposit another way." in dialog
    assert "Confirm hand-over" in dialog
    refusal = handover.split('id="refuse-dialog"', 1)[1].split("</dialog>", 1)[0]
    assert "refunded in full" in refusal and "Confirm refusal" in refusal

    post(staff_client, f"/counter/hires/{ref}/pickup/id-check", {"id_matches": "y"})
    post(staff_client, f"/counter/hires/{ref}/pickup/condition", condition(12_010, 8))
    post(staff_client, f"/counter/hires/{ref}/pickup/signature", {"signature": signature_png()})
    assert post(staff_client, f"/counter/hires/{ref}/pickup/hand-over", {}).status_code == 303
    post(staff_client, f"/counter/hires/{ref}/return/condition", condition(12_100, 6))
    page = staff_client.get(f"/counter/hires/{ref}").get_data(as_text=True)
    assert "hx-confirm" not in page
    settle = page.split('id="settle-dialog"', 1)[1].split("</dialog>", 1)[0]
    owed = sum(line.owed_pence for line in car_return.preview_charges(
        hire, inspections.inspection(hire, "return"), now=_now()))
    assert f"Settle {hire.reference}?" in settle and "Confirm and settle" in settle
    # Back the same day, fuel short: the unused days' refund is larger than the fuel charges.
    assert owed < 0 and money(owed) in settle.split("Total", 1)[1]
    refund = settle.split("Refunded to the customer", 1)[1]
    assert money(-owed) in refund and "Taken from the deposit" not in settle  # no deposit was held

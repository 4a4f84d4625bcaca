"""Maintenance blocks: refused over hires, which can be moved to a free car in one action."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from app.extensions import db
from app.fleet import errors, hire_moves, maintenance
from app.models import AuditRecord, Hire, HireState, MaintenanceBlock, Occupancy, OutboundEmail
from tests import factories
from tests.conftest import post_form

# A winter week: London time is UTC, so local form times read as UTC here.
START = datetime(2031, 1, 13, 9, tzinfo=timezone.utc)


def _block_form(starts: str = "2031-01-14T08:00", ends: str = "2031-01-15T17:00", kind="repair"):
    return {"kind": kind, "starts_at": starts, "ends_at": ends, "note": "Brake pads"}


@pytest.fixture
def fleet():
    """One branch, two classes; the car to repair, two spares of its class, one of another."""
    branch, other_branch = factories.make_branch(), factories.make_branch()
    compact, estate = factories.make_car_class(code="compact"), factories.make_car_class(code="estate")
    return {
        "car": factories.make_car(plate="AB12CDE", car_class=compact, branch=branch),
        "spare": factories.make_car(plate="CD34EFG", car_class=compact, branch=branch),
        "busy_spare": factories.make_car(plate="EF56GHI", car_class=compact, branch=branch),
        "retired_spare": factories.make_car(plate="GH78JKL", car_class=compact, branch=branch,
                                            status="retired"),
        "elsewhere": factories.make_car(plate="JK90LMN", car_class=compact, branch=other_branch),
        "estate": factories.make_car(plate="LM01NOP", car_class=estate, branch=branch),
    }


def test_a_free_car_is_booked_out(client, auth, fleet):
    staff = auth.sign_in_as("staff")
    car = fleet["car"]
    response = post_form(client, f"/fleet/cars/{car.id}/maintenance", _block_form(),
                         token_from=f"/fleet/cars/{car.id}")
    assert response.status_code == 303
    block = db.session.scalar(select(MaintenanceBlock))
    assert (block.kind, block.starts_at, block.ends_at, block.created_by_id) == (
        "repair", datetime(2031, 1, 14, 8, tzinfo=timezone.utc),
        datetime(2031, 1, 15, 17, tzinfo=timezone.utc), staff.id)
    assert db.session.scalar(select(Occupancy).where(Occupancy.maintenance_block_id == block.id))
    page = client.get(f"/fleet/cars/{car.id}").get_data(as_text=True)
    assert "Repair: Tue 14 Jan 2031 08:00 to Wed 15 Jan 2031 17:00" in page
    assert db.session.scalar(select(AuditRecord).where(AuditRecord.action == "maintenance.added"))


def test_block_fields_are_checked(client, auth, fleet):
    auth.sign_in_as("staff")
    car = fleet["car"]
    response = post_form(client, f"/fleet/cars/{car.id}/maintenance",
                         _block_form(starts="2031-01-15T08:00", ends="2031-01-14T08:00", kind="wash"),
                         token_from=f"/fleet/cars/{car.id}")
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Choose service, repair or MOT." in page or "Not a valid choice" in page
    response = post_form(client, f"/fleet/cars/{car.id}/maintenance",
                         _block_form(starts="2031-01-15T08:00", ends="2031-01-14T08:00"),
                         token_from=f"/fleet/cars/{car.id}")
    assert "The end must be after the start." in response.get_data(as_text=True)
    response = post_form(client, f"/fleet/cars/{car.id}/maintenance",
                         _block_form(starts="2020-01-01T08:00", ends="2020-01-02T08:00"),
                         token_from=f"/fleet/cars/{car.id}")
    assert "That period is already over." in response.get_data(as_text=True)
    assert db.session.scalar(select(db.func.count(MaintenanceBlock.id))) == 0


def test_the_note_may_have_several_lines_but_no_control_characters(client, auth, fleet):
    auth.sign_in_as("staff")
    car = fleet["car"]
    bad = post_form(client, f"/fleet/cars/{car.id}/maintenance",
                    {**_block_form(), "note": "Brake\x00pads"}, token_from=f"/fleet/cars/{car.id}")
    assert bad.status_code == 422
    assert "Remove the control characters." in bad.get_data(as_text=True)
    good = post_form(client, f"/fleet/cars/{car.id}/maintenance",
                     {**_block_form(), "note": "Brake pads\r\nand discs\tfront"},
                     token_from=f"/fleet/cars/{car.id}")
    assert good.status_code == 303
    assert db.session.scalar(select(MaintenanceBlock.note)) == "Brake pads\r\nand discs\tfront"


def test_a_block_over_a_confirmed_hire_lists_it_with_a_one_click_move(app, client, auth, fleet):
    auth.sign_in_as("staff")
    car, spare = fleet["car"], fleet["spare"]
    hire = factories.make_hire(car=car, start=START, days=3)
    factories.make_hire(car=fleet["busy_spare"], start=START + timedelta(days=1), days=1)
    response = post_form(client, f"/fleet/cars/{car.id}/maintenance", _block_form(),
                         token_from=f"/fleet/cars/{car.id}")
    page = response.get_data(as_text=True)
    assert response.status_code == 409
    assert "it overlaps 1 hire" in page
    assert f'href="/fleet/hires/{hire.reference}"' in page
    choices = re.findall(r'<option[^>]*value="(\d+)"', page.split('id="collisions"', 1)[1])
    # Only the free car of the same class at the same branch, still in the fleet.
    assert choices == [str(spare.id)]
    assert db.session.scalar(select(db.func.count(MaintenanceBlock.id))) == 0

    # One action moves it and emails the customer; the form comes back filled in to retry.
    action = re.search(r'<form class="move" method="post" action="([^"]+)"', page).group(1)
    action = action.replace("&amp;", "&")
    prefix = f"move-{hire.id}"
    return_to = re.search(rf'name="{prefix}-return_to" type="hidden" value="([^"]+)"', page).group(1)
    response = post_form(client, action, {f"{prefix}-to_car_id": str(spare.id),
                                          f"{prefix}-return_to": return_to.replace("&amp;", "&")},
                         token_from=f"/fleet/cars/{car.id}")
    assert response.status_code == 303
    assert response.headers["Location"].startswith(f"/fleet/cars/{car.id}?")
    hire = db.session.get(Hire, hire.id)
    assert hire.car_id == spare.id and hire.occupancy.car_id == spare.id
    assert hire.price_lines == [{"code": "rental", "label": "Rental", "amount_pence": 11700}]
    email = db.session.scalar(select(OutboundEmail).where(OutboundEmail.to_address == hire.customer.email))
    assert email.idempotency_key.startswith(f"hire:{hire.id}:car-moved:")
    assert "CD34 EFG" in email.body_text and hire.reference in email.body_text
    record = db.session.scalar(select(AuditRecord).where(AuditRecord.action == "hire.car_moved"))
    assert (record.old["plate"], record.new["plate"]) == ("AB12CDE", "CD34EFG")

    retry = client.get(response.headers["Location"]).get_data(as_text=True)
    assert 'value="2031-01-14T08:00"' in retry and "Brake pads" in retry
    response = post_form(client, f"/fleet/cars/{car.id}/maintenance", _block_form(),
                         token_from=f"/fleet/cars/{car.id}")
    assert response.status_code == 303


def test_the_htmx_form_answers_with_the_maintenance_section(client, auth, fleet):
    auth.sign_in_as("staff")
    car = fleet["car"]
    factories.make_hire(car=car, start=START, days=3)
    response = post_form(client, f"/fleet/cars/{car.id}/maintenance", _block_form(),
                         token_from=f"/fleet/cars/{car.id}", headers={"HX-Request": "true"})
    page = response.get_data(as_text=True)
    assert response.status_code == 409
    assert page.lstrip().startswith('<section class="card" id="maintenance">')
    assert "<html" not in page


def test_only_confirmed_hires_not_yet_started_move(app, auth, fleet):
    staff = auth.sign_in_as("staff")
    car, spare = fleet["car"], fleet["spare"]
    now = datetime.now(timezone.utc)
    held = factories.make_hire(car=car, start=START, days=1, state=HireState.HELD)
    active = factories.make_hire(car=car, start=now - timedelta(days=1), days=3, state=HireState.ACTIVE)
    for hire in (held, active):
        with pytest.raises(errors.FleetError):
            hire_moves.move_hire(hire, spare, by=staff, now=now)
    confirmed = factories.make_hire(car=car, start=START + timedelta(days=5), days=1)
    with pytest.raises(errors.FleetError, match="not free"):
        hire_moves.move_hire(confirmed, fleet["estate"], by=staff, now=now)
    with pytest.raises(errors.FleetError, match="not free"):
        hire_moves.move_hire(confirmed, fleet["retired_spare"], by=staff, now=now)
    with pytest.raises(errors.FleetError, match="already started"):
        hire_moves.move_hire(confirmed, spare, by=staff, now=START + timedelta(days=6))
    hire_moves.move_hire(confirmed, spare, by=staff, now=now)
    assert db.session.get(Hire, confirmed.id).car_id == spare.id
    assert db.session.scalar(select(db.func.count(OutboundEmail.id))) == 1


def test_a_held_hire_in_the_way_says_why_it_cannot_move(client, auth, fleet):
    auth.sign_in_as("staff")
    car = fleet["car"]
    factories.make_hire(car=car, start=START, days=3, state=HireState.HELD)
    response = post_form(client, f"/fleet/cars/{car.id}/maintenance", _block_form(),
                         token_from=f"/fleet/cars/{car.id}")
    assert response.status_code == 409
    assert "Awaiting payment" in response.get_data(as_text=True)


def test_cancel_a_block_frees_the_car(client, auth, fleet):
    auth.sign_in_as("admin")
    car = fleet["car"]
    block = factories.make_block(car=car, start=START, days=2)
    response = post_form(client, f"/fleet/maintenance/{block.id}/delete", {},
                         token_from=f"/fleet/cars/{car.id}")
    assert response.status_code == 303
    assert db.session.scalar(select(db.func.count(MaintenanceBlock.id))) == 0
    assert db.session.scalar(select(db.func.count(Occupancy.id))) == 0
    factories.make_hire(car=car, start=START, days=2)  # the car can be hired again


def test_overlapping_blocks_are_refused(client, auth, fleet):
    auth.sign_in_as("staff")
    car = fleet["car"]
    factories.make_block(car=car, start=datetime(2031, 1, 15, tzinfo=timezone.utc), days=2)
    response = post_form(client, f"/fleet/cars/{car.id}/maintenance", _block_form(),
                         token_from=f"/fleet/cars/{car.id}")
    assert response.status_code == 409
    assert "1 other maintenance block" in response.get_data(as_text=True)


@pytest.mark.postgres
def test_a_hire_booked_in_the_same_instant_is_caught_by_postgres(app, fleet, monkeypatch):
    """Between the check and the insert someone books the car: the exclusion constraint wins."""
    staff = factories.make_user("staff")
    car = fleet["car"]
    hire = factories.make_hire(car=car, start=START, days=3)
    real = maintenance._overlapping
    calls = []

    def overlooks_the_first_time(*args):
        calls.append(args)
        return [] if len(calls) == 1 else real(*args)

    monkeypatch.setattr(maintenance, "_overlapping", overlooks_the_first_time)
    with pytest.raises(errors.MaintenanceCollision) as err:
        maintenance.add_block(car, kind="repair", starts_at=START, ends_at=START + timedelta(days=1),
                              note="", by=staff, now=START - timedelta(days=1))
    assert [h.id for h in err.value.hires] == [hire.id]
    assert db.session.scalar(select(db.func.count(MaintenanceBlock.id))) == 0

"""Issue 17, the counter's screens: the condition form starts from the car's last readings and
never from a value that would cost the customer money if left untouched; a late return says how
late and how the fee adds up; the panels do not repeat their name in every label."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from app.counter.charges import Rates, ReturnFacts, compute_charges, late_label
from app.extensions import db
from app.models import HireState, Inspection
from tests import factories
from tests.test_counter import _now, _pickup_hire, condition, post, staff_client  # noqa: F401 (fixture)

RATES = Rates(late_grace_minutes=60, late_fee_per_hour_pence=1500, fuel_price_per_eighth_pence=1200,
              refuelling_fee_pence=2000, excess_mileage_pence_per_mile=25, cleaning_fee_pence=4500,
              max_damage_charge_pence=250_000, unused_day_refund_percent=50)
END = datetime(2030, 6, 4, 9, tzinfo=timezone.utc)
H, M = timedelta(hours=1), timedelta(minutes=1)


@pytest.mark.parametrize("late, day_rate, label", [
    (2 * H + 58 * M, 9000, "Late return: 2 h 58 min late (3 started hours × £15.00)"),
    (61 * M, 9000, "Late return: 1 h 1 min late (2 started hours × £15.00)"),
    (10 * H, 4000, "Late return: 10 h late (10 started hours × £15.00, capped at the day rate £40.00)"),
    (26 * H + 5 * M, 9000, "Late return: 1 day 2 h 5 min late (1 day × £90.00 + 3 started hours × £15.00)"),
    (48 * H, 9000, "Late return: 2 days late (2 days × £90.00)"),
])
def test_the_late_return_line_says_how_late_and_how_the_fee_adds_up(late, day_rate, label):
    assert late_label(END, END + late, day_rate_pence=day_rate, rates=RATES) == label
    facts = ReturnFacts(start_at=END - 3 * 24 * H, end_at=END, returned_at=END + late, day_rate_pence=day_rate,
                        miles_allowed_per_day=200, odometer_out=100, odometer_in=100, fuel_out_eighths=8,
                        fuel_in_eighths=8)
    assert [line.label for line in compute_charges(facts, RATES)] == [label]


def _select(html: str, name: str) -> str:
    return re.search(rf'<select[^>]*name="{name}".*?</select>', html, re.S).group(0)


def _selected(html: str, name: str) -> str | None:
    found = re.search(r'<option selected value="([^"]*)"|<option value="([^"]*)" selected', _select(html, name))
    return None if found is None else (found.group(1) or found.group(2))


def _odometer(html: str) -> str | None:
    found = re.search(r'<input[^>]*name="odometer"[^>]*>', html).group(0)
    value = re.search(r'value="([^"]*)"', found)
    return value.group(1) if value else None


def test_pickup_starts_from_the_cars_last_readings(staff_client):
    branch = staff_client.branch
    earlier = factories.make_hire(car=factories.make_car(branch=branch, odometer_miles=12_345),
                                  start=_now() - timedelta(days=9), days=2, state=HireState.CLOSED)
    db.session.add(Inspection(hire_id=earlier.id, kind="return", odometer_miles=12_345, fuel_eighths=6,
                              checklist={}, damages=[], waivers={}, charge_lines=[],
                              condition_recorded_at=_now() - timedelta(days=7)))
    db.session.commit()
    hire = factories.make_hire(car=earlier.car, start=_now() + timedelta(hours=2), days=3)
    html = staff_client.get(f"/counter/hires/{hire.reference}").get_data(as_text=True)
    assert _odometer(html) == "12345"
    assert _selected(html, "fuel_eighths") == "6"  # what the last return recorded


def test_a_first_pickup_makes_staff_choose_the_fuel_level(staff_client):
    hire = _pickup_hire(staff_client.branch)  # a car with no fuel level on record
    html = staff_client.get(f"/counter/hires/{hire.reference}").get_data(as_text=True)
    assert _odometer(html) == "12000"
    assert _selected(html, "fuel_eighths") in (None, "")
    assert "Choose the level on the gauge" in _select(html, "fuel_eighths")
    data = condition(12_000, "")
    answer = post(staff_client, f"/counter/hires/{hire.reference}/pickup/condition", data)
    assert answer.status_code == 422
    assert "Choose the fuel level on the gauge." in answer.get_data(as_text=True)


def test_an_untouched_return_form_costs_the_customer_nothing(staff_client):
    branch = staff_client.branch
    hire = factories.make_hire(car=factories.make_car(branch=branch), start=_now() - timedelta(days=2),
                               days=3, state=HireState.ACTIVE)
    db.session.add(Inspection(hire_id=hire.id, kind="pickup", odometer_miles=20_000, fuel_eighths=7,
                              checklist={}, damages=[], waivers={}, charge_lines=[],
                              condition_recorded_at=hire.start_at))
    db.session.commit()
    html = staff_client.get(f"/counter/hires/{hire.reference}").get_data(as_text=True)
    assert _odometer(html) == "20000" and _selected(html, "fuel_eighths") == "7"
    # Sent as shown: no fuel line, no mileage line.
    assert post(staff_client, f"/counter/hires/{hire.reference}/return/condition",
                condition(20_000, 7)).status_code == 303
    page = staff_client.get(f"/counter/hires/{hire.reference}").get_data(as_text=True)
    assert "Nothing to charge." in page


def test_the_panels_name_themselves_once(staff_client):
    hire = _pickup_hire(staff_client.branch)
    html = staff_client.get(f"/counter/hires/{hire.reference}").get_data(as_text=True)
    front = re.search(r"<legend>Front</legend>.*?</fieldset>", html, re.S).group(0)
    labels = [re.sub(r"<[^>]+>", "", label).strip()
              for label in re.findall(r"<label[^>]*>(.*?)</label>", front, re.S)]
    assert labels == ["Front Condition", "Front Note"]  # accessible names keep the panel
    visible = re.sub(r'<span class="visually-hidden">.*?</span>', "", front)
    assert re.findall(r"<label[^>]*>(.*?)</label>", visible) == ["Condition", "Note"]


def test_the_demo_says_how_staff_sign_in_the_first_time(runner):
    result = runner.invoke(args=["acme", "demo"])
    assert result.exit_code == 0, result.output
    assert "staff@demo.acme" in result.output
    assert "Staff and admin set up two-factor sign-in the first time they sign in" in result.output

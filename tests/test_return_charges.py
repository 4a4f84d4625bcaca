"""The return charge rules, as a table of cases a counter manager can check by hand."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from app.counter.charges import (ChargeError, Damage, Rates, ReturnFacts, compute_charges, settle,
                                 total_owed_pence)

RATES = Rates(late_grace_minutes=60, late_fee_per_hour_pence=1500, fuel_price_per_eighth_pence=1200,
              refuelling_fee_pence=2000, excess_mileage_pence_per_mile=25, cleaning_fee_pence=4500,
              max_damage_charge_pence=250_000, unused_day_refund_percent=50)
START = datetime(2030, 6, 1, 9, tzinfo=timezone.utc)
END = START + timedelta(days=3)
H, M = timedelta(hours=1), timedelta(minutes=1)


def facts(**changes) -> ReturnFacts:
    base = dict(start_at=START, end_at=END, returned_at=END, day_rate_pence=4000,
                miles_allowed_per_day=200, odometer_out=10_000, odometer_in=10_300,
                fuel_out_eighths=8, fuel_in_eighths=8)
    base.update(changes)
    return ReturnFacts(**base)


CASES = [
    # (description, facts, expected {code: pence})
    ("on time, nothing owed", facts(), {}),
    ("inside the grace period", facts(returned_at=END + 60 * M), {}),
    ("one minute past grace: two started hours", facts(returned_at=END + 61 * M), {"late": 3000}),
    ("five hours late", facts(returned_at=END + 5 * H, day_rate_pence=9000), {"late": 7500}),
    ("hourly fees capped at a day rate", facts(returned_at=END + 10 * H), {"late": 4000}),
    ("a day and two hours late", facts(returned_at=END + 26 * H), {"late": 4000 + 3000}),
    ("one eighth short", facts(fuel_in_eighths=7), {"fuel": 1200, "refuelling": 2000}),
    ("empty tank", facts(fuel_in_eighths=0), {"fuel": 9600, "refuelling": 2000}),
    ("more fuel than out: no credit", facts(fuel_out_eighths=6, fuel_in_eighths=8), {}),
    ("exactly the allowance", facts(odometer_in=10_600), {}),
    ("ten miles over", facts(odometer_in=10_610), {"mileage": 250}),
    ("cleaning", facts(needs_cleaning=True), {"cleaning": 4500}),
    ("damage", facts(damages=(Damage("left", 12_000, "dent in door"),)), {"damage1": 12_000}),
    ("early by a day and a half: one unused day at 50%", facts(returned_at=END - 36 * H), {"unused": -2000}),
    ("handed over early, back before the start: the hire's 3 days at most",
     facts(returned_at=START - 5 * 24 * H), {"unused": -6000}),
]


@pytest.mark.parametrize("description,given,expected", CASES, ids=[c[0] for c in CASES])
def test_charge_rules(description, given, expected):
    lines = compute_charges(given, RATES)
    assert {line.code: line.amount_pence for line in lines} == expected
    assert total_owed_pence(lines) == sum(expected.values())


def test_waived_charge_is_listed_but_not_owed():
    lines = compute_charges(facts(needs_cleaning=True, fuel_in_eighths=7,
                                  waivers={"cleaning": "customer was caught in a storm"}), RATES)
    cleaning = next(line for line in lines if line.code == "cleaning")
    assert cleaning.waived_reason == "customer was caught in a storm" and cleaning.owed_pence == 0
    assert total_owed_pence(lines) == 1200 + 2000


@pytest.mark.parametrize("bad,message", [
    (facts(odometer_in=9_999), "odometer"),
    (facts(fuel_in_eighths=9), "eighths"),
    (facts(damages=(Damage("roof", 0, "scratch"),)), "more than zero"),
    (facts(damages=(Damage("roof", 250_001, "scratch"),)), "most a counter"),
    (facts(damages=(Damage("roof", 100, "  "),)), "what the damage"),
    (facts(waivers={"late": ""}), "reason"),
])
def test_impossible_facts_are_refused(bad, message):
    with pytest.raises(ChargeError, match=message):
        compute_charges(bad, RATES)


@pytest.mark.parametrize("total,hold,expected", [
    (0, 25_000, (0, 25_000, 0, 0)),
    (10_000, 25_000, (10_000, 15_000, 0, 0)),
    (25_000, 25_000, (25_000, 0, 0, 0)),
    (30_000, 25_000, (25_000, 0, 5_000, 0)),
    (-2_000, 25_000, (0, 25_000, 0, 2_000)),
    (5_000, 0, (0, 0, 5_000, 0)),
])
def test_settlement_splits_hold_card_and_refund(total, hold, expected):
    s = settle(total, hold)
    assert (s.capture_from_hold_pence, s.release_pence, s.charge_card_pence, s.refund_pence) == expected

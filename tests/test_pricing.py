"""The price engine, as a table of cases: pure functions, no database.

Every expected figure is worked out by hand in integer pence (rate £39.00 a day unless
said otherwise; VAT 20%; 60 minutes' grace). 1 June 2026 is a Monday. The clocks go
forward on Sunday 29 March 2026 and back on Sunday 25 October 2026 (Europe/London).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from app.booking.pricing import (ExtraRate, PricingError, RateTables, SeasonRule, Tier,
                                 charged_days, percent_of, period_dates, quote)

LONDON = "Europe/London"
TABLES = RateTables(
    tiers=(Tier(3, 5), Tier(7, 15), Tier(14, 25)),
    seasons=(SeasonRule("summer-2026", "Summer season", date(2026, 7, 15), date(2026, 8, 31), 20),),
    extras=(
        ExtraRate("child_seat", "Child seat", 800, cap_pence=4800, max_quantity=3),
        ExtraRate("gps", "Satellite navigation", 600, cap_pence=3600),
        ExtraRate("cover_plus", "Cover Plus", 900, cap_pence=9000, group="cover"),
        ExtraRate("cover_full", "Full cover", 1500, cap_pence=15000, group="cover"),
    ),
    one_way_fees={(1, 2): 6500}, one_way_default_pence=7500,
    weekend_days=frozenset({"sat", "sun"}), weekend_percent=10,
    young_driver_per_day_pence=1500, young_driver_cap_pence=15000,
    vat_percent=20, grace_minutes=60,
)


def at(y: int, m: int, d: int, hh: int = 10, mm: int = 0) -> datetime:
    """A wall-clock time in London as aware UTC."""
    return datetime(y, m, d, hh, mm, tzinfo=ZoneInfo(LONDON)).astimezone(timezone.utc)


def lines_of(q) -> dict[str, int]:
    return {line.code: line.amount_pence for line in q.lines}


# (name, start, end, extras, young, (pickup, return branch), rate, expected lines, VAT, total)
CASES = [
    ("one weekday", at(2026, 6, 1), at(2026, 6, 2), {}, False, (1, 1), 3900,
     {"rental": 3900}, 780, 4680),
    ("an hour late is within the grace", at(2026, 6, 1), at(2026, 6, 2, 11), {}, False, (1, 1), 3900,
     {"rental": 3900}, 780, 4680),
    ("61 minutes late is a second day", at(2026, 6, 1), at(2026, 6, 2, 11, 1), {}, False, (1, 1), 3900,
     {"rental": 7800}, 1560, 9360),
    ("three days: 5% tier", at(2026, 6, 1), at(2026, 6, 4), {}, False, (1, 1), 3900,
     {"rental": 11700, "tier": -585}, 2223, 13338),
    ("a week: 15% tier and a weekend", at(2026, 6, 1), at(2026, 6, 8), {}, False, (1, 1), 3900,
     {"rental": 27300, "tier": -4095, "weekend": 780}, 4797, 28782),
    ("a fortnight: 25% tier, two weekends", at(2026, 6, 1), at(2026, 6, 15), {}, False, (1, 1), 3900,
     {"rental": 54600, "tier": -13650, "weekend": 1560}, 8502, 51012),
    ("season starts on the second day", at(2026, 7, 14), at(2026, 7, 17), {}, False, (1, 1), 3900,
     {"rental": 11700, "tier": -585, "season:summer-2026": 1560}, 2535, 15210),
    ("season ends after the second day", at(2026, 8, 30), at(2026, 9, 1), {}, False, (1, 1), 3900,
     {"rental": 7800, "weekend": 390, "season:summer-2026": 1560}, 1950, 11700),
    ("the day after the season is ordinary", at(2026, 9, 1), at(2026, 9, 2), {}, False, (1, 1), 3900,
     {"rental": 3900}, 780, 4680),
    ("extras capped per rental", at(2026, 6, 1), at(2026, 6, 8), {"child_seat": 2, "gps": 1}, False,
     (1, 1), 3900,
     {"rental": 27300, "tier": -4095, "weekend": 780, "extra:child_seat": 9600, "extra:gps": 3600},
     7437, 44622),
    ("extras under their cap, one cover level", at(2026, 6, 1), at(2026, 6, 2),
     {"child_seat": 1, "cover_full": 1}, False, (1, 1), 3900,
     {"rental": 3900, "extra:child_seat": 800, "extra:cover_full": 1500}, 1240, 7440),
    ("zero quantities are no extra", at(2026, 6, 1), at(2026, 6, 2), {"child_seat": 0, "gps": 0}, False,
     (1, 1), 3900, {"rental": 3900}, 780, 4680),
    ("young driver for a day", at(2026, 6, 1), at(2026, 6, 2), {}, True, (1, 1), 3900,
     {"rental": 3900, "young_driver": 1500}, 1080, 6480),
    ("young driver capped", at(2026, 6, 1), at(2026, 6, 15), {}, True, (1, 1), 3900,
     {"rental": 54600, "tier": -13650, "weekend": 1560, "young_driver": 15000}, 11502, 69012),
    ("one-way fee from the table", at(2026, 6, 1), at(2026, 6, 2), {}, False, (1, 2), 3900,
     {"rental": 3900, "one_way": 6500}, 2080, 12480),
    ("one-way default fee", at(2026, 6, 1), at(2026, 6, 2), {}, False, (1, 3), 3900,
     {"rental": 3900, "one_way": 7500}, 2280, 13680),
    ("rounding half up in integer pence", at(2026, 6, 1), at(2026, 6, 4), {}, False, (1, 1), 3333,
     {"rental": 9999, "tier": -500}, 1900, 11399),
    # Clocks forward: Saturday 10:00 GMT to Sunday 10:00 BST is 23 hours: one day.
    ("March change: the short night is one day", at(2026, 3, 28), at(2026, 3, 29), {}, False, (1, 1), 3900,
     {"rental": 3900, "weekend": 390}, 858, 5148),
    ("March change: Friday to Sunday is 47 hours, two days", at(2026, 3, 27), at(2026, 3, 29), {}, False,
     (1, 1), 3900, {"rental": 7800, "weekend": 390}, 1638, 9828),
    # Clocks back: Saturday 10:00 BST to Sunday 10:00 GMT is 25 hours: the grace covers it.
    ("October change: the long night is one day", at(2026, 10, 24), at(2026, 10, 25), {}, False,
     (1, 1), 3900, {"rental": 3900, "weekend": 390}, 858, 5148),
]


@pytest.mark.parametrize("name,start,end,extras,young,branches,rate,expected,vat,total", CASES,
                         ids=[c[0] for c in CASES])
def test_price_table(name, start, end, extras, young, branches, rate, expected, vat, total):
    q = quote(TABLES, daily_rate_pence=rate, deposit_pence=25000, start=start, end=end, tz=LONDON,
              pickup_branch_id=branches[0], return_branch_id=branches[1], extras=extras,
              young_driver=young)
    assert lines_of(q) == expected
    assert (q.vat_pence, q.total_pence) == (vat, total)
    assert q.subtotal_pence + q.vat_pence == q.total_pence
    # What a hire freezes adds up to what it charges.
    assert sum(line["amount_pence"] for line in q.stored_lines()) == q.total_pence
    assert all(isinstance(line["amount_pence"], int) for line in q.stored_lines())
    assert q.deposit_pence == 25000


def test_without_grace_the_long_october_night_is_two_days():
    strict = replace(TABLES, grace_minutes=0)
    q = quote(strict, daily_rate_pence=3900, deposit_pence=0, start=at(2026, 10, 24),
              end=at(2026, 10, 25), tz=LONDON, pickup_branch_id=1, return_branch_id=1)
    assert q.days == 2
    assert lines_of(q) == {"rental": 7800, "weekend": 780}


@pytest.mark.parametrize("start,end,grace,days", [
    (at(2026, 3, 28), at(2026, 3, 29), 0, 1),        # 23 hours
    (at(2026, 3, 28), at(2026, 3, 30), 0, 2),        # 47 hours
    (at(2026, 10, 24), at(2026, 10, 25), 0, 2),      # 25 hours, no grace
    (at(2026, 10, 24), at(2026, 10, 25), 60, 1),     # 25 hours, an hour's grace
    (at(2026, 10, 24), at(2026, 10, 26), 60, 2),     # 49 hours
    (at(2026, 6, 1), at(2026, 6, 1, 11), 60, 1),     # an hour still costs a day
    (at(2026, 6, 1), at(2026, 6, 29), 60, 28),
    (at(2026, 6, 1), at(2026, 6, 29, 11), 60, 28),
    (at(2026, 6, 1), at(2026, 6, 29, 11, 1), 60, 29),
])
def test_charged_days_count_real_hours(start, end, grace, days):
    assert charged_days(start, end, grace) == days


def test_charged_days_refuses_nonsense():
    with pytest.raises(ValueError):
        charged_days(at(2026, 6, 2), at(2026, 6, 1), 60)
    with pytest.raises(ValueError):
        charged_days(datetime(2026, 6, 1), datetime(2026, 6, 2), 60)


def test_weekend_and_season_follow_local_dates_across_the_change():
    """Periods are 24 real hours, so their local start can move across the change.

    Saturday 23:30 GMT + 24 hours is Monday 00:30 BST (Sunday had 23 hours): the second
    period starts on Monday, so only one weekend day is charged.
    """
    start = at(2026, 3, 28, 23, 30)
    assert period_dates(start, 2, LONDON) == [date(2026, 3, 28), date(2026, 3, 30)]
    q = quote(TABLES, daily_rate_pence=3900, deposit_pence=0, start=start, end=start + timedelta(days=2),
              tz=LONDON, pickup_branch_id=1, return_branch_id=1)
    assert q.days == 2
    assert lines_of(q)["weekend"] == 390


@pytest.mark.parametrize("amount,percent,expected", [
    (9999, 5, 500), (1, 20, 0), (3, 20, 1), (5, 10, 1), (-10, 5, -1), (3900, 10, 390), (0, 20, 0),
])
def test_percent_of_rounds_half_away_from_zero(amount, percent, expected):
    assert percent_of(amount, percent) == expected


@pytest.mark.parametrize("extras,field,message", [
    ({"jetpack": 1}, "jetpack", "not available"),
    ({"child_seat": 4}, "child_seat", "At most 3"),
    ({"cover_plus": 1, "cover_full": 1}, "cover_full", "Choose one cover option"),
    ({"gps": -1}, "gps", "how many"),
])
def test_impossible_extras_are_refused(extras, field, message):
    with pytest.raises(PricingError) as err:
        quote(TABLES, daily_rate_pence=3900, deposit_pence=0, start=at(2026, 6, 1), end=at(2026, 6, 2),
              tz=LONDON, pickup_branch_id=1, return_branch_id=1, extras=extras)
    assert message in err.value.errors[field]


def test_same_inputs_same_quote_and_labels_read_well():
    kwargs = dict(daily_rate_pence=3900, deposit_pence=0, start=at(2026, 6, 1), end=at(2026, 6, 8),
                  tz=LONDON, pickup_branch_id=1, return_branch_id=2, extras={"child_seat": 2})
    first, second = quote(TABLES, **kwargs), quote(TABLES, **kwargs)
    assert first == second
    labels = [line["label"] for line in first.stored_lines()]
    assert labels == ["Rental: 7 days × £39.00", "7+ day rate: 15% off", "Weekend: 2 days × +10%",
                      "Child seat × 2: capped at £48.00 each",
                      "One-way fee (return to another branch)", "VAT 20%"]

"""Reports checked against a small data set worked out by hand (January 2031: London = UTC).

Week 1 is Mon 6 - Sun 12 January, week 2 Mon 13 - Sun 19 January.
Cars: A1 and A2 (class "Compact", branch "North"), B1 ("Estate", branch "South", retired at
the very start of week 2). Every car was added long before.

  hire  car  state      start -> end             booked hours in w1 / w2   payments (succeeded)
  H1    A1   closed     6 Jan 09:00 -> 9 Jan 09:00     72 / 0    card 120.00, card refund 20.00
  H2    A2   returned  11 Jan 12:00 -> 14 Jan 12:00    36 / 36   crypto 90.00 (+ a pending card 5.00)
  H3    B1   cancelled  7 Jan 10:00 -> 9 Jan 10:00      - / -    card 40.00, refund 40.00
  H4    A1   no_show   15 Jan 10:00 -> 17 Jan 10:00     - / -    card 60.00
  H5    A2   held      16 Jan 10:00 -> 17 Jan 10:00     - / -    (held: never counted)
  H6    A1   confirmed 17 Jan 09:00 -> 20 Jan 09:00     0 / 63   card 70.00
  H7    A2   closed     2 Jan 09:00 -> 7 Jan 09:00     33 / 0    card 200.00 (started before the range)

Return charges frozen at the counter: H1 late 15.00, damage 50.00, damage 30.00 (waived);
H2 fuel 10.00; H7 late (waived).

Fleet hours: Compact 336 a week; Estate 168 in week 1 and none in week 2 (retired).
Utilisation, Compact: w1 (72+36+33)/336 = 41.96% -> 42.0; w2 (36+63)/336 = 29.46% -> 29.5;
  whole 240/672 = 35.7. Estate: 0.0, none, 0.0. All cars: 141/504 = 28.0, 99/336 = 29.5,
  240/840 = 28.6.
Revenue (hires starting in the week): card w1 100.00 (H1 net; H3 nets to 0), w2 130.00
  (H4 + H6); crypto w1 90.00. Compact 190.00 / 130.00; Estate 0 / 0.
Bookings (H1, H2, H3 | H4, H6) 3 / 2; cancellations 1 / 0; no-shows 0 / 1.
Due back: week 1 has H1 and H7, both late (H7's
  fee waived, still late); week 2 has H2, on time. Damage charges: 1 (H1's unwaived line),
  50.00.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import date, datetime, timedelta, timezone

import pytest

from app.admin.reports import refresh, tables
from app.extensions import db
from app.models import HireState, Payment
from tests import factories


def at(day: int, hour: int = 0, month: int = 1) -> datetime:
    return datetime(2031, month, day, hour, tzinfo=timezone.utc)


def _pay(hire, method, kind, amount, state="succeeded"):
    n = db.session.query(Payment).count() + 1
    db.session.add(Payment(hire_id=hire.id, method=method, kind=kind, state=state,
                           amount_pence=amount, idempotency_key=f"test-pay-{n}"))


def _returned(hire, lines):
    from app.models.counter import Inspection
    db.session.add(Inspection(hire_id=hire.id, kind="return", charge_lines=lines,
                              completed_at=hire.end_at + timedelta(hours=2)))


def _line(code, amount, waived=""):
    return {"code": code, "label": code, "amount_pence": amount, "waived_reason": waived}


@pytest.fixture
def january():
    north, south = factories.make_branch(), factories.make_branch()
    north.name, south.name = "North", "South"
    compact = factories.make_car_class(code="compact")
    estate = factories.make_car_class(code="estate")
    compact.name, estate.name = "Compact", "Estate"
    long_ago = at(1, month=1) - timedelta(days=400)
    a1 = factories.make_car(plate="AA11AAA", model="A1", car_class=compact, branch=north, created_at=long_ago)
    a2 = factories.make_car(plate="AA22AAA", model="A2", car_class=compact, branch=north, created_at=long_ago)
    b1 = factories.make_car(plate="BB11BBB", model="B1", car_class=estate, branch=south, created_at=long_ago,
                            status="retired", retired_at=at(13))
    S = HireState

    def hire(car, start, end, state):
        h = factories.make_hire(car=car, start=start, days=1, state=state,
                                occupy=state in (S.HELD, S.CONFIRMED))
        h.end_at = end
        if h.occupancy is not None:
            h.occupancy.ends_at = end
        db.session.commit()
        return h

    h1 = hire(a1, at(6, 9), at(9, 9), S.CLOSED)
    h2 = hire(a2, at(11, 12), at(14, 12), S.RETURNED)
    h3 = hire(b1, at(7, 10), at(9, 10), S.CANCELLED)
    h4 = hire(a1, at(15, 10), at(17, 10), S.NO_SHOW)
    hire(a2, at(16, 10), at(17, 10), S.HELD)
    h6 = hire(a1, at(17, 9), at(20, 9), S.CONFIRMED)
    h7 = hire(a2, at(2, 9), at(7, 9), S.CLOSED)
    _pay(h1, "card", "charge", 12000)
    _pay(h1, "card", "refund", 2000)
    _pay(h1, "card", "deposit_hold", 25000)  # a hold is not revenue
    _pay(h2, "crypto", "charge", 9000)
    _pay(h2, "card", "charge", 500, state="pending")
    _pay(h3, "card", "charge", 4000)
    _pay(h3, "card", "refund", 4000)
    _pay(h4, "card", "charge", 6000)
    _pay(h6, "card", "charge", 7000)
    _pay(h7, "card", "charge", 20000)
    _returned(h1, [_line("late", 1500), _line("damage1", 5000), _line("damage2", 3000, "goodwill")])
    _returned(h2, [_line("fuel", 1000)])
    _returned(h7, [_line("late", 800, "traffic accident on the M1")])
    db.session.commit()
    # Roll the figures up, as the nightly refresh (or the page's first visit) would.
    refresh.refresh(date(2030, 12, 1), date(2031, 2, 28), now=datetime.now(timezone.utc))
    return {"a1": a1, "a2": a2, "b1": b1, "h6": h6}


def _rows(table):
    return {row[0]: row[1:] for row in table.rows}


def test_weekly_report_by_class_matches_the_hand_computed_figures(app, january):
    report = tables.build(date(2031, 1, 6), date(2031, 1, 19), period_kind="week", grouping="class")
    assert [p.label for p in report.periods] == ["w/c 06 Jan 2031", "w/c 13 Jan 2031"]
    assert _rows(report.utilisation) == {"Compact": [42.0, 29.5, 35.7], "Estate": [0.0, None, 0.0]}
    assert _rows(report.utilisation_overall) == {"All cars": [28.0, 29.5, 28.6]}
    assert _rows(report.revenue_by_method) == {
        "Card": [10000, 13000, 23000], "Crypto": [9000, 0, 9000], "All methods": [19000, 13000, 32000]}
    assert _rows(report.revenue_by_class) == {"Compact": [19000, 13000, 32000], "Estate": [0, 0, 0]}
    assert _rows(report.outcomes) == {
        "Bookings (hires starting)": [3, 2, 5],
        "Cancellations": [1, 0, 1],
        "No-shows": [0, 1, 1],
        "Late returns": [2, 0, 2],
        "Damage charges (number)": [1, 0, 1],
        "Damage charges (£)": [5000, 0, 5000],
    }


def test_per_car_and_per_branch(app, january):
    by_car = tables.build(date(2031, 1, 6), date(2031, 1, 19), grouping="car")
    # A1: 72/168 and 63/168; A2: (36+33)/168 and 36/168; B1: 0 and not in the fleet.
    assert _rows(by_car.utilisation) == {"AA11 AAA A1": [42.9, 37.5, 40.2],
                                         "AA22 AAA A2": [41.1, 21.4, 31.2],
                                         "BB11 BBB B1": [0.0, None, 0.0]}
    by_branch = tables.build(date(2031, 1, 6), date(2031, 1, 19), grouping="branch")
    assert _rows(by_branch.utilisation) == {"North": [42.0, 29.5, 35.7], "South": [0.0, None, 0.0]}


def test_monthly(app, january):
    report = tables.build(date(2031, 1, 1), date(2031, 1, 31), period_kind="month", grouping="class")
    assert [p.label for p in report.periods] == ["Jan 2031"]
    # Compact: 2 cars x 31 days = 1488 h; booked 72 + 72 + 120 + 72 = 336 h -> 22.6%.
    # Estate: in the fleet 1-13 January = 288 h, never booked.
    assert _rows(report.utilisation) == {"Compact": [22.6, 22.6], "Estate": [0.0, 0.0]}
    assert _rows(report.revenue_by_method)["Card"] == [43000, 43000]


def test_the_page_shows_charts_beside_accessible_tables(client, auth, january):
    auth.sign_in_as("admin")
    response = client.get("/admin/reports?date_from=2031-01-06&date_to=2031-01-19&period=week&by=class")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert page.count('role="img"') == 4
    assert '<title id="chart-utilisation-title">Utilisation by class</title>' in page
    assert '<caption>Utilisation (% of fleet hours booked)</caption>' in page
    assert '<th scope="row">Compact</th><td class="num">42.0%</td><td class="num">29.5%</td>' in page
    assert '<td class="num">£320.00</td>' in page  # all methods, whole range
    assert "<script" not in page.split("<main", 1)[1]
    by_car = client.get("/admin/reports?date_from=2031-01-06&date_to=2031-01-19&by=car").get_data(as_text=True)
    assert "least-used of 3 cars" in by_car


def test_csv_export(client, auth, january):
    auth.sign_in_as("admin")
    response = client.get("/admin/reports/revenue-method.csv?date_from=2031-01-06&date_to=2031-01-19")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows == [["name", "w/c 06 Jan 2031", "w/c 13 Jan 2031", "Total"],
                    ["Card", "100.00", "130.00", "230.00"], ["Crypto", "90.00", "0.00", "90.00"],
                    ["All methods", "190.00", "130.00", "320.00"]]
    outcomes = client.get("/admin/reports/outcomes.csv?date_from=2031-01-06&date_to=2031-01-19")
    rows = list(csv.reader(io.StringIO(outcomes.get_data(as_text=True))))
    assert ["Damage charges (£)", "50.00", "0.00", "50.00"] in rows
    assert client.get("/admin/reports/nothing.csv").status_code == 404


def test_bad_ranges_are_refused(client, auth):
    auth.sign_in_as("admin")
    response = client.get("/admin/reports?date_from=2031-02-01&date_to=2031-01-01")
    assert response.status_code == 422
    assert "The end date is before the start date." in response.get_data(as_text=True)
    response = client.get("/admin/reports?date_from=2020-01-01&date_to=2031-01-01")
    assert response.status_code == 422
    assert "Choose a shorter range" in response.get_data(as_text=True)


def test_an_empty_fleet_reports_nothing_without_error(client, auth):
    """No cars: no utilisation to show (not 0%), no money, no classes, nothing went wrong."""
    auth.sign_in_as("admin")
    response = client.get("/admin/reports")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert re.search(r"\b12 weeks:", page)  # the default range: the last twelve weeks
    weeks = 12 + 1  # and the whole range
    assert '<th scope="row">All cars</th>' + '<td class="num">—</td>' * weeks + "</tr>" in page
    for method in ("Card", "Crypto", "All methods"):
        assert f'<th scope="row">{method}</th>' + '<td class="num">£0.00</td>' * weeks + "</tr>" in page
    assert page.count("Nothing in this range.") == 2  # no utilisation and no revenue by class
    rows = list(csv.reader(io.StringIO(client.get("/admin/reports/outcomes.csv").get_data(as_text=True))))
    assert len(rows) > 1 and all(set(row[1:]) == {"0"} or set(row[1:]) == {"0.00"} for row in rows[1:]), rows


def test_reports_read_the_rolled_up_figures_until_they_are_refreshed(app, january):
    from app.models import ReportFact
    assert db.session.query(ReportFact).filter_by(period_kind="week").count() > 0
    _pay(january["h6"], "crypto", "charge", 1000)  # money taken after the last roll-up
    db.session.commit()
    stale = tables.build(date(2031, 1, 6), date(2031, 1, 19))
    assert _rows(stale.revenue_by_method)["Crypto"] == [9000, 0, 9000]
    refresh.refresh(date(2031, 1, 13), date(2031, 1, 19), now=datetime.now(timezone.utc))
    fresh = tables.build(date(2031, 1, 6), date(2031, 1, 19))
    assert _rows(fresh.revenue_by_method)["Crypto"] == [9000, 1000, 10000]
    # The refresh replaced that week's figures; it did not add to them.
    assert _rows(fresh.revenue_by_method)["Card"] == [10000, 13000, 23000]


def test_the_page_refreshes_figures_it_has_never_seen_and_says_when(client, auth, app):
    auth.sign_in_as("admin")
    car = factories.make_car()
    hire = factories.make_hire(car=car, start=at(7, 9), days=2, state=HireState.CLOSED, occupy=False)
    _pay(hire, "card", "charge", 5000)
    db.session.commit()
    page = client.get("/admin/reports?date_from=2031-01-06&date_to=2031-01-12").get_data(as_text=True)
    # Jobs run inline in tests: the first visit rolled the range up before reading it.
    assert '<td class="num">£50.00</td>' in page
    assert "Figures as of" in page


def test_refresh_now_and_from_the_command_line(client, auth, app, january):
    auth.sign_in_as("admin")
    _pay(january["h6"], "crypto", "charge", 1000)
    db.session.commit()
    query = "date_from=2031-01-06&date_to=2031-01-19"
    from tests.conftest import post_form
    response = post_form(client, f"/admin/reports/refresh?{query}", {}, token_from=f"/admin/reports?{query}")
    assert response.status_code == 303
    assert _rows(tables.build(date(2031, 1, 6), date(2031, 1, 19)).revenue_by_method)["Crypto"][1] == 1000
    _pay(january["h6"], "crypto", "charge", 2000)
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["admin", "refresh-reports"])
    assert result.exit_code == 0, result.output
    assert "Report figures for 2031-01-02 to 2031-01-20" in result.output
    assert _rows(tables.build(date(2031, 1, 6), date(2031, 1, 19)).revenue_by_method)["Crypto"][1] == 3000

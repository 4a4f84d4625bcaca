"""The report itself, built from the rolled-up figures only (a few thousand rows whatever the
history's size): utilisation, revenue by method and by class, outcomes; and its CSV export.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Callable, Optional, Sequence

from sqlalchemy import and_, case, func, select

from ...extensions import db
from ...models import ReportFact, ReportGroupFact
from .periods import GROUPINGS, PERIOD_KINDS, Period, ReportError, periods
from .rollups import FACT_COLUMNS, group_names


@dataclass
class Table:
    """A report table: a header row and rows of cells (first cell: the row's name)."""

    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    kind: str = "number"  # number | percent | money


@dataclass
class Report:
    periods: list[Period]
    grouping: str
    period_kind: str
    utilisation: Table
    utilisation_overall: Table
    revenue_by_method: Table
    revenue_by_class: Table
    outcomes: Table
    as_of: Optional[datetime] = None
    timings: dict[str, float] = field(default_factory=dict)
    cars_total: int = 0  # per car: how many cars there are (the table may show fewer)


def _percent(part: float, whole: float) -> Optional[float]:
    return round(100.0 * part / whole, 1) if whole > 0 else None


def _fact_sums(chosen: Sequence[Period], kind: str, grouping: str) -> dict[tuple[int, int], list[int]]:
    """(period, class or branch) -> the FACT_COLUMNS summed, from the per-group figures."""
    group = ReportGroupFact.car_class_id if grouping == "class" else ReportGroupFact.branch_id
    starts = {p.first_day: p.index for p in chosen}
    query = (select(ReportGroupFact.period_start, group,
                    *[func.sum(getattr(ReportGroupFact, c)) for c in FACT_COLUMNS])
             .where(ReportGroupFact.period_kind == kind,
                    ReportGroupFact.period_start >= chosen[0].first_day,
                    ReportGroupFact.period_start <= chosen[-1].first_day)
             .group_by(ReportGroupFact.period_start, group))
    return {(starts[start], g): [int(v or 0) for v in values]
            for start, g, *values in db.session.execute(query) if start in starts}


def _car_utilisation(chosen: Sequence[Period], kind: str,
                     limit: Optional[int]) -> tuple[dict[int, list[tuple[int, int]]], int]:
    """car -> [(booked, fleet seconds) per period] for the `limit` least-used cars over the
    range (all if None), and how many cars there are, from the per-car figures."""
    in_range = and_(ReportFact.period_kind == kind,
                    ReportFact.period_start >= chosen[0].first_day,
                    ReportFact.period_start <= chosen[-1].first_day)
    booked, fleet = func.sum(ReportFact.booked_seconds), func.sum(ReportFact.fleet_seconds)
    ranked = (select(ReportFact.car_id, func.count().over().label("cars"))
              .where(in_range).group_by(ReportFact.car_id)
              .order_by(case((fleet == 0, 1), else_=0),
                        (booked * 1.0 / func.nullif(fleet, 0)), ReportFact.car_id))
    if limit is not None:
        ranked = ranked.limit(limit)
    # Core rows straight from the connection: thousands of them, no ORM work needed.
    connection = db.session.connection()
    chosen_cars = connection.execute(ranked).all()
    cars_total = chosen_cars[0].cars if chosen_cars else 0
    ids = [row.car_id for row in chosen_cars]
    starts = {p.first_day: p.index for p in chosen}
    query = (select(ReportFact.car_id, ReportFact.period_start, ReportFact.booked_seconds,
                    ReportFact.fleet_seconds).where(in_range))
    if limit is not None:
        query = query.where(ReportFact.car_id.in_(ids))
    out: dict[int, list[tuple[int, int]]] = {car_id: [(0, 0)] * len(chosen) for car_id in ids}
    for car_id, start, booked_s, fleet_s in connection.execute(query).all():
        values = out.get(car_id)
        if values is not None and start in starts:
            values[starts[start]] = (booked_s, fleet_s)
    return out, cars_total


def build(date_from: date, date_to: date, *, period_kind: str = "week",
          grouping: str = "class", as_of: Optional[datetime] = None,
          car_limit: Optional[int] = None, clock: Callable[[], float] | None = None) -> Report:
    """The whole report for the range, from the rolled-up figures.

    Per car, `car_limit` keeps the least-used cars only (what a page shows; the CSV has all).
    `clock` (e.g. time.perf_counter) records how long the reads took.
    """
    if period_kind not in PERIOD_KINDS:
        raise ReportError({"period": "Choose week or month."})
    if grouping not in GROUPINGS:
        raise ReportError({"by": "Choose class, branch or car."})
    chosen = periods(date_from, date_to, period_kind)
    labels = [p.label for p in chosen]
    n = len(chosen)
    timings: dict[str, float] = {}
    started = clock() if clock else 0.0
    class_sums = _fact_sums(chosen, period_kind, "class")
    sums = class_sums if grouping != "branch" else _fact_sums(chosen, period_kind, "branch")
    cars, cars_total = (_car_utilisation(chosen, period_kind, car_limit) if grouping == "car"
                        else ({}, 0))
    if clock:
        timings["queries"] = clock() - started

    col = {c: i for i, c in enumerate(FACT_COLUMNS)}
    # One pass: per group and per period, and per period for everything.
    by_group: dict[int, list[list[int]]] = {}
    per_period = [[0] * len(FACT_COLUMNS) for _ in range(n)]
    for (index, g), values in sums.items():
        by_group.setdefault(g, [[0] * len(FACT_COLUMNS) for _ in range(n)])[index] = values
        totals = per_period[index]
        for k, v in enumerate(values):
            totals[k] += v

    def series(rows: list[list[int]], column: str) -> list[int]:
        return [row[col[column]] for row in rows]

    names = group_names(grouping)
    utilisation = Table("Utilisation (% of fleet hours booked)", ["", *labels, "Whole range"],
                        kind="percent")
    if grouping == "car":
        # Least used first (the order the database chose them in).
        lines = [(names.get(car_id, f"#{car_id}"), [b for b, _ in values], [f for _, f in values])
                 for car_id, values in cars.items()]
    else:
        lines = sorted(((names.get(g, f"#{g}"), series(rows, "booked_seconds"),
                         series(rows, "fleet_seconds")) for g, rows in by_group.items()),
                       key=lambda line: line[0])
    for name, hired, fleet in lines:
        utilisation.rows.append([name, *[_percent(h, f) for h, f in zip(hired, fleet)],
                                 _percent(sum(hired), sum(fleet))])
    overall = Table("Whole fleet", ["", *labels, "Whole range"], kind="percent")
    hired, fleet = series(per_period, "booked_seconds"), series(per_period, "fleet_seconds")
    overall.rows.append(["All cars", *[_percent(h, f) for h, f in zip(hired, fleet)],
                         _percent(sum(hired), sum(fleet))])

    by_method = Table("Revenue by payment method", ["", *labels, "Total"], kind="money")
    card, crypto = series(per_period, "revenue_card_pence"), series(per_period, "revenue_crypto_pence")
    for name, cells in (("Card", card), ("Crypto", crypto),
                        ("All methods", [a + b for a, b in zip(card, crypto)])):
        by_method.rows.append([name, *cells, sum(cells)])

    class_names = group_names("class")
    by_class = Table("Revenue by class", ["", *labels, "Total"], kind="money")
    for class_id in sorted({c for _, c in class_sums}, key=lambda c: class_names.get(c, "")):
        cells = []
        for p in chosen:
            values = class_sums.get((p.index, class_id))
            cells.append(values[col["revenue_card_pence"]] + values[col["revenue_crypto_pence"]]
                         if values else 0)
        by_class.rows.append([class_names.get(class_id, f"#{class_id}"), *cells, sum(cells)])

    outcomes = Table("Bookings and what went wrong", ["", *labels, "Total"])
    for name, column in (("Bookings (hires starting)", "bookings"), ("Cancellations", "cancellations"),
                         ("No-shows", "no_shows"), ("Late returns", "late_returns"),
                         ("Damage charges (number)", "damage_charges"),
                         ("Damage charges (£)", "damage_pence")):
        cells = series(per_period, column)
        outcomes.rows.append([name, *cells, sum(cells)])

    return Report(chosen, grouping, period_kind, utilisation, overall, by_method, by_class,
                  outcomes, as_of, timings, cars_total)


# --- export -----------------------------------------------------------------------------------

SECTIONS = {
    "utilisation": lambda r: r.utilisation,
    "revenue-method": lambda r: r.revenue_by_method,
    "revenue-class": lambda r: r.revenue_by_class,
    "outcomes": lambda r: r.outcomes,
}


def _csv_value(value: Any, kind: str, row_name: str) -> str:
    if value is None:
        return ""
    if kind == "money" or row_name == "Damage charges (£)":
        return f"{value / 100:.2f}"
    return str(value)


def to_csv(table: Table) -> str:
    """A table as CSV (money in pounds with two decimals, percentages as numbers)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["name" if not c else c for c in table.columns])
    for row in table.rows:
        name = str(row[0])
        writer.writerow([("'" + name) if name.startswith(("=", "+", "-", "@")) else name,
                         *[_csv_value(v, table.kind, name) for v in row[1:]]])
    return buffer.getvalue()

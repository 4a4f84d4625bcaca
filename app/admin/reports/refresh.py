"""Refreshing the rolled-up figures (`ReportFact`, `ReportGroupFact`): the periods touching a
range are recomputed in chunks of REFRESH_CHUNK_PERIODS, the queries side by side on
PostgreSQL, and the refresh logged (`ReportRefresh`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from typing import Any, Callable, Sequence

from flask import current_app
from sqlalchemy import delete, func, insert, select, text

from ...extensions import db
from ...models import Car, Hire, ReportFact, ReportGroupFact, ReportRefresh, utcnow
from .periods import PERIOD_KINDS, Period, periods, report_zone
from .rollups import (FACT_COLUMNS, on_postgres, rollup_bookings, rollup_fleet_seconds,
                      rollup_hired_seconds, rollup_return_charges, rollup_revenue)


REPORT_WORK_MEM = "32MB"
# Periods rolled up per statement when refreshing: bounds the work of each one.
REFRESH_CHUNK_PERIODS = 13


def _tune_transaction() -> None:
    if on_postgres():
        # These queries look expensive to the planner but are range scans of small parts of
        # big tables: compiling them to machine code (JIT) first costs more than it saves,
        # and their sorts fit in a little more memory than the default.
        db.session.execute(text("SET LOCAL jit = off"))
        db.session.execute(text(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'"))


def _run_all(queries: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """Run independent queries: side by side on PostgreSQL (one connection each), one after
    another elsewhere."""
    if not on_postgres():
        return {name: fn() for name, fn in queries.items()}
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    def in_own_session(fn: Callable[[], Any]) -> Any:
        with app.app_context():
            try:
                _tune_transaction()
                return fn()
            finally:
                db.session.remove()

    with ThreadPoolExecutor(max_workers=len(queries), thread_name_prefix="report") as pool:
        futures = {name: pool.submit(in_own_session, fn) for name, fn in queries.items()}
        return {name: future.result() for name, future in futures.items()}


def _facts_for(chosen: Sequence[Period], kind: str) -> list[dict[str, Any]]:
    """The ReportFact rows for these periods, computed from the source tables."""
    results = _run_all({
        "fleet": lambda: rollup_fleet_seconds(chosen, "car"),
        "hired": lambda: rollup_hired_seconds(chosen),
        "revenue": lambda: rollup_revenue(chosen),
        "bookings": lambda: rollup_bookings(chosen),
        "returns": lambda: rollup_return_charges(chosen),
    })
    keys = set().union(*(r.keys() for r in results.values()))
    rows = []
    for index, car_id in sorted(keys):
        card, crypto = results["revenue"].get((index, car_id), (0, 0))
        booked, cancelled, no_show = results["bookings"].get((index, car_id), (0, 0, 0))
        late, damages, damage_pence = results["returns"].get((index, car_id), (0, 0, 0))
        rows.append(dict(
            period_kind=kind, period_start=chosen[index].first_day, car_id=car_id,
            booked_seconds=round(results["hired"].get((index, car_id), 0.0)),
            fleet_seconds=round(results["fleet"].get((index, car_id), 0.0)),
            bookings=booked, cancellations=cancelled, no_shows=no_show,
            revenue_card_pence=card, revenue_crypto_pence=crypto,
            late_returns=late, damage_charges=damages, damage_pence=damage_pence))
    return rows


def _group_rows(rows: list[dict[str, Any]], cars: dict[int, tuple[int, int]]) -> list[dict[str, Any]]:
    """The per-car rows added up per period, class and branch (classes as they are now)."""
    totals: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        class_id, branch_id = cars[row["car_id"]]
        key = (row["period_kind"], row["period_start"], class_id, branch_id)
        total = totals.get(key)
        if total is None:
            totals[key] = total = dict(period_kind=key[0], period_start=key[1], car_class_id=class_id,
                                       branch_id=branch_id, **{c: 0 for c in FACT_COLUMNS})
        for column in FACT_COLUMNS:
            total[column] += row[column]
    return list(totals.values())


def refresh(date_from: date, date_to: date, *, now: datetime) -> int:
    """Roll the figures up again for every week and month touching the two dates. Commits.

    Idempotent: each chunk of periods is replaced whole, in one transaction.
    """
    log = ReportRefresh(date_from=date_from, date_to=date_to, started_at=now)
    cars = {car_id: (class_id, branch_id) for car_id, class_id, branch_id in
            db.session.execute(select(Car.id, Car.car_class_id, Car.home_branch_id))}
    written = 0
    for kind in PERIOD_KINDS:
        chosen = periods(date_from, date_to, kind, limit=None)
        for first in range(0, len(chosen), REFRESH_CHUNK_PERIODS):
            chunk = [Period(i, p.label, p.starts_at, p.ends_at) for i, p in
                     enumerate(chosen[first:first + REFRESH_CHUNK_PERIODS])]
            rows = _facts_for(chunk, kind)
            groups = _group_rows(rows, cars)
            starts = [p.first_day for p in chunk]
            for model in (ReportFact, ReportGroupFact):
                db.session.execute(delete(model).where(model.period_kind == kind,
                                                       model.period_start.in_(starts)))
            if rows:
                db.session.execute(insert(ReportFact), rows)
                db.session.execute(insert(ReportGroupFact), groups)
            db.session.commit()
            written += len(rows)
    log.finished_at = utcnow()
    log.facts = written
    db.session.add(log)
    db.session.commit()
    return written


def history_range(today: date) -> tuple[date, date]:
    """From the first hire to the furthest booking: what the nightly refresh covers."""
    first = db.session.scalar(select(func.min(Hire.start_at)))
    last = db.session.scalar(select(func.max(Hire.end_at)))
    start = first.astimezone(report_zone()).date() if first else today
    end = max(last.astimezone(report_zone()).date() if last else today, today)
    return start, end

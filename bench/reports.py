"""Benchmark: the admin reports over 2,000,000 hires must answer in under a second.

    .venv/bin/python bench/reports.py            # fill once (a few minutes), then measure
    .venv/bin/python bench/reports.py --refill   # rebuild the data set from scratch
    BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/other .venv/bin/python bench/reports.py

It uses its own PostgreSQL database (created if missing; default `acme_bench_reports`),
builds the schema with the real migrations, and fills it in SQL: 6,000 cars in 6 classes at
4 branches, 10,000 customers, 2,000,000 hires over about four years (each car hired back to
back, a few weeks into the future), their payments (charges, deposit holds, refunds) and
the return inspections with late, fuel and damage charges. Later runs reuse the data.

The reports read figures rolled up per car and week/month (app/admin/reports/): the
script times that roll-up (the nightly job over the whole history on a fresh data set, and
the one of recent periods that runs every few minutes), then times whole report pages and
CSV exports through the app (an admin's session, templates and charts included): one
warm-up request, then each page RUNS times. It exits 1 if any page took over LIMIT_SECONDS.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/acme_bench_reports"
HIRES = 2_000_000
CARS = 6_000
CUSTOMERS = 10_000
CLASSES = 6
BRANCHES = 4
SLOT_HOURS = 106  # each car's hires start this far apart: never overlapping
DAYS_OF_HISTORY = 1460
LIMIT_SECONDS = 1.0
RUNS = 3


def _psycopg_url(url: str) -> str:
    from app.config import _normalise_db_url
    return _normalise_db_url(url)


def ensure_database(url: str) -> None:
    parsed = make_url(_psycopg_url(url))
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                             {"n": parsed.database})
        if not exists:
            print(f"creating database {parsed.database}")
            conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    admin.dispose()


def make_app(url: str):
    from app import create_app
    return create_app({
        "SQLALCHEMY_DATABASE_URI": _psycopg_url(url), "ENV_NAME": "development",
        "SECRET_KEY": "bench-only-secret-key-not-for-production", "JOBS_MODE": "sync",
        "REDIS_URL": "", "RATELIMIT_STORAGE_URI": "memory://", "WTF_CSRF_ENABLED": False,
        "LOG_LEVEL": "WARNING",
    })


def filled(conn) -> bool:
    try:
        hires = conn.scalar(text("SELECT count(*) FROM hires"))
        cars = conn.scalar(text("SELECT count(*) FROM cars"))
    except Exception:
        return False
    return hires == HIRES and cars == CARS


def build_schema(app, engine) -> None:
    from flask_migrate import upgrade
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    with app.app_context():
        upgrade(revision="heads")


def _step(conn, label: str, sql: str, **params) -> None:
    started = time.perf_counter()
    result = conn.execute(text(sql), params)
    print(f"  {label:<28} {result.rowcount:>10,} rows  {time.perf_counter() - started:6.1f} s",
          flush=True)


def fill(engine) -> None:
    print(f"filling: {CARS:,} cars, {CUSTOMERS:,} customers, {HIRES:,} hires (a few minutes)")
    params = dict(cars=CARS, customers=CUSTOMERS, hires=HIRES, classes=CLASSES, branches=BRANCHES,
                  history=DAYS_OF_HISTORY, slot=SLOT_HOURS)
    with engine.begin() as conn:
        _step(conn, "branches", """
            INSERT INTO branches (id, code, name, address_line1, town, postcode, phone, timezone, opening_hours)
            SELECT b, 'BR' || b, 'Branch ' || b, '1 Road', 'Town', 'SW1A 1AA', '', 'Europe/London', '{}'
            FROM generate_series(1, :branches) AS b""", **params)
        _step(conn, "car classes", """
            INSERT INTO car_classes (id, code, name, description, daily_rate_pence, deposit_pence,
                                     mileage_allowance_per_day)
            SELECT c, 'class' || c, 'Class ' || c, '', 2500 + c * 1000, 25000, 200
            FROM generate_series(1, :classes) AS c""", **params)
        _step(conn, "cars", """
            INSERT INTO cars (id, plate, vin, make, model, year, car_class_id, seats, doors,
                              transmission, fuel_type, co2_g_km, odometer_miles, home_branch_id,
                              photo, status, created_at, retired_at)
            SELECT n, 'BN' || lpad(n::text, 5, '0'), 'BENCHVN' || lpad(n::text, 10, '0'), 'Make', 'Model ' || n,
                   2022, 1 + n % :classes, 5, 5, 'manual', 'petrol', 120, 10000, 1 + n % :branches, '',
                   CASE WHEN n % 50 = 0 THEN 'retired' ELSE 'available' END,
                   now() - (:history + 30) * interval '1 day',
                   CASE WHEN n % 50 = 0 THEN now() - interval '200 days' END
            FROM generate_series(1, :cars) AS n""", **params)
        _step(conn, "users", """
            INSERT INTO users (id, email, full_name, password_hash, role, active, session_token,
                               created_at, password_changed_at)
            SELECT n, CASE WHEN n = 1 THEN 'admin@bench.example' ELSE 'c' || n || '@bench.example' END,
                   'Person ' || n, 'x', CASE WHEN n = 1 THEN 'admin' ELSE 'customer' END, true,
                   md5(n::text), now(), now()
            FROM generate_series(1, :customers + 1) AS n""", **params)
        # Each car is hired back to back: slot k of car c starts k * SLOT_HOURS after the
        # epoch (plus a fixed per-car offset) and lasts 24-96 hours, so no two overlap.
        _step(conn, "hires", """
            WITH g AS (
                SELECT n, ((n - 1) % :cars) + 1 AS car, (n - 1) / :cars AS slot,
                       (n::bigint * 2654435761) % 4294967296 AS h
                FROM generate_series(1, :hires) AS n
            ), t AS (
                SELECT g.*, now() - :history * interval '1 day' + slot * :slot * interval '1 hour'
                            + ((car * 37) % 600) * interval '1 minute' AS s,
                       (24 + h % 73) * interval '1 hour' AS d
                FROM g
            )
            INSERT INTO hires (id, reference, customer_id, car_id, pickup_branch_id, return_branch_id,
                               start_at, end_at, state, price_lines, total_pence, deposit_pence,
                               currency, idempotency_key, created_at, updated_at, version, extras,
                               vat_pence)
            SELECT n, 'B' || lpad(n::text, 9, '0'), 2 + n % :customers, car, 1 + car % :branches,
                   1 + car % :branches, s, s + d,
                   CASE WHEN s > now() THEN CASE WHEN h % 100 < 8 THEN 'cancelled' ELSE 'confirmed' END
                        WHEN s + d > now() THEN 'active'
                        WHEN h % 100 < 5 THEN 'expired'
                        WHEN h % 100 < 13 THEN 'cancelled'
                        WHEN h % 100 < 16 THEN 'no_show'
                        WHEN h % 100 < 18 THEN 'refused_at_pickup'
                        WHEN s + d > now() - interval '3 days' THEN 'returned'
                        ELSE 'closed' END,
                   '[]', (3500 + (1 + car % :classes) * 1000) * ceil(extract(epoch FROM d) / 86400)::int,
                   25000, 'GBP', 'bench-' || n, s - interval '7 days', s, 1, '{}', 0
            FROM t""", **params)
        _step(conn, "payments: charges", """
            INSERT INTO payments (id, hire_id, method, kind, state, amount_pence, currency,
                                  idempotency_key, provider_ref, details, created_at, updated_at,
                                  failure_message, checkout_session_id, reason)
            SELECT id, id, CASE WHEN id % 10 = 0 THEN 'crypto' ELSE 'card' END, 'charge', 'succeeded',
                   total_pence, 'GBP', 'bench-charge-' || id, '', '{}', created_at, created_at, '', '', ''
            FROM hires WHERE state NOT IN ('expired', 'held')""")
        _step(conn, "payments: deposit holds", """
            INSERT INTO payments (id, hire_id, method, kind, state, amount_pence, currency,
                                  idempotency_key, provider_ref, details, created_at, updated_at,
                                  failure_message, checkout_session_id, reason)
            SELECT :hires + id, id, 'card', 'deposit_hold',
                   CASE WHEN state IN ('confirmed', 'active') THEN 'authorised' ELSE 'cancelled' END,
                   deposit_pence, 'GBP', 'bench-hold-' || id, '', '{}', start_at, start_at, '', '', ''
            FROM hires WHERE state NOT IN ('expired', 'held') AND id % 10 <> 0""", **params)
        _step(conn, "payments: refunds", """
            INSERT INTO payments (id, hire_id, method, kind, state, amount_pence, currency,
                                  idempotency_key, provider_ref, details, created_at, updated_at,
                                  failure_message, checkout_session_id, reason, parent_id)
            SELECT 2 * :hires + id, id, CASE WHEN id % 10 = 0 THEN 'crypto' ELSE 'card' END, 'refund',
                   'succeeded', total_pence, 'GBP', 'bench-refund-' || id, '', '{}', start_at, start_at,
                   '', '', 'cancelled', id
            FROM hires WHERE state IN ('cancelled', 'refused_at_pickup')""", **params)
        # Return inspections: 5% late (a fifth of those waived), 3% damaged, 20% short of fuel.
        _step(conn, "return inspections", """
            WITH r AS (
                SELECT id, end_at, (id::bigint * 2246822519) % 4294967296 AS h
                FROM hires WHERE state IN ('returned', 'closed')
            )
            INSERT INTO inspections (hire_id, kind, started_at, checklist, needs_cleaning,
                                     signature_filename, damages, waivers, charge_lines, total_pence,
                                     completed_at, condition_recorded_at, version)
            SELECT id, 'return', end_at, '{}', false, '', '[]', '{}',
                   (CASE WHEN h % 100 < 5 THEN jsonb_build_array(jsonb_build_object(
                              'code', 'late', 'label', 'Late return', 'amount_pence', 1500,
                              'waived_reason', CASE WHEN h % 500 < 5 THEN 'traffic' ELSE '' END))
                         ELSE '[]'::jsonb END
                    || CASE WHEN (h / 100) % 100 < 20 THEN jsonb_build_array(jsonb_build_object(
                              'code', 'fuel', 'label', 'Fuel', 'amount_pence', 1200, 'waived_reason', ''))
                         ELSE '[]'::jsonb END
                    || CASE WHEN (h / 10000) % 100 < 3 THEN jsonb_build_array(jsonb_build_object(
                              'code', 'damage1', 'label', 'Damage', 'amount_pence', 5000 + h % 20000,
                              'waived_reason', ''))
                         ELSE '[]'::jsonb END)::json,
                   0, end_at + (CASE WHEN h % 100 < 5 THEN 3 ELSE 0 END) * interval '1 hour',
                   end_at, 1
            FROM r""")
        for table in ("branches", "car_classes", "cars", "users", "hires", "payments", "inspections"):
            conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                              f"(SELECT coalesce(max(id), 1) FROM {table}))"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        started = time.perf_counter()
        conn.execute(text("VACUUM ANALYZE"))
        print(f"  {'vacuum analyze':<28} {'':>10}       {time.perf_counter() - started:6.1f} s")


def roll_up(app, everything: bool) -> None:
    """The background work the pages rely on: the nightly roll-up of the whole history
    (when asked, or when there are no figures yet) and the one of recent periods."""
    from app.admin.reports import freshness, periods, refresh
    from app.extensions import db
    from app.models import ReportFact, ReportGroupFact, ReportRefresh, utcnow

    with app.app_context():
        # A data set filled by an older version of this script may predate these tables.
        db.metadata.create_all(db.engine, tables=[ReportFact.__table__, ReportGroupFact.__table__,
                                                  ReportRefresh.__table__])
        today = periods.local_today()
        if everything or db.session.scalar(db.select(ReportFact.car_id).limit(1)) is None:
            first, last = refresh.history_range(today)
            started = time.perf_counter()
            rows = refresh.refresh(first, last, now=utcnow())
            print(f"nightly roll-up of the whole history ({first} to {last}): {rows:,} rows in "
                  f"{time.perf_counter() - started:.1f} s (a background job)")
        recent_from, recent_to = freshness.recent_range(today)
        started = time.perf_counter()
        rows = refresh.refresh(recent_from, recent_to, now=utcnow())
        print(f"roll-up of recent periods ({recent_from} to {recent_to}): {rows:,} rows in "
              f"{time.perf_counter() - started:.1f} s (a background job, every "
              f"{app.config['REPORT_REFRESH_MINUTES']} minutes)")


def measure(app) -> bool:
    from app.accounts import sessions
    from app.admin.reports import periods, tables
    from app.extensions import db
    from app.models import User

    today = date.today()
    year_ago = today - timedelta(days=364)
    pages = [
        ("12 weeks by class (the default page)", "/admin/reports"),
        ("12 weeks by branch", "/admin/reports?by=branch"),
        ("12 weeks by car (6,000 cars)", "/admin/reports?by=car"),
        ("12 months by class", f"/admin/reports?period=month&date_from={year_ago}&date_to={today}"),
        ("52 weeks by branch", f"/admin/reports?period=week&date_from={year_ago}&date_to={today}&by=branch"),
        ("CSV: utilisation by car", "/admin/reports/utilisation.csv?by=car"),
        ("CSV: revenue by class, 12 months",
         f"/admin/reports/revenue-class.csv?period=month&date_from={year_ago}&date_to={today}"),
    ]
    ok = True
    with app.app_context():
        admin = db.session.scalar(db.select(User).where(User.role == "admin"))
        sessions.start(admin)
        session_id = admin.get_id()
        start, end = periods.default_range(today)
        report = tables.build(start, end, clock=time.perf_counter)
        print(f"\nreading the default page's figures: {report.timings['queries']:.3f} s")
    client = app.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = session_id
        session["_fresh"] = True
    warm = client.get("/admin/reports")
    assert warm.status_code == 200, warm.status_code
    print(f"\nwhole requests (admin session, templates and charts included), {RUNS} runs each:")
    for label, url in pages:
        times = []
        for _ in range(RUNS):
            started = time.perf_counter()
            response = client.get(url)
            body = response.get_data()
            times.append(time.perf_counter() - started)
            if response.status_code != 200:
                print(f"  {label}: HTTP {response.status_code}")
                ok = False
        worst = max(times)
        verdict = "ok" if worst <= LIMIT_SECONDS else f"OVER {LIMIT_SECONDS:.1f} s"
        ok = ok and worst <= LIMIT_SECONDS
        print(f"  {label:<40} median {statistics.median(times):.3f} s  worst {worst:.3f} s  "
              f"({len(body) // 1024} KiB)  {verdict}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--refill", action="store_true", help="rebuild the data set")
    args = parser.parse_args()
    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    if not url.startswith(("postgresql", "postgres://")):
        print("BENCH_DATABASE_URL must be a PostgreSQL database", file=sys.stderr)
        return 2
    ensure_database(url)
    app = make_app(url)
    engine = create_engine(_psycopg_url(url))
    with engine.connect() as conn:
        ready = filled(conn) and not args.refill
    if ready:
        print(f"reusing the data set in {make_url(url).database} (--refill to rebuild)")
    else:
        started = time.perf_counter()
        build_schema(app, engine)
        fill(engine)
        print(f"filled in {time.perf_counter() - started:.0f} s")
    engine.dispose()
    roll_up(app, everything=not ready)
    ok = measure(app)
    # Shared machines: the load says how much of the CPU these timings really had.
    load = os.getloadavg()[0]
    print(f"\nload average over the last minute: {load:.1f} on {os.cpu_count()} CPUs")
    print("PASS: every report answered within the limit" if ok else
          f"FAIL: a report took longer than {LIMIT_SECONDS:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

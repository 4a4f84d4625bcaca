#!/usr/bin/env python
"""Benchmark the availability search at 20,000 and at 2,000,000 hires, in one run.

    .venv/bin/python bench/search.py [--server postgresql://postgres@127.0.0.1:5432]
                                     [--runs 300] [--reuse] [--explain]

Builds two PostgreSQL databases of its own, `bench_search_20k` and `bench_search_2m`
(dropped and created again unless --reuse finds them already filled), each migrated with
the real migrations and filled in SQL (generate_series, no ORM inserts): 25 branches,
5,000 cars, 10,000 customers and the hires, past and future, with an occupancy row for
every hire that still holds its car (as the app keeps them) and some maintenance blocks.

Then, alternating between the two databases so that load on the machine hits both
alike, it times
  - the availability query itself (`available_cars_query`, the one statement the search
    page runs: cars at a branch free for the trip plus cleaning buffer, cheapest first),
  - the whole search page (`GET /book/?...` through Flask: query, rate tables, prices,
    template),
for random branches and trips in the coming year, and prints p50/p95 of each.

Exits 1 when the query's p95 at 2,000,000 hires is 25 ms or more, or is 2x or more its
p95 at 20,000 hires.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text  # noqa: E402

CARS = 5_000
BRANCHES = 25
CUSTOMERS = 10_000
SIZES = {"bench_search_20k": 20_000, "bench_search_2m": 2_000_000}
PAST_DAYS, FUTURE_DAYS = 1_600, 365  # ~4.4 years of history, bookings a year ahead
QUERY_P95_LIMIT_MS = 25.0
GROWTH_LIMIT = 2.0
LONDON = ZoneInfo("Europe/London")
HOURS = {d: ["07:00", "22:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def database_url(server: str, name: str) -> str:
    return f"{server.rstrip('/')}/{name}"


def make_app(url: str):
    from app import create_app
    return create_app({
        "SQLALCHEMY_DATABASE_URI": url, "ENV_NAME": "test", "TESTING": False,
        "SECRET_KEY": "bench-only-secret-key-not-for-production", "JOBS_MODE": "sync",
        "REDIS_URL": "", "RATELIMIT_STORAGE_URI": "memory://", "MAIL_BACKEND": "outbox",
        "LOG_LEVEL": "WARNING",
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": False, "pool_size": 2},
    })


# --- filling ---------------------------------------------------------------------------------

def filled(server: str, name: str, hires: int) -> bool:
    engine = create_engine(database_url(server, "postgres").replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
    engine.dispose()
    if not exists:
        return False
    engine = create_engine(database_url(server, name).replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            return conn.scalar(text("SELECT count(*) FROM hires")) == hires
    except Exception:
        return False
    finally:
        engine.dispose()


def recreate(server: str, name: str) -> None:
    engine = create_engine(database_url(server, "postgres").replace("postgresql://", "postgresql+psycopg://"),
                           isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()


def _copy_from_prototype(conn, table: str, proto_id: int, overrides: dict[str, str], series: str) -> None:
    """INSERT ... SELECT: every column from one ORM-made prototype row, some computed per row.

    Columns other areas add later (with their defaults) are carried over from the prototype,
    so the benchmark keeps working as the schema grows.
    """
    columns = [r[0] for r in conn.execute(text(
        "SELECT column_name FROM information_schema.columns WHERE table_name = :t "
        "AND table_schema = 'public' AND column_name <> 'id' ORDER BY ordinal_position"), {"t": table})]
    select_list = ", ".join(overrides.get(c, f"p.{c}") for c in columns)
    conn.execute(text(f"INSERT INTO {table} ({', '.join(columns)}) SELECT {select_list} "
                      f"FROM {table} p, {series} WHERE p.id = {proto_id}"))


def fill(app, hires: int) -> None:
    """25 branches, 5,000 cars, 10,000 customers, `hires` hires with their occupancies."""
    from flask_migrate import upgrade

    from app.booking.seed import seed_rate_tables
    from app.extensions import db
    from app.models import Branch, Car, CarClass, CustomerProfile, Hire, User

    per_car = hires // CARS
    ahead = max(1, per_car // 20)  # bookings for the coming year: 20 a car at 2M, 1 at 20k
    past = per_car - ahead
    slot_hours = PAST_DAYS * 24 // past  # each past hire gets its own slot
    spread = round((FUTURE_DAYS - 4 * ahead - 9) / (ahead * ahead), 4)
    with app.app_context():
        upgrade(revision="heads")
        classes = [CarClass(code=c, name=c.capitalize(), daily_rate_pence=r, deposit_pence=d)
                   for c, r, d in (("mini", 2900, 20000), ("compact", 3900, 25000),
                                   ("estate", 5400, 30000), ("premium", 8900, 50000))]
        branches = [Branch(code=f"B{i:02d}", name=f"Branch {i:02d}", address_line1="1 Road",
                           town="Town", postcode="AB1 2CD", timezone="Europe/London",
                           opening_hours=HOURS) for i in range(1, BRANCHES + 1)]
        db.session.add_all(classes + branches)
        db.session.flush()
        car = Car(plate="PROTO", vin="PROTOTYPE00000000", make="Ford", model="Focus", year=2024,
                  car_class=classes[0], seats=5, doors=5, transmission="manual", fuel_type="petrol",
                  home_branch=branches[0])
        from app.accounts.services import hash_password
        user = User(email="proto@bench.example", full_name="Bench Customer",
                    password_hash=hash_password("bench-Password-2026!"), role="customer")
        user.profile = CustomerProfile(
            date_of_birth=datetime(1990, 7, 15).date(), phone="+447911123456", address_line1="1 Road",
            address_line2="", town="Town", postcode="AB1 2CD", licence_number="CUSTO907150J99AB",
            licence_expires_on=datetime(2040, 1, 1).date(), licence_status="verified",
            licence_refusal_reason="")
        db.session.add_all([car, user])
        db.session.flush()
        now = datetime.now(timezone.utc)
        hire = Hire(reference="PROTO", customer=user, car=car, pickup_branch_id=branches[0].id,
                    return_branch_id=branches[0].id, start_at=now, end_at=now + timedelta(days=1),
                    state="closed", price_lines=[], total_pence=0, deposit_pence=0,
                    idempotency_key="proto")
        db.session.add(hire)
        seed_rate_tables(years=[now.year, now.year + 1])
        db.session.commit()
        proto_car, proto_user, proto_hire, proto_profile = car.id, user.id, hire.id, user.id
        branch_ids = [b.id for b in branches]
        class_ids = [c.id for c in classes]

    engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL synchronous_commit = off"))
        b0, c0 = min(branch_ids), min(class_ids)
        _copy_from_prototype(conn, "cars", proto_car, {
            "plate": "'C' || lpad(g::text, 6, '0')", "vin": "'BENCHVIN' || lpad(g::text, 9, '0')",
            "car_class_id": f"{c0} + (g % 4)", "home_branch_id": f"{b0} + (g % {BRANCHES})",
            "seats": "CASE WHEN g % 10 = 0 THEN 7 WHEN g % 4 = 0 THEN 4 ELSE 5 END",
            "transmission": "CASE WHEN g % 3 = 0 THEN 'automatic' ELSE 'manual' END",
            "fuel_type": "(ARRAY['petrol','diesel','hybrid','electric'])[1 + g % 4]",
            "daily_rate_override_pence": "CASE WHEN g % 7 = 0 THEN 3000 + (g % 50) * 100 END",
            "status": "CASE WHEN g % 97 = 0 THEN 'retired' ELSE 'available' END",
        }, f"generate_series(1, {CARS}) g")
        log(f"  {CARS:,} cars")
        _copy_from_prototype(conn, "users", proto_user, {
            "email": "'customer' || g || '@bench.example'", "session_token": "md5(g::text)",
        }, f"generate_series(1, {CUSTOMERS}) g")
        profile_columns = [r[0] for r in conn.execute(text(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'customer_profiles' "
            "AND table_schema = 'public' AND column_name <> 'user_id' ORDER BY ordinal_position"))]
        conn.execute(text(
            f"INSERT INTO customer_profiles (user_id, {', '.join(profile_columns)}) "
            f"SELECT u.id, {', '.join('p.' + c for c in profile_columns)} "
            "FROM users u, customer_profiles p WHERE p.user_id = :proto AND u.id <> :proto"),
            {"proto": proto_profile})
        log(f"  {CUSTOMERS:,} customers")
        first_car = conn.scalar(text("SELECT min(id) FROM cars WHERE plate <> 'PROTO'"))
        first_user = conn.scalar(text("SELECT min(id) FROM users WHERE email <> 'proto@bench.example'"))
        # Hire k of car c. The past ones (k < past) each get their own slot of `slot_hours`
        # (at least 4 days): 1 to 3 days long, so with the hour of cleaning a hire never reaches
        # the next slot (the exclusion constraint would refuse it). The future ones are booked
        # as customers book: close together in the coming weeks (a gap of ~5 days), sparse
        # towards the end of the year (~33 days). Cars are shifted by a fraction of a slot so
        # that hires start on every day.
        phase = "((c % 97) * 96) / 97 * interval '1 hour'"
        future = (f"now() + interval '4 days' + {phase} + "
                  f"(4 * (k - {past}) + {spread} * (k - {past}) * (k - {past})) * interval '1 day'")
        start = (f"CASE WHEN k < {past} THEN (now() - interval '{PAST_DAYS} days') + "
                 f"(k * {slot_hours} + ((c % 97) * {slot_hours}) / 97) * interval '1 hour' "
                 f"ELSE {future} END")
        length = "(1 + (c * 7 + k * 13) % 3) * interval '1 day'"
        _copy_from_prototype(conn, "hires", proto_hire, {
            "reference": "'B' || lpad((c * 1000 + k)::text, 10, '0')",
            "idempotency_key": "'bench-' || c || '-' || k",
            "customer_id": f"{first_user} + ((c * 31 + k) % {CUSTOMERS})",
            "car_id": f"{first_car} + c",
            "pickup_branch_id": f"{b0} + ((c + 1) % {BRANCHES})",
            "return_branch_id": f"{b0} + ((c + 1) % {BRANCHES})",
            "start_at": start, "end_at": f"{start} + {length}",
            "state": (f"CASE WHEN {start} + {length} < now() THEN 'closed' "
                      f"WHEN {start} < now() THEN 'active' "
                      "WHEN (c + k) % 10 = 3 THEN 'cancelled' ELSE 'confirmed' END"),
            "total_pence": "(1 + (c * 7 + k * 13) % 3) * 4680", "deposit_pence": "25000",
            "created_at": f"{start} - interval '20 days'", "updated_at": f"{start} - interval '20 days'",
        }, f"generate_series(0, {CARS - 1}) c, generate_series(0, {per_car - 1}) k")
        log(f"  {hires:,} hires")
        conn.execute(text(f"DELETE FROM hires WHERE id = {proto_hire}"))
        conn.execute(text(f"DELETE FROM cars WHERE id = {proto_car}"))
        conn.execute(text(f"DELETE FROM customer_profiles WHERE user_id = {proto_user}"))
        conn.execute(text(f"DELETE FROM users WHERE id = {proto_user}"))
        conn.execute(text(
            "INSERT INTO occupancies (car_id, starts_at, ends_at, hire_id) "
            "SELECT car_id, start_at, end_at + interval '60 minutes', id FROM hires "
            "WHERE state IN ('held', 'confirmed', 'active')"))
        # A service for one car in fifty, in the gap after one of its future hires.
        conn.execute(text(
            "WITH gaps AS (SELECT DISTINCT ON (h.car_id) h.car_id, h.end_at + interval '2 hours' AS s "
            "FROM hires h WHERE h.car_id % 50 = 0 AND h.state = 'confirmed' "
            "ORDER BY h.car_id, h.start_at), "
            "blocks AS (INSERT INTO maintenance_blocks (car_id, starts_at, ends_at, kind, note, created_at) "
            "SELECT car_id, s, s + interval '4 hours', 'service', '', now() FROM gaps "
            "RETURNING id, car_id, starts_at, ends_at) "
            "INSERT INTO occupancies (car_id, starts_at, ends_at, maintenance_block_id) "
            "SELECT car_id, starts_at, ends_at, id FROM blocks"))
        occupancies = conn.scalar(text("SELECT count(*) FROM occupancies"))
        log(f"  {occupancies:,} occupancies (hires still holding their car, maintenance)")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()


# --- measuring ---------------------------------------------------------------------------------

def trips(seed: int, n: int, branch_codes: list[str]) -> list[tuple[str, datetime, datetime]]:
    """Random (branch, local pickup, local return) in the coming year, 1 to 14 days long."""
    rng = random.Random(seed)
    today = datetime.now(LONDON).date()
    out = []
    for _ in range(n):
        # Most people look a few weeks ahead, some much further.
        ahead = rng.randint(2, 60) if rng.random() < 0.7 else rng.randint(61, 340)
        day = today + timedelta(days=ahead)
        start = datetime(day.year, day.month, day.day, rng.randint(8, 17), rng.choice((0, 30)))
        end = start + timedelta(days=rng.randint(1, 14), hours=rng.randint(0, 2))
        out.append((rng.choice(branch_codes), start, end))
    return out


class Target:
    """One filled database: its app, a test client, and the timings taken against it."""

    def __init__(self, server: str, name: str):
        self.name = name
        self.app = make_app(database_url(server, name))
        self.client = self.app.test_client()
        self.query_ms: list[float] = []
        self.page_ms: list[float] = []
        from app.extensions import db
        from app.models import Branch
        with self.app.app_context():
            self.branches = {b.code: b.id for b in db.session.query(Branch)}

    def time_query(self, branch_code: str, start: datetime, end: datetime) -> int:
        from app.booking import availability, trips
        from app.extensions import db
        from app.models import utcnow
        with self.app.app_context():
            trip = trips.make_trip(pickup_branch_id=self.branches[branch_code],
                                   return_branch_id=self.branches[branch_code],
                                   pickup_local=start, return_local=end, now=utcnow())
            query = availability.available_cars_query(trip, limit=self.app.config["SEARCH_RESULTS_LIMIT"])
            t0 = time.perf_counter()
            rows = db.session.execute(query).all()
            self.query_ms.append((time.perf_counter() - t0) * 1000)
            return rows[0].matches if rows else 0

    def time_page(self, branch_code: str, start: datetime, end: datetime) -> None:
        branch = self.branches[branch_code]
        args = {"pickup_branch": branch, "return_branch": branch,
                "pickup_at": start.strftime("%Y-%m-%dT%H:%M"), "return_at": end.strftime("%Y-%m-%dT%H:%M")}
        t0 = time.perf_counter()
        response = self.client.get("/book/", query_string=args)
        self.page_ms.append((time.perf_counter() - t0) * 1000)
        if response.status_code != 200 or 'id="results"' not in response.get_data(as_text=True):
            raise SystemExit(f"search page failed on {self.name}: {response.status_code}\n"
                             + response.get_data(as_text=True)[-3000:])

    def explain(self, branch_code: str, start: datetime, end: datetime) -> str:
        from sqlalchemy.dialects import postgresql

        from app.booking import availability, trips
        from app.extensions import db
        from app.models import utcnow
        with self.app.app_context():
            trip = trips.make_trip(pickup_branch_id=self.branches[branch_code],
                                   return_branch_id=self.branches[branch_code],
                                   pickup_local=start, return_local=end, now=utcnow())
            query = availability.available_cars_query(trip, limit=self.app.config["SEARCH_RESULTS_LIMIT"])
            sql = str(query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
            plan = db.session.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + sql)).scalars().all()
            return "\n".join(plan)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432",
                        help="PostgreSQL server URL without a database name")
    parser.add_argument("--runs", type=int, default=300, help="timed searches per database and kind")
    parser.add_argument("--reuse", action="store_true", help="keep databases that are already filled")
    parser.add_argument("--explain", action="store_true", help="print the 2M query plan")
    options = parser.parse_args()

    for name, size in SIZES.items():
        if options.reuse and filled(options.server, name, size):
            log(f"{name}: already filled with {size:,} hires")
            continue
        log(f"{name}: creating and filling with {size:,} hires")
        t0 = time.perf_counter()
        recreate(options.server, name)
        fill(make_app(database_url(options.server, name)), size)
        log(f"{name}: filled in {time.perf_counter() - t0:.0f} s")

    targets = [Target(options.server, name) for name in SIZES]
    samples = trips(seed=4, n=options.runs + 20, branch_codes=sorted(targets[0].branches))
    warm, timed = samples[:20], samples[20:]
    for code, start, end in warm:
        for target in targets:
            target.time_query(code, start, end)
            target.time_page(code, start, end)
    for target in targets:
        target.query_ms.clear()
        target.page_ms.clear()
    log(f"timing {len(timed)} searches per database, alternating between them")
    free = {t.name: [] for t in targets}
    for code, start, end in timed:
        for target in targets:
            free[target.name].append(target.time_query(code, start, end))
            target.time_page(code, start, end)

    rows = []
    for target in targets:
        rows.append((SIZES[target.name], statistics.mean(free[target.name]),
                     pct(target.query_ms, 50), pct(target.query_ms, 95),
                     pct(target.page_ms, 50), pct(target.page_ms, 95)))
    print()
    print(f"{'hires':>11} | {'free cars (mean)':>16} | {'query p50':>9} | {'query p95':>9} | "
          f"{'page p50':>9} | {'page p95':>9}")
    print("-" * 81)
    for hires, mean_free, qp50, qp95, pp50, pp95 in rows:
        print(f"{hires:>11,} | {mean_free:>16.1f} | {qp50:>6.2f} ms | {qp95:>6.2f} ms | "
              f"{pp50:>6.1f} ms | {pp95:>6.1f} ms")
    small, large = rows[0][3], rows[1][3]
    ratio = large / small if small else float("inf")
    print()
    print(f"query p95 at {rows[1][0]:,} hires: {large:.2f} ms (limit < {QUERY_P95_LIMIT_MS:.0f} ms); "
          f"{ratio:.2f}x the {rows[0][0]:,}-hire figure (limit < {GROWTH_LIMIT:.0f}x)")
    if options.explain:
        code, start, end = timed[0]
        print()
        print(targets[1].explain(code, start, end))
    ok = large < QUERY_P95_LIMIT_MS and ratio < GROWTH_LIMIT
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

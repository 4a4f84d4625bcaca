#!/usr/bin/env python
"""Profile the signed-in search page and car page in-process: time per page, SQL round trips
per page (SQLAlchemy's events) and, with --profile, where the time goes (pyinstrument).

    .venv/bin/python bench/profile_pages.py                      # SQLite file in /tmp
    .venv/bin/python bench/profile_pages.py --database postgresql://postgres@127.0.0.1:5432/bench_x
    .venv/bin/python bench/profile_pages.py --profile search     # pyinstrument's tree for one page
    .venv/bin/python bench/profile_pages.py --calls              # + Python function calls per request

The database is created and filled (demo data, plus cars so that the first branch lists a full
page of SEARCH_RESULTS_LIMIT cars); a PostgreSQL database must be named bench_* or listed in BENCH_OWN_DATABASES (it is dropped
and created again). Requests go through Flask's test client with a real signed-in customer's
session cookie (no page cache: signed-in pages are rendered every time), so what is measured
is Flask + the app + the database, without Gunicorn or the network. `pages.measure` is shared
with bench/throughput.py, which prints the round trips of the pages it loads.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import pages  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="", help="bench_* PostgreSQL URL (default: SQLite)")
    parser.add_argument("--requests", type=int, default=300, help="timed requests per page")
    parser.add_argument("--calls", action="store_true",
                        help="also count Python function calls per request (cProfile, 50 requests):"
                             " a measure of the Python work that the machine's load does not move")
    parser.add_argument("--profile", choices=("search", "car"), action="append", default=[],
                        help="print pyinstrument's profile of this page (repeatable)")
    options = parser.parse_args()

    url = options.database or f"sqlite:///{tempfile.mkdtemp(prefix='acme-profile-')}/p.sqlite3"
    if url.startswith("postgresql"):
        from bench import common
        common.recreate_database(url)
    app = pages.make_app(url)
    paths, cookie = pages.prepare(app)
    client = app.test_client()
    client.set_cookie(cookie[0], cookie[1], domain="localhost")
    print(f"database: {app.config['SQLALCHEMY_DATABASE_URI'].split('@')[-1]}; "
          f"{options.requests} requests per page, signed in")
    # CPU ms: this process's CPU time per request (Flask, the app, the driver's side of the
    # database calls), much steadier than wall time on a machine others are loading.
    print(f"{'page':<8} | {'SQL round trips':>15} | {'CPU ms':>7} | {'mean ms':>8} | {'p50 ms':>7} "
          f"| {'p95 ms':>7}")
    for name, path in paths.items():
        statements = pages.measure(app, client, path)
        times = []
        cpu0 = time.process_time()
        for _ in range(options.requests):
            t0 = time.perf_counter()
            response = client.get(path)
            times.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200, response.status_code
        cpu = (time.process_time() - cpu0) * 1000 / options.requests
        times.sort()
        print(f"{name:<8} | {len(statements):>15} | {cpu:>7.2f} | {statistics.mean(times):>8.2f} | "
              f"{times[len(times) // 2]:>7.2f} | {times[int(len(times) * 0.95)]:>7.2f}")
        for statement in statements:
            print(f"           {' '.join(statement.split())[:150]}")
        if options.calls:
            import cProfile
            import pstats
            counter = cProfile.Profile()
            counter.enable()
            for _ in range(50):
                client.get(path)
            counter.disable()
            print(f"           {pstats.Stats(counter).total_calls / 50:,.0f} Python function calls per request")
    for name in options.profile:
        from pyinstrument import Profiler
        profiler = Profiler(interval=0.0002)
        profiler.start()
        for _ in range(options.requests):
            client.get(paths[name])
        profiler.stop()
        print(f"\n=== pyinstrument: {options.requests} x {name} page ===")
        print(profiler.output_text(unicode=False, color=False, show_all=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

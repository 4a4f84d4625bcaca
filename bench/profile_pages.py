#!/usr/bin/env python
"""Profile the signed-in search page and car page in-process: time per page, SQL round trips
per page (SQLAlchemy's events) and, with --profile, where the time goes (pyinstrument).

    .venv/bin/python bench/profile_pages.py                      # SQLite file in /tmp
    .venv/bin/python bench/profile_pages.py --database postgresql://postgres@127.0.0.1:5432/bench_x
    .venv/bin/python bench/profile_pages.py --profile search     # pyinstrument's tree for one page
    .venv/bin/python bench/profile_pages.py --calls              # + Python function calls per request
    .venv/bin/python bench/profile_pages.py --board --only board --calls   # + the counter board
    .venv/bin/python bench/profile_pages.py --only search --confirm 300    # + 300 confirm POSTs

`--confirm N` also posts N bookings (the confirm step's form, as the review page serves it,
each for another car or trip, so each holds a car): the booking POST's statements, CPU and time,
in-process (bench/booking_paths.py measures it under load, through Gunicorn).

`search_new` is the search page as a trip no one asked for yet (another return time on every
request): the cost of a search whose answer no worker has kept (app/booking/availability.py).

The database is created and filled (demo data, plus cars so that the first branch lists a full
page of SEARCH_RESULTS_LIMIT cars); a PostgreSQL database must be named bench_* or listed in BENCH_OWN_DATABASES (it is dropped
and created again). Requests go through Flask's test client with a real signed-in customer's
session cookie (no page cache: signed-in pages are rendered every time), so what is measured
is Flask + the app + the database, without Gunicorn or the network. `pages.measure` is shared
with bench/throughput.py, which prints the round trips of the pages it loads.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import pages  # noqa: E402

PAGES = ("search", "search_new", "car", "board")


def new_searches(search: str, count: int = 400) -> list[str]:
    """`search` with `count` different return times (5 minutes apart, within opening hours,
    3 days on and later): each a trip no worker has answered yet, so no kept answer is reused."""
    path, _, query = search.partition("?")
    args = dict(parse_qsl(query))
    pickup = datetime.fromisoformat(args["pickup_at"])
    out = []
    for days in range(3, 14):
        if (pickup + timedelta(days=days)).weekday() == 6:  # the demo branches close on Sundays
            continue
        for minutes in range(0, 6 * 60, 5):  # 10:00 to 15:55 (Saturdays close at 16:00)
            back = pickup + timedelta(days=days, minutes=minutes)
            out.append(f"{path}?{urlencode({**args, 'return_at': back.strftime('%Y-%m-%dT%H:%M')})}")
    return out[:count]


def confirm_forms(client, search: str, count: int) -> list[tuple[str, dict]]:
    """`count` (confirm URL, form) pairs as the review page serves them: the search's cars, in
    turn, for trips that do not overlap (booking_paths.trips): each one holds a car."""
    from bench.booking_paths import trips
    from bench.contention import confirm_form_of
    args = dict(parse_qsl(search.partition("?")[2]))
    cars = sorted({int(c) for c in re.findall(r'/book/cars/(\d+)\?', client.get(search).get_data(as_text=True))})
    out = []
    for pickup_at, return_at in trips(date.today(), -(-count // len(cars))):
        trip = {**args, "pickup_at": pickup_at, "return_at": return_at}
        for car in cars[:count - len(out)]:
            page = client.get(f"/book/cars/{car}/review?{urlencode(trip)}")
            action, fields = confirm_form_of(page.get_data(as_text=True))
            assert page.status_code == 200 and action, page.status_code
            out.append((action, dict(fields)))
    return out


def measure_confirms(app, client, search: str, count: int) -> None:
    """Post `count` bookings; print the statements of one (with its COMMIT) and the costs."""
    forms = confirm_forms(client, search, count + 1)
    url, form = forms.pop()
    with pages.statements_sent(app) as sent:
        assert client.post(url, data=form, headers={"HX-Request": "true"}).status_code == 204
    on_postgres = app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql")
    times = []
    cpu0, server0 = time.process_time(), postgres_cpu_ms() if on_postgres else 0
    for url, form in forms:
        t0 = time.perf_counter()
        response = client.post(url, data=form, headers={"HX-Request": "true"})
        times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 204, response.status_code  # held: on to payment
    cpu = (time.process_time() - cpu0) * 1000 / count
    server = f"{(postgres_cpu_ms() - server0) / count:.2f}" if on_postgres else "-"
    times.sort()
    print(f"{'confirm':<8} | {len(sent) - sent.count('COMMIT'):>15} | {cpu:>7.2f} | {server:>13} | "
          f"{statistics.mean(times):>8.2f} | {times[len(times) // 2]:>7.2f} | "
          f"{times[int(len(times) * 0.95)]:>7.2f}")
    for statement in sent:
        print(f"           {' '.join(statement.split())[:150]}")


def postgres_cpu_ms() -> float:
    """CPU time used so far by this machine's PostgreSQL processes (server and backends), in ms:
    what the database spends on a page (parsing, planning, executing, each round trip's
    protocol work), read from /proc around the timed requests."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if stat[stat.index("(") + 1:stat.rindex(")")] == "postgres":
            fields = stat[stat.rindex(")") + 2:].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total * 1000 / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="", help="bench_* PostgreSQL URL (default: SQLite)")
    parser.add_argument("--requests", type=int, default=300, help="timed requests per page")
    parser.add_argument("--calls", action="store_true",
                        help="also count Python function calls per request (cProfile, 50 requests):"
                             " a measure of the Python work that the machine's load does not move")
    parser.add_argument("--board", action="store_true",
                        help="also the counter board of a branch with 300 pickups and returns today"
                             " (booking_paths.counter_day's data), as its member of staff opens it")
    parser.add_argument("--only", choices=PAGES, action="append", default=[],
                        help="time only this page (repeatable)")
    parser.add_argument("--profile", choices=PAGES, action="append", default=[],
                        help="print pyinstrument's profile of this page (repeatable)")
    parser.add_argument("--cprofile", choices=PAGES, action="append", default=[],
                        help="print cProfile's top functions (by own time) for this page")
    parser.add_argument("--confirm", type=int, default=0, metavar="N",
                        help="also post N bookings (the confirm step) and time them")
    options = parser.parse_args()
    if "board" in options.only + options.profile + options.cprofile:
        options.board = True

    url = options.database or f"sqlite:///{tempfile.mkdtemp(prefix='acme-profile-')}/p.sqlite3"
    if url.startswith("postgresql"):
        from bench import common
        common.recreate_database(url)
    # --confirm: every booking is held by the one customer, who may hold that many.
    app = pages.make_app(url, **({"MAX_HOLDS_PER_CUSTOMER": options.confirm + 1} if options.confirm else {}))
    paths, cookie = pages.prepare(app)
    search = paths["search"]
    paths["search_new"] = paths["search"]  # each request another trip: see new_searches
    variants = {"search_new": new_searches(paths["search"])}
    cookies = {name: cookie for name in paths}
    if options.board:
        from bench import booking_paths, common
        branch_id, staff_id = booking_paths.counter_day(app, booking_paths.BOARD_HIRES)
        staff = common.signed_in_sessions(app, [staff_id])[0]
        paths["board"] = f"/counter/?branch={branch_id}"
        cookies["board"] = tuple(staff.cookie.split("=", 1))
    if options.only:
        paths = {name: path for name, path in paths.items() if name in options.only}
    clients = {}
    for name, (key, value) in cookies.items():
        clients[name] = app.test_client()
        clients[name].set_cookie(key, value, domain="localhost")
    print(f"database: {app.config['SQLALCHEMY_DATABASE_URI'].split('@')[-1]}; "
          f"{options.requests} requests per page, signed in")
    # CPU ms: this process's CPU time per request (Flask, the app, the driver's side of the
    # database calls), much steadier than wall time on a machine others are loading.
    # PostgreSQL ms: the database server's CPU per request (its processes on this machine).
    on_postgres = url.startswith("postgresql")
    print(f"{'page':<8} | {'SQL round trips':>15} | {'CPU ms':>7} | {'PostgreSQL ms':>13} | "
          f"{'mean ms':>8} | {'p50 ms':>7} | {'p95 ms':>7}")
    for name, path in paths.items():
        client = clients[name]
        statements = pages.measure(app, client, path)
        times = []
        cpu0, server0 = time.process_time(), postgres_cpu_ms() if on_postgres else 0
        every = variants.get(name, [path])
        for i in range(options.requests):
            t0 = time.perf_counter()
            response = client.get(every[i % len(every)])
            times.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200, response.status_code
        cpu = (time.process_time() - cpu0) * 1000 / options.requests
        server = f"{(postgres_cpu_ms() - server0) / options.requests:.2f}" if on_postgres else "-"
        times.sort()
        print(f"{name:<8} | {len(statements):>15} | {cpu:>7.2f} | {server:>13} | {statistics.mean(times):>8.2f} | "
              f"{times[len(times) // 2]:>7.2f} | {times[int(len(times) * 0.95)]:>7.2f}")
        for statement in statements:
            print(f"           {' '.join(statement.split())[:150]}")
        if options.calls:
            import cProfile
            import pstats
            counter = cProfile.Profile()
            counter.enable()
            for i in range(50):
                client.get(every[(options.requests + i) % len(every)])
            counter.disable()
            print(f"           {pstats.Stats(counter).total_calls / 50:,.0f} Python function calls per request")
    if options.confirm:
        confirming = app.test_client()
        confirming.set_cookie(*cookie, domain="localhost")
        measure_confirms(app, confirming, search, options.confirm)
    if options.board:
        rows = clients["board"].get(paths["board"]).get_data(as_text=True).count('class="board-item')
        print(f"board: {rows} rows")
    for name in options.cprofile:
        import cProfile
        import pstats
        counter = cProfile.Profile()
        counter.enable()
        for _ in range(50):
            clients[name].get(paths[name])
        counter.disable()
        print(f"\n=== cProfile: 50 x {name} page, by own time ===")
        pstats.Stats(counter, stream=sys.stdout).sort_stats("tottime").print_stats(25)
    for name in options.profile:
        from pyinstrument import Profiler
        profiler = Profiler(interval=0.0002)
        profiler.start()
        for _ in range(options.requests):
            clients[name].get(paths[name])
        profiler.stop()
        print(f"\n=== pyinstrument: {options.requests} x {name} page ===")
        print(profiler.output_text(unicode=False, color=False, show_all=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

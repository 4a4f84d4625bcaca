"""Benchmark 2: booking contention - nobody ever gets a car that is already taken.

    .venv/bin/python bench/contention.py [--attempts 10000] [--clients 100]

10,000 booking attempts from 100 concurrent clients (wrk, 100 connections) at the 20 demo cars,
for ten overlapping periods. Each attempt is the booking's real confirm form, as the review page
serves it (hidden fields, expected total, idempotency key) and as htmx posts it (HX-Request,
the signed-in customer's session cookie and CSRF token, a same-origin Referer over https as
Nginx forwards it). 100 customers take turns; each attempt has its own idempotency key, except
3% that repeat an earlier attempt of the same customer exactly (a double click).

The hold limit per customer (MAX_HOLDS_PER_CUSTOMER, 2) is raised for this run so that attempts
reach the race for the car instead of being turned away by that earlier, cheaper rule.

Afterwards, in SQL: no two occupying hires (held, confirmed, active) of a car overlap, nor do two
occupancy rows; and no answer was a 5xx (wrk's count and the app's /metrics). Exit 1 otherwise.
"""

from __future__ import annotations

import argparse
import random
import secrets
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402

PERIODS = 10
REPEAT_SHARE = 0.03
CONFIRM_ROUTE = "booking.confirm"


def periods(today: date) -> list[tuple[str, str]]:
    """Ten overlapping trips, 3 to 20 days ahead, pickup and return on days branches open."""
    out, day = [], today + timedelta(days=3)
    lengths = [4, 2, 5, 3, 6, 2, 4, 3, 5, 2]
    while len(out) < PERIODS:
        end = day + timedelta(days=lengths[len(out)])
        if day.weekday() != 6 and end.weekday() != 6:  # the demo branches close on Sundays
            out.append((f"{day.isoformat()}T10:00", f"{end.isoformat()}T10:00"))
        day += timedelta(days=1)
    return out


class _ConfirmForm(HTMLParser):
    def __init__(self):
        super().__init__()
        self.inside, self.action, self.fields = False, "", []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and a.get("id") == "confirm-form":
            self.inside, self.action = True, a.get("action", "")
        elif self.inside and tag == "input" and a.get("name"):
            self.fields.append((a["name"], a.get("value") or ""))

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False


def review_form(base_url: str, session: common.BrowserSession, car, trip) -> tuple[str, list]:
    """The confirm form the review page gives this customer for this car and trip."""
    import requests
    args = {"pickup_branch": car["branch"], "return_branch": car["branch"],
            "pickup_at": trip[0], "return_at": trip[1]}
    url = f"{base_url}/book/cars/{car['id']}/review?{urlencode(args)}"
    response = requests.get(url, headers={"Cookie": session.cookie, "X-Forwarded-Proto": "https"},
                            timeout=120)
    action, fields = confirm_form_of(response.text)
    if response.status_code != 200 or not action:
        raise SystemExit(f"no confirm form at {url}: {response.status_code}\n{response.text[:2000]}")
    return action, fields


def confirm_form_of(html: str) -> tuple[str, list]:
    """The review page's confirm form: its action and its fields ("" and [] when it has none)."""
    parser = _ConfirmForm()
    parser.feed(html)
    return parser.action, parser.fields


def overlaps(app) -> dict[str, int]:
    from sqlalchemy import text

    from app.extensions import db
    occupying = "('held', 'confirmed', 'active')"
    with app.app_context():
        result = {
            "overlapping occupying hires": db.session.scalar(text(
                "SELECT count(*) FROM hires a JOIN hires b ON a.car_id = b.car_id AND a.id < b.id "
                f"WHERE a.state IN {occupying} AND b.state IN {occupying} "
                "AND tstzrange(a.start_at, a.end_at) && tstzrange(b.start_at, b.end_at)")),
            "overlapping occupancies": db.session.scalar(text(
                "SELECT count(*) FROM occupancies a JOIN occupancies b ON a.car_id = b.car_id "
                "AND a.id < b.id AND tstzrange(a.starts_at, a.ends_at) && "
                "tstzrange(b.starts_at, b.ends_at)")),
            "occupying hires without occupancy": db.session.scalar(text(
                f"SELECT count(*) FROM hires h WHERE h.state IN {occupying} AND NOT EXISTS "
                "(SELECT 1 FROM occupancies o WHERE o.hire_id = h.id)")),
            "held hires": db.session.scalar(text("SELECT count(*) FROM hires WHERE state = 'held'")),
        }
        db.session.remove()
        db.engine.dispose()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--threads", type=int, default=4, help="wrk threads")
    options = parser.parse_args()
    rng = random.Random(9)

    print(f"machine: {common.machine()}")
    db_url = common.os.environ.get("BENCH_DATABASE_URL", common.DEFAULT_DB)
    env = common.app_env(db_url, common.os.environ.get("BENCH_REDIS_URL", common.DEFAULT_REDIS),
                         FLASK_MAX_HOLDS_PER_CUSTOMER=str(options.attempts))
    common.recreate_database(db_url)
    app = common.build_app(env)
    customer_ids = common.migrate_and_seed(app, customers=options.clients)
    sessions = common.signed_in_sessions(app, customer_ids)
    with app.app_context():
        from sqlalchemy import select

        from app.extensions import db
        from app.models import Car
        cars = [{"id": c.id, "branch": c.home_branch_id}
                for c in db.session.scalars(select(Car).order_by(Car.id))]
        db.session.remove()
        db.engine.dispose()
    trips = periods(date.today())
    print(f"{len(cars)} cars x {len(trips)} overlapping periods; {len(sessions)} customers; "
          f"{options.attempts} attempts")

    with common.running_stack(env) as stack:
        combos = [(car, t) for car in cars for t in trips]
        with ThreadPoolExecutor(8) as pool:
            forms = list(pool.map(lambda ct: review_form(stack.base_url, rng.choice(sessions), *ct),
                                  combos))
        lines, sent_by = [], {}
        for _ in range(options.attempts):
            session = rng.choice(sessions)
            earlier = sent_by.get(session.user_id)
            if earlier and rng.random() < REPEAT_SHARE:
                lines.append(earlier)  # the same customer posting the same form again
                continue
            action, fields = rng.choice(forms)
            body = [(k, session.csrf if k == "csrf_token" else
                     secrets.token_urlsafe(24) if k == "idempotency_key" else v) for k, v in fields]
            line = "\t".join(["POST", action, session.cookie, "X-CSRFToken", session.csrf,
                              urlencode(body)])
            lines.append(line)
            sent_by[session.user_id] = line
        replay = stack.workdir / "attempts.tsv"
        replay.write_text("\n".join(lines) + "\n")
        before = stack.scrape()
        common.drain(stack)
        began = time.monotonic()
        progress = Progress(stack, confirms(before), options.attempts)
        result = common.wrk(stack.base_url + "/", connections=options.clients,
                            threads=options.threads, seconds=4 * 3600, script="replay.lua",
                            script_args=[str(options.threads)],
                            env={"BENCH_REPLAY_FILE": str(replay),
                                 "BENCH_REFERER": stack.base_url.replace("http:", "https:") + "/book/"},
                            timeout_s=60, until=progress.finished, poll_seconds=10)
        elapsed = time.monotonic() - began
        common.drain(stack)
        after = stack.scrape()
        stack_log = stack.logs["gunicorn"].read_text(errors="replace")

    server = {status: confirms(after, status=status) - confirms(before, status=status)
              for status in sorted({s for s in _statuses(after)})}
    server = {s: int(n) for s, n in server.items() if n}
    checks = overlaps(app)
    wrk_total = sum(result.statuses.values())
    failures = []
    if checks["overlapping occupying hires"] or checks["overlapping occupancies"]:
        failures.append(f"double booking: {checks}")
    if result.five_xx or any(int(s) >= 500 for s in server):
        failures.append(f"5xx answers: wrk {result.five_xx}, /metrics "
                        f"{sum(n for s, n in server.items() if int(s) >= 500)}")
    lost = options.attempts - sum(server.values())
    restarts = stack_log.count("Autorestarting worker")
    rows = [
        ("attempts answered (wrk)", wrk_total),
        ("attempts that never reached a view", lost),
        ("Gunicorn worker restarts (max_requests)", restarts),
        ("answers by status (wrk)", dict(sorted(result.statuses.items()))),
        ("answers by status (/metrics, booking.confirm)", server),
        ("socket errors (wrk)", {k: v for k, v in result.errors.items() if v} or "none"),
        ("elapsed", f"{elapsed:.0f} s ({wrk_total / elapsed:.1f} attempts/s)"),
        ("latency p50 / p95 / p99", f"{result.p50_ms:.0f} / {result.p95_ms:.0f} / {result.p99_ms:.0f} ms"),
        *[(k, v) for k, v in checks.items()],
    ]
    print()
    print(common.table(rows, ("measure", "value")))
    if lost:
        print(f"NOTE: {lost} attempt(s) never reached a view (wrk: {result.errors.get('read', 0)} "
              f"socket read errors; Gunicorn recycled workers {restarts} times for max_requests). "
              "Neither Gunicorn's log nor /metrics saw it: no 5xx and no booking. Counted, not a "
              "target of this benchmark; bench/README.md says what is known.")
    for failure in failures:
        print(f"TARGET MISSED: {failure}")
    print("RESULT:", "FAIL" if failures else "PASS")
    return 1 if failures else 0


def confirms(text: str, **labels) -> float:
    return common.metric(text, "flask_http_request_duration_seconds_count", route=CONFIRM_ROUTE,
                         **labels)


class Progress:
    """Polled while wrk runs: done when every attempt is answered, or nothing moved for
    STALL_SECONDS (a lost request never answers; the report counts the gap)."""

    STALL_SECONDS = 120

    def __init__(self, stack, start: float, attempts: int):
        self.stack, self.start, self.attempts = stack, start, attempts
        self.last, self.last_change = start, time.monotonic()

    def finished(self) -> bool:
        try:
            now = confirms(self.stack.scrape())
        except Exception:  # a slow scrape under load: ask again next time
            return False
        if now != self.last:
            self.last, self.last_change = now, time.monotonic()
            print(f"  {int(now - self.start)} of {self.attempts} attempts answered", flush=True)
        return (now - self.start >= self.attempts
                or time.monotonic() - self.last_change > self.STALL_SECONDS)


def _statuses(text: str) -> set[str]:
    return set(common.re.findall(r'route="booking\.confirm",status="(\d+)"', text)) | set(
        common.re.findall(r'status="(\d+)",route="booking\.confirm"', text)) | set(
        s for s in common.re.findall(r'status="(\d+)"', text))


if __name__ == "__main__":
    sys.exit(main())

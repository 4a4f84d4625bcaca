"""Soak with faults: a mixed workload for a while, faults injected on a schedule, then checks.

    .venv/bin/python bench/soak.py               # 10 minutes
    .venv/bin/python bench/soak.py --ci          # the 2-minute variant CI runs

Everything runs on its own services so nobody else's is disturbed: a PostgreSQL cluster of its
own ("soak", port 5440, created on first use with pg_createcluster), its own redis-server (port
6391, append-only file as production's role sets it), the Stripe and licence stand-ins in this
process behind fault-injecting proxies, Gunicorn with the deploy settings (bench/gunicorn.conf.py)
and two RQ workers with the scheduler, restarted when they die (as systemd does in production).

Workload, by virtual users (threads; a customer or a staff member each, signed-in sessions
minted with the app's secret): search, car quote, review and confirm (hold), pay by card at the
Stripe stand-in's Checkout, cancel some bookings (refund), and at the counter re-check the
licence, hand the car over and take it back. Two capacities are measured at start and the
workload runs at 80% of each: requests at 80% of the search page's saturated throughput (15 s
of wrk; --rate overrides), and bookings at 80% of what the two RQ workers can carry (trivial
jobs timed through them, divided by the jobs a booking makes, JOBS_PER_BOOKING), and none while
RQ's backlog is over BACKLOG_LIMIT. The others only look. The scheduler's tick runs every
minute as production's timer runs it (`acme tick`), and goes on while the queues drain.

Faults, on a schedule (times scale with the run's length): SIGKILL a Gunicorn worker; SIGKILL an
RQ work horse in the middle of a job (while Stripe is slow, so one is running); restart
PostgreSQL; stop Redis for 20 s; make Stripe and the licence service slow (past the client
timeouts) and then answer 500 for a while.

Checks afterwards (exit 1 if any fails):
- no confirmed (or later) booking without a succeeded card charge, and no succeeded charge of a
  booking that is not booked unless it is refunded;
- at Stripe (the stand-in's own records): no payment taken twice for one payment row, no refund
  made twice, refunds never more than the charge;
- no two occupying hires of a car overlap;
- every job finished or is visibly failed and retryable: RQ's queues drained, nothing started
  and abandoned, every failed job listed; and no payment, refund, webhook event, licence check
  or email left waiting with no job to move it (none silently lost; the tick queues again the
  work whose job never reached Redis, app/jobs/recovery.py);
- the 5xx rate (no answer counted as a failure too) outside the seconds a dependency is
  deliberately down (plus GRACE_SECONDS) <= 1 in 10,000 requests; during them every 5xx is the
  friendly 503 page, and nowhere a stack trace;
- the 5xx count in /metrics (the generator's routes) agrees with the load generator's, give or
  take the requests the generator never got an answer to.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402

PG_VERSION = os.environ.get("SOAK_PG_VERSION", "15")
PG_CLUSTER = "soak"
PG_PORT = int(os.environ.get("SOAK_PG_PORT", 5440))
REDIS_PORT = int(os.environ.get("SOAK_REDIS_PORT", 6391))
DB_URL = f"postgresql://postgres@127.0.0.1:{PG_PORT}/soak_acme"
POFOD_TARGET = 1 / 10_000
STACK_TRACE = "Traceback (most recent call last)"
FRIENDLY_MARKERS = ("error-box", '"request_id"', "Temporarily unavailable", "Something went wrong")
CARD_OK = "4242424242424242"
CUSTOMERS = 40
STAFF = 4
GRACE_SECONDS = 10.0  # after a fault ends, still "deliberately down" (pools reconnect, workers restart)
TICK_SECONDS = 60  # production's timer runs `flask acme tick` every minute
# Jobs one booking makes over its life, in trivial-job equivalents: the Checkout Session, its
# sync, the webhook events, the emails, the licence check, the deposit hold and its settling.
JOBS_PER_BOOKING = 12
# ...and no new booking while RQ holds more than this many jobs (queued or running): real jobs
# cost more than trivial ones, and a backlog would only measure the queue, not the app.
BACKLOG_LIMIT = 4


def log(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- services of its own ----------------------------------------------------------------------

def pg_ctl(action: str) -> None:
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, PG_CLUSTER, action,
                    *(["-m", "fast"] if action in ("restart", "stop") else [])],
                   check=True, capture_output=True)


def ensure_cluster() -> None:
    """The soak's own PostgreSQL cluster (trust on loopback: a throwaway test cluster)."""
    listing = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True).stdout
    if not any(line.split()[:2] == [PG_VERSION, PG_CLUSTER] for line in listing.splitlines()):
        log(f"creating PostgreSQL cluster {PG_VERSION}/{PG_CLUSTER} on port {PG_PORT}")
        subprocess.run(["pg_createcluster", PG_VERSION, PG_CLUSTER, "--port", str(PG_PORT), "--",
                        "--auth-host=trust", "--auth-local=peer"], check=True, capture_output=True)
        listing = ""
    if not any(line.split()[:2] == [PG_VERSION, PG_CLUSTER] and "online" in line
               for line in listing.splitlines()):
        pg_ctl("start")
    wait_for_port(PG_PORT, 60)


def wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"nothing listens on port {port}")


class RedisServer:
    """redis-server on its own port and directory, persisted as production's role sets it."""

    def __init__(self, workdir: Path):
        self.dir = workdir / "redis"
        self.dir.mkdir(exist_ok=True)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--daemonize", "no",
             "--maxmemory-policy", "noeviction", "--logfile", str(self.dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for_port(REDIS_PORT, 30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # Redis writes its append-only file and exits
            self.proc.wait(timeout=30)


class FaultProxy:
    """Forwards HTTP to a stand-in; `mode` "slow" answers late (the work is done upstream,
    the client has given up: the case that tests idempotency keys), "500" fails at once."""

    def __init__(self, upstream: str, slow_seconds: float):
        self.upstream = urlsplit(upstream)
        self.mode = "ok"
        self.slow_seconds = slow_seconds
        self.counts: Counter = Counter()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                mode = proxy.mode
                proxy.counts[mode] += 1
                if mode == "500":
                    data = b'{"error": {"type": "api_error", "message": "soak fault"}}'
                    self.send_response(500)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port,
                                                  timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                if mode == "slow":
                    time.sleep(proxy.slow_seconds)
                try:
                    self.send_response(answer.status)
                    for k, v in answer.getheaders():
                        if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out, as it should
                conn.close()

            do_GET = do_POST = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


# --- the virtual users --------------------------------------------------------------------------

@dataclass
class Record:
    at: float
    route: str
    status: int  # 0: no answer (connection error or timeout)
    friendly: bool
    stack_trace: bool
    ended: float = 0.0
    sample: str = ""  # the start of an error answer's body


class Log:
    def __init__(self):
        self.lock = threading.Lock()
        self.records: list[Record] = []
        self.flows: Counter = Counter()

    def add(self, record: Record) -> None:
        with self.lock:
            self.records.append(record)

    def flow(self, name: str) -> None:
        with self.lock:
            self.flows[name] += 1


class Pacer:
    """A shared token bucket: the whole workload's request rate."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate
        self.next = time.monotonic()
        self.lock = threading.Lock()

    def wait(self) -> None:
        with self.lock:
            now = time.monotonic()
            self.next = max(self.next + self.interval, now)
            sleep_for = self.next - now
        if sleep_for > 0:
            time.sleep(sleep_for)


class Budget:
    """A non-blocking token bucket: at most `rate` takes per second (bursts of `burst`)."""

    def __init__(self, rate: float, burst: float = 1.0):
        self.rate, self.burst = rate, burst
        self.tokens, self.at = burst, time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            return False


ROUTE_RE = [(re.compile(p), name) for p, name in (
    (r"^/book/cars/\d+/review", "booking.review"), (r"^/book/cars/\d+/confirm", "booking.confirm"),
    (r"^/book/cars/\d+", "booking.quote"), (r"^/book/hires/[^/]+/cancel", "booking.cancel"),
    (r"^/book/hires/", "booking.hire_detail"), (r"^/book/", "booking.search"),
    (r"^/pay/[^/]+/card/continue", "payments.card_continue"), (r"^/pay/[^/]+/card", "payments.card"),
    (r"^/pay/[^/]+/return", "payments.card_return"), (r"^/pay/[^/]+/status", "payments.status"),
    (r"^/pay/", "payments.start"), (r"^/counter/hires/[^/]+/licence-check", "counter.licence"),
    (r"^/counter/hires/[^/]+/(pickup|return)/(\w[\w-]*)", "counter.step"),
    (r"^/counter/", "counter.hire"), (r"^/$", "main.home"))]


def route_of(path: str) -> str:
    return next((name for pattern, name in ROUTE_RE if pattern.search(path)), path)


class Browser:
    """One person's browser: its session cookie kept by hand (production cookies are Secure,
    and this client speaks http to Gunicorn as Nginx would, with X-Forwarded-Proto)."""

    def __init__(self, base_url: str, session: common.BrowserSession, log_: Log, pacer: Pacer,
                 stop: threading.Event):
        import requests
        self.http = requests.Session()
        self.base = base_url
        self.cookie = session.cookie
        self.csrf = session.csrf
        self.log, self.pacer, self.stop = log_, pacer, stop

    def request(self, method: str, path: str, *, data=None, htmx=False, timeout=30):
        import requests
        if self.stop.is_set():
            raise Stop
        self.pacer.wait()
        headers = {"Cookie": self.cookie, "X-Forwarded-Proto": "https",
                   "Referer": self.base.replace("http:", "https:") + "/"}
        if htmx:
            headers["HX-Request"] = "true"
        if method == "POST":
            headers["X-CSRFToken"] = self.csrf
        began = time.time()
        try:
            response = self.http.request(method, self.base + path, data=data, headers=headers,
                                         timeout=timeout, allow_redirects=False)
        except requests.RequestException as exc:
            self.log.add(Record(began, route_of(urlsplit(path).path), 0, False, False, time.time(),
                                type(exc).__name__))
            return None
        text = response.text
        cookie = response.headers.get("Set-Cookie", "")
        match = re.search(r"(session=[^;]+)", cookie)
        if match:
            self.cookie = match.group(1)
        self.log.add(Record(began, route_of(urlsplit(path).path), response.status_code,
                            any(m in text for m in FRIENDLY_MARKERS), STACK_TRACE in text,
                            time.time(), " ".join(text.split())[:160] if response.status_code >= 500 else ""))
        return response


class Stop(Exception):
    pass


class _Forms(HTMLParser):
    """Every form on a page: action -> [(name, value)] of its inputs."""

    def __init__(self):
        super().__init__()
        self.forms: dict[str, list] = {}
        self._action: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self._action = a.get("hx-post") or a.get("action") or ""
            self.forms.setdefault(self._action, [])
        elif tag in ("input", "textarea", "select") and self._action is not None and a.get("name"):
            if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                return
            self.forms[self._action].append((a["name"], a.get("value") or ""))

    def handle_endtag(self, tag):
        if tag == "form":
            self._action = None


def forms_of(html: str) -> dict[str, list]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


def customer_loop(browser: Browser, world: dict, rng: random.Random, log_: Log) -> None:
    """Search, quote, book, pay; sometimes cancel. Every answer is logged by the browser."""
    while True:
        start = date.today() + timedelta(days=rng.randint(3, 40))
        if start.weekday() == 6:
            start += timedelta(days=1)
        end = start + timedelta(days=rng.choice([1, 2, 3, 4]))
        if end.weekday() == 6:
            end += timedelta(days=1)
        branch = rng.choice(world["branches"])
        trip = {"pickup_branch": branch, "return_branch": branch,
                "pickup_at": f"{start}T10:00", "return_at": f"{end}T10:00"}
        page = browser.request("GET", "/book/?" + urlencode(trip))
        if page is None or page.status_code != 200:
            continue
        cars = re.findall(r'href="(/book/cars/\d+)\?', page.text)
        if not cars:
            continue
        car = rng.choice(cars)
        browser.request("GET", f"{car}?{urlencode(trip)}")
        browser.request("GET", f"{car}?{urlencode({**trip, 'extra_gps': 'y'})}", htmx=True)
        if world["monitor"].latest > BACKLOG_LIMIT or not world["bookings"].take():
            continue  # only looking (bookings run at the rate the workers can carry)
        review = browser.request("GET", f"{car}/review?{urlencode(trip)}")
        if review is None or review.status_code != 200:
            continue
        confirm = next(((a, f) for a, f in forms_of(review.text).items() if a.endswith("/confirm")), None)
        if confirm is None:
            continue
        answer = browser.request("POST", confirm[0], data=confirm[1], htmx=True)
        if answer is None or answer.status_code != 204:
            continue
        log_.flow("held")
        reference = answer.headers.get("HX-Redirect", "").rstrip("/").rsplit("/", 1)[-1]
        if pay(browser, reference, log_):
            if rng.random() < 0.3:
                cancel(browser, reference, log_)
            else:
                world["to_pick_up"].append(reference)


def pay(browser: Browser, reference: str, log_: Log) -> bool:
    import requests
    page = browser.request("GET", f"/pay/{reference}/card")
    if page is None or page.status_code != 200:
        log_.flow(f"pay page {page.status_code if page is not None else 'no answer'}")
        return False
    form = forms_of(page.text).get(f"/pay/{reference}/card")
    if not form:
        log_.flow("pay page without its form")
        return False
    started = browser.request("POST", f"/pay/{reference}/card", data=form, htmx=True)
    if started is None or started.status_code not in (204, 303):
        log_.flow(f"pay start {started.status_code if started is not None else 'no answer'}")
        return False
    checkout = None
    for _ in range(60):  # the job creates the Checkout Session; the page polls
        poll = browser.request("GET", f"/pay/{reference}/card/continue", htmx=True)
        if poll is not None and poll.headers.get("HX-Redirect", "").startswith("http"):
            checkout = poll.headers["HX-Redirect"]
            break
        time.sleep(1)
    if checkout is None:
        log_.flow("checkout never ready")
        return False
    try:  # the customer types the card into Stripe's (the stand-in's) page
        paid = requests.post(checkout, data={"cardnumber": CARD_OK, "exp": "12 / 34", "cvc": "123"},
                             allow_redirects=False, timeout=30)
    except requests.RequestException:
        log_.flow("checkout page unreachable")
        return False
    back = urlsplit(paid.headers.get("Location", ""))
    browser.request("GET", f"{back.path}?{back.query}")
    for _ in range(45):
        status = browser.request("GET", f"/pay/{reference}/status", htmx=True)
        if status is not None and status.status_code == 200 \
                and 'data-stage="confirmed"' in status.text:
            log_.flow("paid and confirmed")
            return True
        time.sleep(1)
    log_.flow("paid, not confirmed in time")
    return False


def cancel(browser: Browser, reference: str, log_: Log) -> None:
    page = browser.request("GET", f"/book/hires/{reference}/cancel")
    if page is None or page.status_code != 200:
        return
    form = next((f for a, f in forms_of(page.text).items() if a.endswith("/cancel")), None)
    if form is None:
        return
    answer = browser.request("POST", f"/book/hires/{reference}/cancel", data=form, htmx=True)
    if answer is not None and answer.status_code in (204, 303):
        log_.flow("cancelled")


def staff_loop(browser: Browser, world: dict, rng: random.Random, log_: Log) -> None:
    """Counter: licence re-check, ID, condition, signature, hand-over; then the return."""
    while True:
        browser.request("GET", "/counter/?branch=all")
        if not world["to_pick_up"]:
            time.sleep(1)
            continue
        reference = world["to_pick_up"].pop(0)
        page = browser.request("GET", f"/counter/hires/{reference}")
        if page is None or page.status_code != 200:
            continue
        browser.request("POST", f"/counter/hires/{reference}/licence-check",
                        data={"csrf_token": browser.csrf, "check_code": "SOAK2026"}, htmx=True)
        for _ in range(45):
            fragment = browser.request("GET", f"/counter/hires/{reference}/licence-check", htmx=True)
            if fragment is not None and "erified" in fragment.text:
                break
            time.sleep(1)
        else:  # the service is down or slow: serve the next customer, come back to this one
            log_.flow("counter: licence not verified yet")
            world["to_pick_up"].append(reference)
            continue
        # Odometer readings only ever grow, car by car: one rising counter serves them all.
        world["odometer"] += 1000
        out = world["odometer"]
        steps = [("pickup/id-check", {"id_matches": "y"}),
                 ("pickup/condition", _condition(out, 8)),
                 ("pickup/signature", {"signature": world["signature"]}),
                 ("pickup/hand-over", {})]
        if not _steps(browser, reference, steps):
            continue
        log_.flow("picked up")
        steps = [("return/condition", _condition(out + rng.randint(50, 500), rng.randint(5, 8))),
                 ("return/settle", {})]
        if _steps(browser, reference, steps):
            log_.flow("returned and settled")


def _steps(browser: Browser, reference: str, steps) -> bool:
    for step, data in steps:
        page = browser.request("GET", f"/counter/hires/{reference}")
        if page is None or page.status_code != 200:
            return False
        url = f"/counter/hires/{reference}/{step}"
        hidden = dict(forms_of(page.text).get(url, []))
        answer = browser.request("POST", url, data={**hidden, **data, "csrf_token": browser.csrf})
        if answer is None or answer.status_code not in (200, 204, 303):
            browser.log.flow(f"counter {step}: {answer.status_code if answer is not None else 'no answer'}")
            return False
    return True


def _condition(odometer: int, fuel: int) -> dict:
    data = {"odometer": str(odometer), "fuel_eighths": str(fuel)}
    for panel in ("front", "rear", "left", "right", "roof", "windscreen", "wheels", "interior"):
        data[f"panel_{panel}"], data[f"note_{panel}"] = "ok", ""
    return data


def _signature() -> str:
    import base64
    import io

    from PIL import Image
    img = Image.new("RGBA", (300, 100), (0, 0, 0, 0))
    for x in range(20, 280):
        img.putpixel((x, 50 + (x % 7)), (0, 0, 0, 255))
    out = io.BytesIO()
    img.save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


# --- faults -------------------------------------------------------------------------------------

@dataclass
class Window:
    name: str
    start: float
    end: float = 0.0


class Faults:
    def __init__(self, stack: common.Stack, workers: "RqWorkers", redis: RedisServer,
                 stripe: FaultProxy, licence: FaultProxy, grace: float):
        self.stack, self.workers, self.redis = stack, workers, redis
        self.stripe, self.licence = stripe, licence
        self.windows: list[Window] = []
        self.grace = grace
        self.notes: list[str] = []

    def _window(self, name: str) -> Window:
        window = Window(name, time.time())
        self.windows.append(window)
        log(f"fault: {name}")
        return window

    def kill_gunicorn_worker(self):
        window = self._window("SIGKILL a Gunicorn worker")
        pids = self.stack.gunicorn_workers()
        if pids:
            os.kill(random.choice(pids), signal.SIGKILL)
        window.end = time.time() + self.grace

    def kill_rq_horse(self, within: float = 20.0):
        """SIGKILL the process running a job (RQ's work horse), while it runs one."""
        window = self._window("SIGKILL an RQ work horse mid-job")
        deadline = time.time() + within
        while time.time() < deadline:
            for worker in self.workers.procs:
                horses = subprocess.run(["pgrep", "-P", str(worker.pid)], capture_output=True,
                                        text=True).stdout.split()
                if horses:
                    os.kill(int(horses[0]), signal.SIGKILL)
                    self.notes.append(f"killed work horse {horses[0]} of worker {worker.pid}")
                    window.end = time.time() + self.grace
                    return
            time.sleep(0.05)
        self.notes.append("no job was running to kill within the window")
        window.end = time.time()

    def restart_postgres(self):
        window = self._window("restart PostgreSQL")
        pg_ctl("restart")
        window.end = time.time() + self.grace

    def stop_redis(self, seconds: float):
        window = self._window(f"stop Redis for {seconds:.0f} s")
        self.redis.stop()
        time.sleep(seconds)
        self.redis.start()
        window.end = time.time() + self.grace

    def integrations(self, mode: str, seconds: float):
        window = self._window(f"Stripe and licence service {mode} for {seconds:.0f} s")
        self.stripe.mode = self.licence.mode = mode
        time.sleep(seconds)
        self.stripe.mode = self.licence.mode = "ok"
        window.end = time.time() + self.grace

    def during(self, record: "Record") -> str | None:
        """The fault a request overlapped (it started before the fault ended and ended after
        the fault began), if any."""
        return next((w.name for w in self.windows
                     if record.at <= (w.end or time.time()) and (record.ended or record.at) >= w.start),
                    None)


class RqWorkers:
    """Two `rq worker --with-scheduler` processes, restarted 2 s after they die (systemd's
    Restart=on-failure in production)."""

    def __init__(self, env: dict, log_path: Path, count: int = 2):
        self.env, self.count = env, count
        self.log = log_path.open("ab")
        self.procs: list[subprocess.Popen] = []
        self.restarts = 0
        self.stopping = threading.Event()

    def start(self):
        self.procs = [common.start_rq_worker(self.env, self.log, "INFO") for _ in range(self.count)]
        threading.Thread(target=self._supervise, daemon=True).start()

    def _supervise(self):
        while not self.stopping.is_set():
            for i, proc in enumerate(self.procs):
                if proc.poll() is not None and not self.stopping.is_set():
                    time.sleep(2)
                    self.procs[i] = common.start_rq_worker(self.env, self.log, "INFO")
                    self.restarts += 1
            time.sleep(0.5)

    def stop(self):
        self.stopping.set()
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.log.close()


class Ticker:
    """Production's timer: `acme tick` every TICK_SECONDS (here in this process, the same
    function the command calls). A tick that fails (a dependency down) is counted; the next
    one runs anyway, as the timer's next minute would."""

    def __init__(self, app, interval: float = TICK_SECONDS):
        self.app, self.interval = app, interval
        self.stop = threading.Event()
        self.runs, self.failures, self.requeued = 0, Counter(), 0
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> "Ticker":
        self.thread.start()
        return self

    def _loop(self):
        while not self.stop.wait(self.interval):
            self.run_once()

    def run_once(self):
        from app.extensions import db
        from app.jobs.booking import tick
        with self.app.app_context():
            try:
                result = tick()
                self.runs += 1
                self.requeued += result.get("requeued", 0)
            except Exception as exc:
                self.failures[type(exc).__name__] += 1
                db.session.rollback()
            finally:
                db.session.remove()

    def close(self):
        self.stop.set()
        self.thread.join(timeout=120)


class QueueMonitor:
    """The RQ backlog (queued + started) every 2 s: its largest value is printed."""

    def __init__(self, redis_url: str):
        from redis import Redis
        self.connection = Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self.largest = self.latest = 0
        self.stop = threading.Event()
        threading.Thread(target=self._loop, daemon=True).start()

    def backlog(self) -> int:
        from rq import Queue
        from rq.registry import StartedJobRegistry
        queue = Queue("acme", connection=self.connection)
        return queue.count + StartedJobRegistry(queue=queue).count

    def _loop(self):
        while not self.stop.wait(2):
            try:
                self.latest = self.backlog()
                self.largest = max(self.largest, self.latest)
            except Exception:
                pass  # Redis deliberately down


def calibrate_jobs(app, redis_url: str, jobs: int = 40, seconds: float = 20) -> float:
    """Trivial jobs (app.ops.ping_job) per second through the RQ workers: `jobs` queued, the
    ones done within `seconds` counted, the rest dropped."""
    import uuid

    from redis import Redis
    from rq import Queue
    from rq.registry import StartedJobRegistry

    from app.jobs import enqueue
    from app.ops import ping_job
    with app.app_context():
        for _ in range(jobs):
            enqueue(ping_job, uuid.uuid4().hex)
    queue = Queue("acme", connection=Redis.from_url(redis_url))
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        if queue.count == 0 and StartedJobRegistry(queue=queue).count == 0:
            break
        time.sleep(0.2)
    elapsed = time.monotonic() - began
    done = jobs - queue.count - StartedJobRegistry(queue=queue).count
    queue.empty()
    while StartedJobRegistry(queue=queue).count:
        time.sleep(0.2)
    rate = max(done, 1) / elapsed
    log(f"job capacity: {done} trivial jobs in {elapsed:.1f} s through the RQ workers, "
        f"{rate:.2f} jobs/s")
    return rate


def schedule(total: float, ci: bool) -> list[tuple[float, str, dict]]:
    """(seconds after start, fault, arguments): spread over the run."""
    integ = 15 if ci else 40
    return [
        (0.08 * total, "kill_gunicorn_worker", {}),
        (0.16 * total, "integrations", {"mode": "slow", "seconds": integ}),
        (0.17 * total, "kill_rq_horse", {"within": integ - 2}),
        (0.36 * total, "restart_postgres", {}),
        (0.48 * total, "stop_redis", {"seconds": 20}),
        (0.70 * total, "integrations", {"mode": "500", "seconds": integ}),
    ]


# --- checks -------------------------------------------------------------------------------------

def business_checks(app, stripe) -> dict[str, list]:
    """Invariants from the database and the Stripe stand-in's own records."""
    from sqlalchemy import select, text

    from app.extensions import db
    from app.models import Payment
    problems: dict[str, list] = defaultdict(list)
    booked = "('confirmed', 'active', 'returned', 'closed')"
    with app.app_context():
        rows = db.session.execute(text(
            f"SELECT h.reference FROM hires h WHERE h.state IN {booked} AND NOT EXISTS "
            "(SELECT 1 FROM payments p WHERE p.hire_id = h.id AND p.kind = 'charge' "
            "AND p.state = 'succeeded')")).all()
        problems["booking confirmed without its payment"] += [r[0] for r in rows]
        rows = db.session.execute(text(
            f"SELECT h.reference, h.state, p.id FROM payments p JOIN hires h ON h.id = p.hire_id "
            f"WHERE p.kind = 'charge' AND p.state = 'succeeded' AND h.state NOT IN {booked} "
            "AND NOT EXISTS (SELECT 1 FROM payments r WHERE r.parent_id = p.id AND r.kind = 'refund' "
            "AND r.state IN ('pending', 'processing', 'succeeded'))")).all()
        problems["payment taken for a booking that is not booked, and not refunded"] += [tuple(r) for r in rows]
        rows = db.session.execute(text(
            "SELECT a.car_id, a.reference, b.reference FROM hires a JOIN hires b ON a.car_id = b.car_id "
            "AND a.id < b.id WHERE a.state IN ('held', 'confirmed', 'active') AND b.state IN "
            "('held', 'confirmed', 'active') AND tstzrange(a.start_at, a.end_at) && "
            "tstzrange(b.start_at, b.end_at)")).all()
        problems["overlapping occupying hires"] += [tuple(r) for r in rows]
        payments = {p.id: p for p in db.session.scalars(select(Payment))}
        db.session.remove()

    intents = [o for o in stripe.objects("payment_intent") if o.get("status") == "succeeded"]
    by_payment = Counter(o.get("metadata", {}).get("payment_id") for o in intents
                         if o.get("metadata", {}).get("payment_id"))
    problems["card charged twice for one payment"] += [p for p, n in by_payment.items() if n > 1]
    refunds = [o for o in stripe.objects("refund") if o.get("status") in ("succeeded", "pending")]
    refunded = Counter()
    for refund in refunds:
        refunded[refund.get("payment_intent")] += refund.get("amount", 0)
    amounts = {o["id"]: o.get("amount_received") or o.get("amount", 0) for o in intents}
    problems["refunded more than charged"] += [pi for pi, total in refunded.items()
                                                 if total > amounts.get(pi, 0)]
    by_key = Counter(o.get("metadata", {}).get("refund_id") or o["id"] for o in refunds)
    problems["refund made twice"] += [k for k, n in by_key.items() if n > 1]
    ours = {p.provider_ref for p in payments.values() if p.provider_ref}
    problems["money taken at Stripe that no payment row knows"] += [
        o["id"] for o in intents if o["id"] not in ours]
    return {k: v for k, v in problems.items()}


def job_checks(app, redis_url: str) -> tuple[dict[str, int], list[str], dict[str, list]]:
    """RQ's registries, and business rows waiting for a job that does not exist."""
    from redis import Redis
    from rq import Queue
    from rq.registry import (DeferredJobRegistry, FailedJobRegistry, ScheduledJobRegistry,
                             StartedJobRegistry)
    from sqlalchemy import text

    from app.extensions import db
    connection = Redis.from_url(redis_url)
    queue = Queue("acme", connection=connection)
    registries = {"queued": queue, "started": StartedJobRegistry(queue=queue),
                  "scheduled (retry pending)": ScheduledJobRegistry(queue=queue),
                  "deferred": DeferredJobRegistry(queue=queue), "failed": FailedJobRegistry(queue=queue)}
    counts, failed, known = {}, [], set()
    for name, registry in registries.items():
        ids = registry.job_ids if name == "queued" else registry.get_job_ids()
        counts[name] = len(ids)
        for job in queue.job_class.fetch_many(ids, connection=connection):
            if job is None:
                continue
            known.add((job.func_name.rsplit(".", 1)[-1], job.args[0] if job.args else None))
            if name == "failed":
                last = (job.exc_info or "").strip().splitlines()[-1:] or ["?"]
                failed.append(f"{job.func_name}{tuple(job.args)}: {last[0][:160]} (retryable: rq requeue)")
    waiting = {
        "payment waiting for its Checkout Session": (
            "SELECT id FROM payments WHERE kind = 'charge' AND method = 'card' AND state = 'pending' "
            "AND checkout_session_id = '' AND details->>'purpose' = 'checkout'",
            {"create_checkout_session"}),
        "refund not yet sent to Stripe": (
            "SELECT id FROM payments WHERE kind = 'refund' AND method = 'card' AND state = 'pending' "
            "AND provider_ref = ''", {"create_refund"}),
        "saved-card charge not sent to Stripe": (
            "SELECT id FROM payments WHERE kind = 'charge' AND method = 'card' AND state = 'pending' "
            "AND provider_ref = '' AND details->>'purpose' = 'saved_card'", {"charge_saved_card"}),
        "deposit hold not sent to Stripe": (
            "SELECT id FROM payments WHERE kind = 'deposit_hold' AND method = 'card' "
            "AND state = 'pending' AND provider_ref = ''", {"authorise_deposit"}),
        "webhook event not processed": (
            "SELECT id FROM stripe_events WHERE state = 'received'", {"process_stripe_event"}),
        "licence check pending": (
            "SELECT id FROM licence_checks WHERE status = 'pending'", {"check_licence"}),
        "email not sent": ("SELECT id FROM outbound_emails WHERE state = 'queued'", {"send_email"}),
    }
    lost: dict[str, list] = {}
    with app.app_context():
        for name, (sql, funcs) in waiting.items():
            try:
                ids = [r[0] for r in db.session.execute(text(sql)).all()]
            except Exception as exc:  # a table or column another issue has not added yet
                db.session.rollback()
                lost[f"{name} (not checked: {type(exc).__name__})"] = []
                continue
            orphans = [i for i in ids if not any((f, i) in known for f in funcs)]
            if orphans:
                lost[name] = orphans
        db.session.remove()
    return counts, failed, lost


# --- the run ------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--ci", action="store_true", help="the 2-minute variant")
    parser.add_argument("--rate", type=float, default=0, help="requests/s (default: 80%% of capacity)")
    parser.add_argument("--users", type=int, default=0)
    options = parser.parse_args()
    total = 120.0 if options.ci else options.minutes * 60
    grace = GRACE_SECONDS
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(f"machine: {common.machine()}")
    workdir = Path(common.tempfile.mkdtemp(prefix="acme-soak-"))

    ensure_cluster()
    common.recreate_database(DB_URL)
    redis = RedisServer(workdir)
    redis.start()
    redis_url = f"redis://127.0.0.1:{REDIS_PORT}/0"

    from devtools.licence_standin import LicenceStandIn
    from devtools.stripe_standin import start as start_stripe
    port = common.free_port()
    stripe = start_stripe(webhook_url=f"http://127.0.0.1:{port}/pay/webhooks/stripe",
                          slow_seconds=0.1)
    licence = LicenceStandIn().start()
    stripe_proxy = FaultProxy(stripe.url, slow_seconds=25)
    licence_proxy = FaultProxy(licence.url, slow_seconds=15)
    env = common.app_env(DB_URL, redis_url, STRIPE_API_BASE=stripe_proxy.url,
                         STRIPE_SECRET_KEY="sk_test_soak", STRIPE_WEBHOOK_SECRET=stripe.webhook_secret,
                         LICENCE_API_URL=licence_proxy.url, LICENCE_API_KEY=licence.api_key,
                         FLASK_MAX_HOLDS_PER_CUSTOMER="1000")
    app = common.build_app(env)
    customer_ids = common.migrate_and_seed(app, customers=CUSTOMERS)
    staff_ids = make_staff(app, STAFF)
    sessions = common.signed_in_sessions(app, customer_ids)
    staff_sessions = common.signed_in_sessions(app, staff_ids)
    with app.app_context():
        from sqlalchemy import select

        from app.extensions import db
        from app.models import Branch
        branches = [b.id for b in db.session.scalars(select(Branch))]
        db.session.remove()

    workers = RqWorkers({**os.environ, **env, "PYTHONPATH": str(common.ROOT)}, workdir / "rq.log")
    exit_code = 1
    try:
        with common.running_stack(env, port=port, rq_worker=False) as stack:
            workers.start()
            worker_class, source = common.rq_worker_class()
            log(f"RQ workers: 2 x {worker_class} ({source})")
            rate = options.rate or calibrate(stack, branches, sessions[0])
            job_rate = calibrate_jobs(app, redis_url)
            booking_rate = 0.8 * job_rate / JOBS_PER_BOOKING
            users = options.users or max(8, min(40, int(rate * 3)))
            log(f"workload: {rate:.1f} requests/s from {users} users for {total:.0f} s, "
                f"{booking_rate * 60:.1f} bookings a minute")
            exit_code = run(stack, app, env, workers, redis, stripe, stripe_proxy, licence_proxy,
                            sessions, staff_sessions, branches, rate, booking_rate, users, total,
                            grace, options)
    finally:
        workers.stop()
        redis.stop()
        stripe.stop()
        licence.stop()
        for proxy in (stripe_proxy, licence_proxy):
            proxy.server.shutdown()
        try:
            pg_ctl("stop")  # its data stays for a look; the next run starts it again
        except subprocess.CalledProcessError:
            pass
        log(f"logs kept in {workdir} and the stack's directory")
    return exit_code


def make_staff(app, count: int) -> list[int]:
    from datetime import datetime, timezone

    import pyotp

    from app.accounts.services import hash_password
    from app.extensions import db
    from app.models import User
    ids = []
    with app.app_context():
        password = hash_password(secrets.token_urlsafe(16))
        for i in range(count):
            user = User(email=f"soak-staff{i}@example.com", full_name=f"Soak Staff {i}",
                        password_hash=password, role="staff", totp_secret=pyotp.random_base32(),
                        totp_enabled_at=datetime.now(timezone.utc))
            db.session.add(user)
            db.session.flush()
            ids.append(user.id)
        db.session.commit()
        db.session.remove()
    return ids


def calibrate(stack: common.Stack, branches: list[int], session: common.BrowserSession) -> float:
    """80% of the search page's saturated throughput: the workload's commonest heavy page
    (its other pages are lighter or as heavy: the quote, review and confirm steps), as the
    workload's signed-in people get it (rendered each time; the public page cache serves only
    visitors who are not signed in)."""
    start = date.today() + timedelta(days=9)
    if start.weekday() == 6:
        start += timedelta(days=1)
    trip = {"pickup_branch": branches[0], "return_branch": branches[0], "pickup_at": f"{start}T10:00",
            "return_at": f"{start + timedelta(days=2)}T10:00"}
    search = common.wrk(f"{stack.base_url}/book/?{urlencode(trip)}", connections=20, seconds=15,
                        headers={"Cookie": session.cookie, "X-Forwarded-Proto": "https"})
    common.drain(stack)
    log(f"capacity: the search page's saturated throughput, {search.rps:.1f} requests/s")
    return max(1.0, 0.8 * search.rps)


def run(stack, app, env, workers, redis, stripe, stripe_proxy, licence_proxy, sessions,
        staff_sessions, branches, rate, booking_rate, users, total, grace, options) -> int:
    log_ = Log()
    pacer = Pacer(rate)
    stop = threading.Event()
    monitor = QueueMonitor(env["REDIS_URL"])
    world = {"branches": branches, "to_pick_up": [], "signature": _signature(), "odometer": 100_000,
             "bookings": Budget(booking_rate, burst=2), "monitor": monitor}
    before = stack.scrape()
    ticker = Ticker(app).start()
    threads = []
    n_staff = max(1, users // 6)
    for i in range(users):
        staff = i < n_staff
        session = staff_sessions[i % len(staff_sessions)] if staff else sessions[i % len(sessions)]
        browser = Browser(stack.base_url, session, log_, pacer, stop)
        loop = staff_loop if staff else customer_loop

        def body(loop=loop, browser=browser, seed=i):
            try:
                loop(browser, world, random.Random(seed), log_)
            except Stop:
                pass
            except Exception:
                log_.flow("virtual user crashed: " + traceback.format_exc().splitlines()[-1][:120])

        thread = threading.Thread(target=body, daemon=True)
        thread.start()
        threads.append(thread)

    faults = Faults(stack, workers, redis, stripe_proxy, licence_proxy, grace)
    began = time.time()
    plan = schedule(total, options.ci)
    fault_threads = []
    for at, name, kwargs in plan:
        delay = began + at - time.time()
        if delay > 0:
            time.sleep(delay)
        t = threading.Thread(target=getattr(faults, name), kwargs=kwargs, daemon=True)
        t.start()
        fault_threads.append(t)
    remaining = began + total - time.time()
    if remaining > 0:
        time.sleep(remaining)
    stop.set()
    for t in threads + fault_threads:
        t.join(timeout=90)
    log("workload stopped; letting the queues drain (the tick goes on)")
    drain_began = time.time()
    drained = drain(app, env["REDIS_URL"], stripe, timeout=300 if options.ci else 900)
    drain_seconds = time.time() - drain_began
    if not drained:
        log(f"queues not drained: workers {rq_workers_state(env['REDIS_URL'])}")
    ticker.close()
    monitor.stop.set()
    after = stack.scrape()
    gunicorn_log = stack.logs["gunicorn"].read_text(errors="replace")

    # --- results
    records = log_.records
    in_fault = [r for r in records if faults.during(r)]
    outside = [r for r in records if not faults.during(r)]
    bad_outside = [r for r in outside if r.status >= 500 or r.status == 0]
    rate_outside = len(bad_outside) / max(1, len(outside))
    traces = [r for r in records if r.stack_trace]
    unfriendly = [r for r in in_fault if r.status >= 500 and not (r.status == 503 and r.friendly)]
    gen_5xx = sum(1 for r in records if r.status >= 500)
    unanswered = sum(1 for r in records if r.status == 0)
    server_5xx = server_5xx_count(before, after)
    business = business_checks(app, stripe)
    counts, failed_jobs, lost = job_checks(app, env["REDIS_URL"])
    job_runs = {outcome: common.metric(after, "acme_job_runs_total", outcome=outcome)
                - common.metric(before, "acme_job_runs_total", outcome=outcome)
                for outcome in ("success", "failure")}

    failures = []
    if rate_outside > POFOD_TARGET:
        failures.append(f"5xx/no answer outside fault windows: {len(bad_outside)} of {len(outside)} "
                        f"({rate_outside:.5f} > {POFOD_TARGET})")
    if traces:
        failures.append(f"{len(traces)} answers showed a stack trace")
    if unfriendly:
        failures.append(f"{len(unfriendly)} 5xx answers during faults were not the friendly 503 "
                        f"page: {dict(Counter((r.route, r.status) for r in unfriendly))}")
    if abs(server_5xx - gen_5xx) > unanswered:
        failures.append(f"/metrics counted {server_5xx:.0f} 5xx, the load generator {gen_5xx} "
                        f"(and {unanswered} unanswered)")
    if not drained:
        failures.append(f"the queues did not drain (or work stayed without its job) within the "
                        f"time allowed: {counts}")
    for name, items in business.items():
        if items:
            failures.append(f"{name}: {items[:10]}")
    if counts.get("queued") or counts.get("started"):
        failures.append(f"jobs not drained: {counts}")
    for name, ids in lost.items():
        if ids:
            failures.append(f"silently lost - {name}: {ids[:10]}")

    by_status = Counter(r.status for r in records)
    print()
    print(common.table([
        ("duration", f"{total:.0f} s at {rate:.1f} req/s target, {users} users"),
        ("requests", f"{len(records)} ({len(records) / total:.1f}/s); by status {dict(sorted(by_status.items()))}"),
        ("flows", dict(log_.flows)),
        ("fault windows (+{:.0f} s grace)".format(grace),
         "; ".join(f"{w.name} {w.start - began:.0f}-{(w.end or w.start) - began:.0f} s" for w in faults.windows)),
        ("fault notes", "; ".join(faults.notes) or "-"),
        ("outside faults: 5xx or no answer", f"{len(bad_outside)} of {len(outside)} ({rate_outside:.5f}; target <= {POFOD_TARGET})"),
        ("during faults: by status", dict(sorted(Counter(r.status for r in in_fault).items()))),
        ("during faults: 5xx not friendly / stack traces anywhere", f"{len(unfriendly)} / {len(traces)}"),
        ("5xx: load generator vs /metrics", f"{gen_5xx} vs {server_5xx:.0f} (generator's routes; "
         f"{unanswered} requests unanswered: a killed worker's, or timed out)"),
        ("bookings budget / held / paid and confirmed", f"{booking_rate * 60:.1f} a minute / "
         f"{log_.flows['held']} / {log_.flows['paid and confirmed']}"),
        ("job runs (/metrics) / largest RQ backlog", f"{job_runs['success']:.0f} succeeded, "
         f"{job_runs['failure']:.0f} failed (retried) / {monitor.largest}"),
        ("scheduler ticks: ran / failed / work queued again",
         f"{ticker.runs} / {dict(ticker.failures) or 0} / {ticker.requeued}"),
        ("RQ after drain", counts),
        ("RQ failed jobs", "; ".join(failed_jobs[:8]) or "none"),
        ("RQ worker restarts / Gunicorn workers booted",
         f"{workers.restarts} / {gunicorn_log.count('Booting worker')}"),
        ("queues drained after the workload", f"{'yes' if drained else 'NO'}, after {drain_seconds:.0f} s"),
        ("business checks", {k: len(v) for k, v in business.items()}),
        ("rows waiting with no job", {k: len(v) for k, v in lost.items()} or "none"),
        ("integration proxies (requests by mode)", f"stripe {dict(stripe_proxy.counts)}, licence {dict(licence_proxy.counts)}"),
    ], ("measure", "value")))
    for r in (unfriendly + [r for r in bad_outside])[:6]:
        print(f"sample: {r.route} {r.status} at {r.at - began:.1f} s: {r.sample}")
    for failure in failures:
        print(f"TARGET MISSED: {failure}")
    print("RESULT:", "FAIL" if failures else "PASS")
    return 1 if failures else 0


def rq_workers_state(redis_url: str) -> list:
    from redis import Redis
    from rq import Worker
    try:
        return [(w.name[:8], w.get_state(), w.get_current_job_id()) for w in
                Worker.all(connection=Redis.from_url(redis_url))]
    except Exception as exc:
        return [f"unreadable: {exc}"]


def drain(app, redis_url: str, stripe, timeout: float) -> bool:
    """Wait until RQ has nothing queued or running, Stripe's webhooks are delivered and no row
    waits without its job (the tick queues those again once they are old enough)."""
    from redis import Redis
    from rq import Queue
    from rq.registry import StartedJobRegistry
    connection = Redis.from_url(redis_url)
    queue = Queue("acme", connection=connection)
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if queue.count == 0 and StartedJobRegistry(queue=queue).count == 0:
                stripe.wait_for_deliveries(timeout=5)
                if queue.count == 0 and StartedJobRegistry(queue=queue).count == 0 \
                        and not any(job_checks(app, redis_url)[2].values()):
                    return True
        except Exception:
            pass
        time.sleep(5)
    return False


def server_5xx_count(before: str, after: str) -> float:
    """5xx answers in /metrics, leaving out the route the load generator never calls (Stripe's
    webhook deliveries come from the stand-in)."""
    name = "flask_http_request_duration_seconds_count"

    def count(text: str) -> float:
        return (common.metric(text, name, status_re="5..")
                - common.metric(text, name, status_re="5..", route="payments.stripe_webhook"))
    return count(after) - count(before)


if __name__ == "__main__":
    sys.exit(main())

"""What every benchmark shares: a database with the demo fleet, the app run as in production
(Gunicorn with the deploy settings, an RQ worker, PostgreSQL, Redis), signed-in customer
sessions, wrk on loopback, and /metrics.

Environment:
    BENCH_DATABASE_URL  PostgreSQL database to (re)create (default: bench_acme on 127.0.0.1:5432)
    BENCH_REDIS_URL     Redis (default redis://127.0.0.1:6379/9)
    BENCH_PORT          Gunicorn's loopback port (default 8009)
"""

from __future__ import annotations

import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PYTHON = sys.executable
DEFAULT_DB = "postgresql://postgres@127.0.0.1:5432/bench_acme"
DEFAULT_REDIS = "redis://127.0.0.1:6379/9"
BARE_PATH = "/__bench/bare"
FLOOR_PATH = "/__floor"  # bench/wsgi_bench.py: the portal's hooks and the user's load, no page
WRK = shutil.which("wrk") or "wrk"


def machine() -> str:
    """One line naming the machine the figures were measured on."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    except (OSError, AttributeError):
        mem_kb = 0
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return (f"{os.cpu_count()} vCPU {cpu}, {mem_kb // 1024 // 1024} GiB RAM, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
            f"load average {load:.1f} at start")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the database --------------------------------------------------------------------------------

def recreate_database(url: str) -> None:
    """Drop and create the benchmark's own database (never anyone else's: the name must
    start with bench_ or soak, or be named in BENCH_OWN_DATABASES, comma-separated, for a
    machine where each person has databases of their own)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    target = make_url(url.replace("postgresql://", "postgresql+psycopg://", 1))
    name = target.database or ""
    own = {n.strip() for n in os.environ.get("BENCH_OWN_DATABASES", "").split(",") if n.strip()}
    if not (name.startswith("bench_") or name.startswith("soak") or name in own):
        raise SystemExit(f"refusing to recreate database {name!r}: not a bench_ database")
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()


def build_app(env: dict):
    """An app for preparing data and sessions, with the stack's settings."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update({k: v for k, v in env.items() if k != "PROMETHEUS_MULTIPROC_DIR"})
    try:
        from app import create_app
        return create_app()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def migrate_and_seed(app, customers: int) -> list[int]:
    """Schema from the real migrations, the demo fleet and prices, `customers` verified
    customers. Returns the customers' ids."""
    from datetime import date

    from flask_migrate import upgrade

    from app.accounts.services import hash_password
    from app.demo import load_demo
    from app.extensions import db
    from app.models import CustomerProfile, LicenceStatus, User

    with app.app_context():
        upgrade(revision="heads")
        load_demo()
        password_hash = hash_password(secrets.token_urlsafe(16))
        ids = []
        for i in range(customers):
            user = User(email=f"bench{i}@example.com", full_name=f"Bench Customer {i}",
                        password_hash=password_hash, role="customer")
            user.profile = CustomerProfile(
                date_of_birth=date(1985, 3, 3), phone="+447911123456", address_line1="1 High St",
                address_line2="", town="London", postcode="SW1A 1AA",
                # DVLA-shaped (surname, birth date, initials, check digits): the licence
                # service stand-in refuses anything else.
                licence_number=f"BENCH803035BC9{i % 100:02d}", licence_expires_on=date(2035, 1, 1),
                licence_status=LicenceStatus.VERIFIED.value, licence_refusal_reason="")
            db.session.add(user)
            db.session.flush()
            ids.append(user.id)
        db.session.commit()
        db.engine.dispose()
        return ids


def customer_ids(app) -> list[int]:
    """The customers of a database filled earlier (--reuse-db)."""
    from sqlalchemy import select

    from app.extensions import db
    from app.models import User
    with app.app_context():
        ids = list(db.session.scalars(select(User.id).where(User.role == "customer")
                                      .order_by(User.id)))
        db_dispose()
    return ids


def db_dispose() -> None:
    """Close this process's connections (inside an app context): the stack's workers need them."""
    from app.extensions import db
    db.session.remove()
    db.engine.dispose()


@dataclass
class BrowserSession:
    """What a signed-in browser sends: its session cookie and the CSRF token of its pages."""

    user_id: int
    cookie: str
    csrf: str


def signed_in_sessions(app, user_ids: list[int]) -> list[BrowserSession]:
    """Sessions exactly as sign-in would leave them, minted with the app's own secret so that
    the benchmark measures booking, not password hashing or the sign-in rate limit.

    Signed in as from 127.0.0.1 with no User-Agent, as wrk asks: Flask-Login's session
    protection keeps a hash of the two in the session, and a client that does not match it
    gets its session marked "not fresh", that is a new cookie on every answer. A browser
    keeps that cookie and stops getting one; wrk sends the same cookie every time, so with a
    mismatched hash every measured request paid for re-signing a session no browser would."""
    from flask import session
    from flask_wtf.csrf import generate_csrf

    from app.accounts import sessions
    from app.extensions import db
    from app.models import User

    out = []
    with app.app_context():
        serializer = app.session_interface.get_signing_serializer(app)
        for uid in user_ids:
            # A fresh app context each: Flask-WTF caches the token in `g`.
            with app.app_context(), app.test_request_context(  # a POST, as signing in is
                    "/account/sign-in", method="POST", base_url="https://127.0.0.1",
                    environ_base={"REMOTE_ADDR": "127.0.0.1"}):
                sessions.begin(db.session.get(User, uid))
                token = generate_csrf()
                cookie = serializer.dumps(dict(session))
            out.append(BrowserSession(uid, f"{app.config['SESSION_COOKIE_NAME']}={cookie}", token))
        db.session.remove()
        db.engine.dispose()
    return out


# --- the running stack ---------------------------------------------------------------------------

@dataclass
class Stack:
    base_url: str
    env: dict
    workdir: Path
    gunicorn: subprocess.Popen
    rq_worker: subprocess.Popen | None
    logs: dict[str, Path] = field(default_factory=dict)

    def scrape(self) -> str:
        import requests
        return requests.get(self.base_url + "/metrics", timeout=30).text

    def gunicorn_workers(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.gunicorn.pid)], capture_output=True,
                             text=True).stdout
        return [int(p) for p in out.split()]


def worker_memory(stack: Stack) -> dict[int, float]:
    """Each Gunicorn worker's resident memory in MB, by pid."""
    sizes = {}
    for pid in stack.gunicorn_workers():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            continue
        kb = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        if kb:
            sizes[pid] = round(int(kb.group(1)) / 1024, 1)
    return sizes


def app_env(database_url: str, redis_url: str, **extra) -> dict:
    """The app's environment, as production sets it (ansible/roles/app defaults)."""
    env = {
        "ACME_ENV": "production", "SECRET_KEY": secrets.token_urlsafe(48),
        "DATABASE_URL": database_url, "REDIS_URL": redis_url, "MAIL_BACKEND": "smtp",
        "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(free_port()),  # nothing listens: mail jobs retry
        "FLASK_LOG_JSON": "true", "FLASK_LOG_LEVEL": "WARNING",
        "UPLOAD_DIR": tempfile.mkdtemp(prefix="acme-bench-uploads-"),
    }
    env.update(extra)
    return env


@contextmanager
def running_stack(env: dict, *, port: int | None = None, rq_worker: bool = True,
                  wsgi_app: str = "bench.wsgi_bench:application", workers: int | None = None,
                  extra_env: dict | None = None) -> Iterator[Stack]:
    """Gunicorn (bench/gunicorn.conf.py: the deploy settings) and an RQ worker, stopped after."""
    # A SIGTERM (timeout, Ctrl-C in a wrapper) still stops Gunicorn and the worker below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="acme-bench-"))
    prom = workdir / "prometheus"
    prom.mkdir()
    port = port or int(os.environ.get("BENCH_PORT", 8009))
    full_env = {**os.environ, **env, **(extra_env or {}), "PROMETHEUS_MULTIPROC_DIR": str(prom),
                "BENCH_BIND": f"127.0.0.1:{port}", "BENCH_WSGI_APP": wsgi_app,
                "PYTHONPATH": str(ROOT)}
    if workers:
        full_env["BENCH_WORKERS"] = str(workers)
    logs = {"gunicorn": workdir / "gunicorn.log", "rq": workdir / "rq.log"}
    g_log = logs["gunicorn"].open("wb")
    gunicorn = subprocess.Popen(
        [PYTHON, "-m", "gunicorn", "--config", str(BENCH / "gunicorn.conf.py")],
        cwd=ROOT, env=full_env, stdout=g_log, stderr=subprocess.STDOUT, start_new_session=True)
    worker = None
    r_log = logs["rq"].open("wb")
    if rq_worker:
        worker = start_rq_worker(full_env, r_log)
    stack = Stack(f"http://127.0.0.1:{port}", full_env, workdir, gunicorn, worker, logs)
    try:
        wait_until_up(stack)
        yield stack
    finally:
        for proc in (gunicorn, worker):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (gunicorn, worker):
            if proc is not None:
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        g_log.close()
        r_log.close()


WORKER_UNIT = ROOT / "ansible" / "roles" / "workers" / "templates" / "acme-worker@.service.j2"


def rq_worker_class() -> tuple[str, str]:
    """(worker class, where it came from): BENCH_RQ_WORKER_CLASS, else the deploy unit's
    `--worker-class`, else RQ's plain forking worker."""
    if os.environ.get("BENCH_RQ_WORKER_CLASS"):
        return os.environ["BENCH_RQ_WORKER_CLASS"], "BENCH_RQ_WORKER_CLASS"
    try:
        match = re.search(r"--worker-class[ =](\S+)", WORKER_UNIT.read_text())
    except OSError:
        match = None
    if match:
        return match.group(1), "the deploy unit (acme-worker@.service.j2)"
    return "rq.Worker", "RQ's default (the deploy unit names none)"


def start_rq_worker(env: dict, log, level: str = "WARNING") -> subprocess.Popen:
    """The production worker command: `rq worker --with-scheduler acme` (a forking worker),
    with the deploy unit's worker class (see `rq_worker_class`)."""
    worker_class, _ = rq_worker_class()
    return subprocess.Popen(
        [PYTHON, "-m", "rq.cli", "worker", "-u", env["REDIS_URL"], "--with-scheduler",
         "--worker-class", worker_class, "--logging_level", level, "acme"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_until_up(stack: Stack, timeout: float = 180) -> None:
    import requests
    deadline = time.monotonic() + timeout
    want = int(stack.env.get("BENCH_WORKERS") or 0)
    while time.monotonic() < deadline:
        if stack.gunicorn.poll() is not None:
            raise SystemExit("gunicorn exited:\n" + stack.logs["gunicorn"].read_text()[-3000:])
        try:
            ok = requests.get(stack.base_url + "/healthz", timeout=5).status_code == 200
        except requests.RequestException:
            ok = False
        if ok and (not want or len(stack.gunicorn_workers()) >= want):
            # Every worker imports the app on its own: give each a request to warm up.
            for _ in range(4 * max(1, len(stack.gunicorn_workers()))):
                try:
                    requests.get(stack.base_url + "/", timeout=30, headers={"Connection": "close"})
                except requests.RequestException:
                    pass
            return
        time.sleep(0.5)
    raise SystemExit("the app did not come up:\n" + stack.logs["gunicorn"].read_text()[-3000:])


def drain(stack: Stack, timeout: float = 180) -> float:
    """Wait until Gunicorn has worked off the requests of a previous run (wrk closes its
    connections at the end, but requests already queued are still served): five bare requests
    in a row answered within 100 ms. Returns the seconds waited."""
    import requests
    began = time.monotonic()
    quick = 0
    while quick < 5 and time.monotonic() - began < timeout:
        t = time.monotonic()
        try:
            requests.get(stack.base_url + BARE_PATH, timeout=30)
            quick = quick + 1 if time.monotonic() - t < 0.1 else 0
        except requests.RequestException:
            quick = 0
        time.sleep(0.2)
    return time.monotonic() - began


# --- wrk -----------------------------------------------------------------------------------------

@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    errors: dict
    statuses: dict
    raw: str

    @property
    def non_2xx_3xx(self) -> int:
        return sum(n for s, n in self.statuses.items() if not 200 <= int(s) < 400)

    @property
    def five_xx(self) -> int:
        return sum(n for s, n in self.statuses.items() if int(s) >= 500)


def wrk(url: str, *, connections: int, seconds: int, threads: int = 2, script: str | None = None,
        script_args: list[str] | None = None, env: dict | None = None,
        timeout_s: int = 30, until=None, poll_seconds: float = 5,
        headers: dict[str, str] | None = None) -> WrkResult:
    """Run wrk against `url` with bench/wrk/report.lua (or `script`, which must include it).

    wrk always runs for its whole duration; with `until` (a function polled every
    `poll_seconds`) it is interrupted (SIGINT: it then reports as usual) once that is true.
    """
    cmd = [WRK, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", f"--timeout={timeout_s}s",
           "-s", str(BENCH / "wrk" / (script or "report.lua")), url]
    for name, value in (headers or {}).items():
        cmd[1:1] = ["-H", f"{name}: {value}"]
    if script_args:
        cmd += ["--", *script_args]
    env = {**os.environ, "BENCH_WRK_DIR": str(BENCH / "wrk"), **(env or {})}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if until is not None:
        deadline = time.monotonic() + seconds
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(poll_seconds)
            if until():
                proc.send_signal(signal.SIGINT)
                break
    try:
        stdout, stderr = proc.communicate(timeout=seconds + 300)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"wrk failed ({proc.returncode}): {stderr}\n{stdout}")
    line = next((ln for ln in stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise SystemExit("wrk printed no report:\n" + stdout + stderr)
    data = json.loads(line[len("WRK_JSON "):])
    return WrkResult(requests=data["requests"], seconds=data["seconds"], rps=data["rps"],
                     p50_ms=data["p50"] / 1000, p95_ms=data["p95"] / 1000, p99_ms=data["p99"] / 1000,
                     max_ms=data["max"] / 1000, errors=data["errors"],
                     statuses={k: v for k, v in data.get("statuses", {}).items()},
                     raw=stdout)


# --- /metrics ------------------------------------------------------------------------------------

SAMPLE_RE = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? ([0-9.eE+-]+|NaN)$")


def metric(text: str, name: str, **labels) -> float:
    """Sum of the samples of `name` whose labels include `labels` (regex values allowed
    with a trailing `~`, e.g. status__="5.."): see `_matches`."""
    total = 0.0
    for line in text.splitlines():
        m = SAMPLE_RE.match(line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if _matches(got, labels):
            total += float(m.group(3))
    return total


def _matches(got: dict, wanted: dict) -> bool:
    for key, value in wanted.items():
        if key.endswith("_re"):
            if not re.fullmatch(value, got.get(key[:-3], "")):
                return False
        elif got.get(key) != value:
            return False
    return True


def table(rows: list[tuple], headers: tuple) -> str:
    """A Markdown table."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    line = lambda r: "| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *map(line, rows)])

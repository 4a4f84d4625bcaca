"""/metrics: what an operator's alarms read (requests, errors, jobs, states) and who may read it."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests

from app.extensions import db
from app.jobs import enqueue, task
from app.models import HireState, Payment
from app.security import allow
from tests import factories
from tests.conftest import TEST_REDIS_URL, AuthActions

ROOT = Path(__file__).resolve().parent.parent
REMOTE = {"REMOTE_ADDR": "203.0.113.7"}  # a documentation address: "somewhere else"
SAMPLE_RE = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? ([0-9.eE+-]+|NaN)$")


def samples(text: str, name: str) -> dict[frozenset, float]:
    """{frozenset of (label, value)}: value for every sample of `name` in a scrape."""
    found = {}
    for line in text.splitlines():
        match = SAMPLE_RE.match(line)
        if match and match.group(1) == name:
            labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
            found[labels] = float(match.group(3))
    return found


def value(text: str, name: str, **labels) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when none)."""
    wanted = set(labels.items())
    return sum(v for k, v in samples(text, name).items() if wanted <= k)


def scrape(client, **kwargs) -> str:
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.status_code
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return response.get_data(as_text=True)


REQUESTS = "flask_http_request_duration_seconds_count"


def test_requests_are_counted_by_route_name_and_status_not_by_raw_path(client):
    for car_id in (101, 202, 303):
        client.get(f"/book/cars/{car_id}")
    client.get("/no/such/page/4711")
    client.get("/")
    text = scrape(client)
    assert value(text, REQUESTS, route="booking.quote") == 3
    assert value(text, REQUESTS, route="main.home", status="200") == 1
    assert value(text, REQUESTS, route="<unmatched>", status="404") == 1
    # Ids and junk from URLs never become label values (unbounded series).
    label_values = re.findall(r'="([^"]*)"', text)
    assert not [v for v in label_values if "101" in v or "4711" in v]
    # Latency buckets exist per route and status.
    assert value(text, "flask_http_request_duration_seconds_bucket", route="main.home",
                 le="+Inf") == 1


def test_requests_refused_before_the_view_are_counted_too(client):
    """CSRF failures and the access guard answer from before_request hooks."""
    client.post("/account/sign-in", data={"email": "a@example.com", "password": "x"})
    client.get("/book/mine")
    text = scrape(client)
    assert value(text, REQUESTS, route="accounts.sign_in", status="400") == 1
    assert value(text, REQUESTS, route="booking.my_bookings", status="302") == 1


def test_server_errors_are_counted_with_status_500(make_app):
    app = make_app()

    @allow("public")
    def explode():
        raise RuntimeError("boom")

    app.add_url_rule("/test-explode", "test_explode", explode)
    client = app.test_client()
    with app.app_context():
        assert client.get("/test-explode").status_code == 500
        text = scrape(client)
    assert value(text, REQUESTS, route="test_explode", status="500") == 1


def test_the_scrape_itself_is_not_counted(client):
    scrape(client)
    text = scrape(client)
    assert value(text, REQUESTS, route="metrics.scrape") == 0


@task
def _metrics_probe_ok(n: int) -> None:
    pass


@task
def _metrics_probe_fails(n: int) -> None:
    raise RuntimeError("the outside world is down")


def test_job_outcomes_are_counted_per_attempt(app, client):
    before = scrape(client)
    enqueue(_metrics_probe_ok, 1)
    enqueue(_metrics_probe_fails, 2)  # retried in-process: every attempt fails
    after = scrape(client)

    def delta(task_name, outcome):
        return (value(after, "acme_job_runs_total", task=task_name, outcome=outcome)
                - value(before, "acme_job_runs_total", task=task_name, outcome=outcome))

    assert delta("_metrics_probe_ok", "success") == 1
    assert delta("_metrics_probe_ok", "failure") == 0
    assert delta("_metrics_probe_fails", "failure") == app.config["JOB_MAX_RETRIES"] + 1
    assert delta("_metrics_probe_fails", "success") == 0


@pytest.mark.postgres
def test_rq_job_outcomes_are_shared_through_redis(make_app, app):
    """A forked RQ work horse counts in Redis, and any web process's scrape shows it."""
    from rq import SimpleWorker

    from app.jobs import queue
    assert TEST_REDIS_URL, "the PostgreSQL pass runs with Redis"
    tag = uuid.uuid4().hex[:8]
    rq_app = make_app(JOBS_MODE="rq", JOBS_QUEUE_NAME=f"test-metrics-{tag}",
                      METRICS_JOB_OUTCOMES_KEY=f"test:metrics:{tag}")
    with rq_app.app_context():
        enqueue(_metrics_probe_ok, 1)
        enqueue(_metrics_probe_ok, 2)
        enqueue(_metrics_probe_fails, 3)  # its retries wait minutes: burst runs one attempt
        q = queue()
        SimpleWorker([q], connection=q.connection).work(burst=True)
        text = scrape(rq_app.test_client())
        q.connection.delete(f"test:metrics:{tag}")
        q.delete(delete_jobs=True)
    assert value(text, "acme_job_runs_total", task="_metrics_probe_ok", outcome="success") == 2
    assert value(text, "acme_job_runs_total", task="_metrics_probe_fails", outcome="failure") == 1
    assert value(text, "acme_redis_up") == 1


def _redis_whose_first_command_times_out(url: str, lose_reply: bool):
    """A real Redis client whose first command times out: before Redis runs it (Redis
    stalled on a loaded host) or after (the reply was lost)."""
    from redis import Redis
    from redis.exceptions import TimeoutError as RedisTimeoutError
    client = Redis.from_url(url)
    real = client.execute_command
    client.calls = 0

    def execute_command(*args, **options):
        client.calls += 1
        if client.calls == 1:
            if lose_reply:
                real(*args, **options)
            raise RedisTimeoutError("Timeout reading from socket")
        return real(*args, **options)

    client.execute_command = execute_command
    return client


@pytest.mark.postgres
@pytest.mark.parametrize("lose_reply", [False, True], ids=["redis-stalled", "reply-lost"])
def test_a_redis_timeout_while_counting_a_job_neither_loses_nor_doubles_it(
        make_app, app, monkeypatch, lose_reply):
    """The count is an outside call like any other: retried, and counted once."""
    import app.metrics as metrics
    tag = uuid.uuid4().hex[:8]
    rq_app = make_app(JOBS_MODE="rq", METRICS_JOB_OUTCOMES_KEY=f"test:metrics:{tag}")
    flaky = _redis_whose_first_command_times_out(TEST_REDIS_URL, lose_reply)
    with rq_app.app_context():
        monkeypatch.setattr(metrics, "_redis", lambda: flaky)
        _metrics_probe_ok(1)  # as an RQ work horse runs it
        monkeypatch.undo()
        text = scrape(rq_app.test_client())
        flaky.delete(f"test:metrics:{tag}")
    flaky.close()
    assert flaky.calls >= 2
    assert value(text, "acme_job_runs_total", task="_metrics_probe_ok", outcome="success") == 1


def test_hires_and_payments_by_state_are_read_at_scrape_time(client):
    car = factories.make_car()
    customer = factories.make_user()
    start = datetime(2030, 6, 1, 9, tzinfo=timezone.utc)
    confirmed = factories.make_hire(car=car, customer=customer, start=start)
    factories.make_hire(car=car, customer=customer, start=start + timedelta(days=10))
    factories.make_hire(car=car, customer=customer, state=HireState.CANCELLED, occupy=False)
    db.session.add(Payment(hire_id=confirmed.id, method="card", kind="charge", state="succeeded",
                           amount_pence=100, idempotency_key="metrics-test-1"))
    db.session.commit()
    text = scrape(client)
    assert value(text, "acme_hires", state="confirmed") == 2
    assert value(text, "acme_hires", state="cancelled") == 1
    assert value(text, "acme_hires", state="active") == 0  # every known state is present
    assert value(text, "acme_payments", state="succeeded") == 1
    assert value(text, "acme_payments", state="failed") == 0
    assert value(text, "acme_database_up") == 1


def test_scrape_still_answers_when_the_database_is_down(make_app):
    down = make_app(SQLALCHEMY_DATABASE_URI="sqlite:////nonexistent-dir/acme.sqlite3")
    with down.app_context():
        text = scrape(down.test_client())
    assert value(text, "acme_database_up") == 0
    assert "acme_hires{" not in text


# --- who may read it -----------------------------------------------------------------------

def _client_as(app, role: str | None):
    client = app.test_client()
    if role:
        AuthActions(client).sign_in_as(role)
    return client


def test_from_elsewhere_strangers_sign_in_and_customers_are_refused(app):
    response = _client_as(app, None).get("/metrics", environ_base=REMOTE)
    assert response.status_code == 302 and "/account/sign-in" in response.headers["Location"]
    assert _client_as(app, "customer").get("/metrics", environ_base=REMOTE).status_code == 403


@pytest.mark.parametrize("role", ["staff", "admin"])
def test_staff_and_admins_may_read_it_from_anywhere(app, role):
    client = _client_as(app, role)
    assert client.get("/metrics", environ_base=REMOTE).status_code == 200


def test_loopback_may_read_it_without_signing_in(client):
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200


@pytest.mark.parametrize("header", ["X-Forwarded-For", "X-Real-IP", "Forwarded"])
def test_a_proxied_request_is_never_local_even_from_a_loopback_proxy(client, header):
    """Nginx on the same host connects from loopback: what it forwards is the internet."""
    response = client.get("/metrics", headers={header: "198.51.100.1"},
                          environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert response.status_code == 302


# --- under Gunicorn: several worker processes, one scrape ----------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker_pids(master: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


@pytest.mark.postgres  # an integration test with real processes: once, in the services pass
def test_gunicorn_workers_are_summed_and_a_killed_workers_requests_still_count(_schema, tmp_path):
    port = _free_port()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"),
           "BENCH_BIND": f"127.0.0.1:{port}", "BENCH_WORKERS": "2", "BENCH_THREADS": "2",
           "BENCH_MAX_REQUESTS": "0", "DATABASE_URL": _schema, "ACME_ENV": "development",
           "FLASK_LICENCE_DEV_STANDIN": "false", "FLASK_STRIPE_DEV_STANDIN": "false",
           "FLASK_DEV_TICK_SECONDS": "0", "REDIS_URL": "", "JOBS_MODE": "sync"}
    (tmp_path / "prom").mkdir()
    (tmp_path / "prom" / "counter_999999.db").write_bytes(b"stale")  # from a previous run
    log = (tmp_path / "gunicorn.log").open("wb")
    master = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", str(ROOT / "bench" / "gunicorn.conf.py")],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # importing the app is slow on a loaded machine
        while True:
            try:
                if requests.get(base + "/healthz", timeout=5).status_code == 200 \
                        and len(_worker_pids(master.pid)) == 2:
                    break
            except requests.RequestException:
                pass
            assert master.poll() is None, (tmp_path / "gunicorn.log").read_text()
            assert time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.2)
        assert not (tmp_path / "prom" / "counter_999999.db").exists()
        # Fresh connections spread over both workers.
        for _ in range(40):
            requests.get(base + "/", headers={"Connection": "close"}, timeout=60)
        first = requests.get(base + "/metrics", timeout=60).text
        assert value(first, REQUESTS, route="main.home", status="200") == 40

        # Kill a worker that served some of them: its samples must outlive it.
        served = {int(p.stem.split("_")[1]) for p in (tmp_path / "prom").glob("histogram_*.db")}
        victim = min(served & _worker_pids(master.pid))
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 120
        while victim in _worker_pids(master.pid) or len(_worker_pids(master.pid)) < 2:
            assert time.monotonic() < deadline, "gunicorn did not replace the killed worker"
            time.sleep(0.1)
        for _ in range(5):
            requests.get(base + "/", headers={"Connection": "close"}, timeout=60)
        after = requests.get(base + "/metrics", timeout=60).text
        assert value(after, REQUESTS, route="main.home", status="200") == 45
        # Summed over processes, the dead one included.
        assert len(list((tmp_path / "prom").glob("histogram_*.db"))) >= 2
    finally:
        master.send_signal(signal.SIGTERM)
        try:
            master.wait(timeout=20)
        except subprocess.TimeoutExpired:
            master.kill()
            master.wait()
        log.close()

"""Prometheus metrics at `/metrics` (prometheus-flask-exporter; multi-process under Gunicorn).

What is measured:
- every request: `flask_http_request_duration_seconds{method, route, status}` (a histogram;
  its `_count` is the request count by route and status) and `flask_http_request_total
  {method, status}`. `route` is the endpoint name (`booking.quote`), never the raw path, so a
  URL full of ids or junk cannot create new series; unmatched URLs are `<unmatched>`.
- public pages answered from the page cache (app/pagecache.py), which Flask never sees:
  `acme_page_cache_total{route, result}`, result `hit` or `stored`.
- job outcomes: `acme_job_runs_total{task, outcome}` with outcome `success` or `failure`,
  one per run attempt (a job that fails, is retried and then succeeds counts one of each).
- state, read at scrape time with one `GROUP BY` each: `acme_hires{state}` and
  `acme_payments{state}`, every known state present (0 when none), plus `acme_database_up`.

Multi-process: when `PROMETHEUS_MULTIPROC_DIR` is set (Gunicorn) every worker writes its
samples there and a scrape sums them. The Gunicorn config must empty the directory when the
master starts and mark dead workers in `child_exit` (bench/gunicorn.conf.py shows both; they
use prometheus_client only, so the master never imports the app and a HUP still loads the new
release). Without it (flask run, tests) each app keeps
its own registry in memory.

Job outcomes in RQ mode are counted in a Redis hash instead: RQ runs each job in a freshly
forked "work horse", so per-process files would pile up one per job, and worker hosts may not
be the web hosts. Redis is what the web and the workers share; a scrape reads the hash.
Redis is an outside call like any other: a timeout, bounded retries, and an idempotency key
(one per counted run, so a retry after a lost reply never counts twice). A Redis that stalls
for a second on a loaded host loses no sample; only an outage longer than the retries does,
and says so in the log.

Who may scrape: staff and admins, or a request that reached Gunicorn directly over loopback
(the Prometheus scraper on the host). In app/security.py terms the route is declared `public`
and the view makes this one narrower check itself (`may_scrape`): the before_request guard
cannot express "or from this machine". A request that came through a proxy (it carries
forwarding headers) never counts as local, even when the proxy itself is on loopback.
"""

from __future__ import annotations

import ipaddress
import os
import time
import uuid
from typing import Iterable

from flask import Blueprint, Flask, Response, abort, current_app, request
from flask_login import current_user
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_flask_exporter import PrometheusMetrics
from sqlalchemy import func, select

from .logging_setup import log
from .ops_metrics import IN_PROCESS_CHAIN, OpsCollector
from .security import allow

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED_ROUTE = "<unmatched>"
JOB_OUTCOMES = ("success", "failure")
# Headers a reverse proxy adds; their presence means the connection is not the client's own.
FORWARDING_HEADERS = ("X-Forwarded-For", "X-Real-IP", "Forwarded")
# Redis calls of the job counts and of the scrape: each try waits at most
# METRICS_REDIS_TIMEOUT_SECONDS (app/config.py), then these pauses between tries.
REDIS_RETRY_PAUSES_SECONDS = (0.2, 0.5)
# How long a counted run's idempotency key is kept: far longer than the retries take.
COUNTED_RUN_KEY_TTL_SECONDS = 600
# Count one run once: the key of this run (KEYS[2]) is set first, and only if it was not.
_COUNT_ONCE_LUA = """
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then
  return redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
end
return 0
"""

bp = Blueprint("metrics", __name__)

# In-process job runs (JOBS_MODE thread/sync, and RQ tasks called inline by a request).
# Module level: one per process, whatever the number of apps built in it.
_job_registry = CollectorRegistry()
JOB_RUNS = Counter("acme_job_runs", "Background job runs by task and outcome",
                   ("task", "outcome"), registry=_job_registry)
# Public pages answered from (hit) or kept in (stored) app/pagecache.py's cache, by route.
_page_cache_registry = CollectorRegistry()
PAGE_CACHE = Counter("acme_page_cache", "Public page cache hits and stores by route",
                     ("route", "result"), registry=_page_cache_registry)


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def route(req) -> str:
    """The label value for a request: its endpoint name (named `route`: the label's name)."""
    return req.url_rule.endpoint if req.url_rule is not None else UNMATCHED_ROUTE


def init_metrics(app: Flask) -> None:
    """Track every request of `app` and serve /metrics."""
    options = dict(path=None, group_by=route, defaults_prefix="flask",
                   excluded_paths=None)
    if multiprocess():
        from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics
        exporter: PrometheusMetrics = GunicornInternalPrometheusMetrics.for_app_factory(**options)
    else:
        # A registry per app: tests build many apps in one process.
        exporter = PrometheusMetrics.for_app_factory(registry=CollectorRegistry(), **options)
    exporter.init_app(app)
    _time_from_the_first_hook(app)
    app.extensions["acme_metrics"] = exporter
    app.register_blueprint(bp)


def _time_from_the_first_hook(app: Flask) -> None:
    """Run the exporter's timer before every other before_request hook.

    It is registered last, and a request refused by an earlier hook (a CSRF failure, the
    access guard) never reaches it; such requests would then miss from the by-route counts.
    """
    hooks = app.before_request_funcs.setdefault(None, [])
    timer = next(h for h in reversed(hooks) if h.__module__ == PrometheusMetrics.__module__)
    hooks.remove(timer)
    hooks.insert(0, timer)


# --- job outcomes -----------------------------------------------------------------------------

def record_job_outcome(task_name: str, outcome: str) -> None:
    """Count one run of a background task. Never raises: metrics must not break a job."""
    try:
        if current_app.config["JOBS_MODE"] == "rq":
            key = current_app.config["METRICS_JOB_OUTCOMES_KEY"]
            run = uuid.uuid4().hex  # the idempotency key of this count, kept over the retries
            _with_retries(lambda client: client.eval(
                _COUNT_ONCE_LUA, 2, key, f"{key}:counted:{run}", f"{task_name}|{outcome}",
                COUNTED_RUN_KEY_TTL_SECONDS))
        else:
            JOB_RUNS.labels(task=task_name, outcome=outcome).inc()
    except Exception as exc:  # Redis down past the retries, no app context...: lose one sample
        log().warning("job outcome not counted", task=task_name, outcome=outcome,
                      error=type(exc).__name__)


def record_chain_scan(head: int, scanned: int) -> None:
    """Note a chain scan that reached the node (app/ops_metrics.py reads it). Never raises.
    An HSET of absolute numbers: a retry after a lost reply writes the same again."""
    numbers = {"head_block": head, "scanned_block": scanned,
               "last_scan_timestamp_seconds": time.time()}
    try:
        if current_app.config["JOBS_MODE"] == "rq":
            key = current_app.config["METRICS_CHAIN_KEY"]
            _with_retries(lambda client: client.hset(key, mapping=numbers))
        else:
            IN_PROCESS_CHAIN.update(numbers)
    except Exception as exc:  # Redis down past the retries: the next scan writes it again
        log().warning("chain scan not recorded", error=type(exc).__name__)


def _with_retries(call):
    """`call(redis_client)` with a timeout per try and bounded retries on connection errors
    and timeouts; the last error is raised."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    client = _redis()
    for pause in (*REDIS_RETRY_PAUSES_SECONDS, None):
        try:
            return call(client)
        except (RedisConnectionError, RedisTimeoutError):
            if pause is None:
                raise
            time.sleep(pause)


_clients: dict = {}


def _redis():
    """One client (one connection pool) per Redis URL and process, not a new connection per
    count; redis-py makes a fresh pool after a fork, as in an RQ work horse."""
    from redis import Redis
    url = current_app.config["REDIS_URL"]
    timeout = current_app.config["METRICS_REDIS_TIMEOUT_SECONDS"]
    client = _clients.get((url, timeout))
    if client is None:
        client = _clients[(url, timeout)] = Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout)
    return client


# --- the scrape ---------------------------------------------------------------------------------

def is_direct_loopback() -> bool:
    """True for a request from this machine that did not come through a proxy."""
    if any(h in request.headers for h in FORWARDING_HEADERS):
        return False
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


def may_scrape() -> bool:
    return is_direct_loopback() or (current_user.is_authenticated
                                    and current_user.role in ("staff", "admin"))


@bp.get("/metrics")
@allow("public")  # narrowed in the view: staff, admins, or direct loopback (see may_scrape)
@PrometheusMetrics.do_not_track()
def scrape():
    """Prometheus text format: request metrics of every worker, job outcomes, hire and
    payment states."""
    if not may_scrape():
        if not current_user.is_authenticated:
            return current_app.login_manager.unauthorized()  # type: ignore[attr-defined]
        abort(403)
    exporter: PrometheusMetrics = current_app.extensions["acme_metrics"]
    # Plain text 0.0.4 whatever the Accept header: the blocks below are appended to it.
    body, _ = exporter.generate_metrics(accept_header=None)  # every worker's files if multi-process
    state = CollectorRegistry()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    state.register(_StateCollector(app))
    state.register(OpsCollector(app, _with_retries))  # the alerts' gauges (issue 21)
    extra = generate_latest(state).decode()
    # Job outcomes come from one place: Redis in RQ mode, else this process (or, under
    # Gunicorn, every worker's files, already in `body`).
    if not multiprocess():
        if current_app.config["JOBS_MODE"] != "rq":
            extra += generate_latest(_job_registry).decode()
        extra += generate_latest(_page_cache_registry).decode()
    response = Response(body + extra, content_type=CONTENT_TYPE_PLAIN_0_0_4)
    response.headers["Cache-Control"] = "no-store"
    return response


class _StateCollector:
    """Hires and payments by state, one GROUP BY each; job outcomes kept in Redis."""

    def __init__(self, app: Flask):
        self.app = app

    def collect(self) -> Iterable:
        from .extensions import db
        from .models import Hire, Payment
        from .models.hires import HIRE_STATE_VALUES
        from .models.payments import PAYMENT_STATES

        up = GaugeMetricFamily("acme_database_up", "1 when the state queries below succeeded")
        try:
            hires = dict(db.session.execute(
                select(Hire.state, func.count()).group_by(Hire.state)).all())
            payments = dict(db.session.execute(
                select(Payment.state, func.count()).group_by(Payment.state)).all())
        except Exception as exc:  # the scrape still reports requests when the database is down
            db.session.rollback()
            log().warning("metrics: state queries failed", error=type(exc).__name__)
            up.add_metric([], 0)
            yield up
        else:
            up.add_metric([], 1)
            yield up
            yield _by_state("acme_hires", "Hires by state", HIRE_STATE_VALUES, hires)
            yield _by_state("acme_payments", "Payments by state", PAYMENT_STATES, payments)
        if self.app.config["JOBS_MODE"] == "rq":
            yield from self._rq_job_outcomes()

    def _rq_job_outcomes(self) -> Iterable:
        redis_up = GaugeMetricFamily("acme_redis_up", "1 when the job outcome counters were read")
        try:
            raw = _with_retries(lambda client: client.hgetall(
                self.app.config["METRICS_JOB_OUTCOMES_KEY"]))
        except Exception as exc:
            log().warning("metrics: job outcomes unreadable", error=type(exc).__name__)
            redis_up.add_metric([], 0)
            yield redis_up
            return
        redis_up.add_metric([], 1)
        yield redis_up
        runs = CounterMetricFamily("acme_job_runs", "Background job runs by task and outcome",
                                   labels=("task", "outcome"))
        for field, value in sorted(raw.items()):
            task_name, _, outcome = field.decode().rpartition("|")
            runs.add_metric([task_name, outcome], float(value))
        yield runs


def _by_state(name: str, doc: str, states: Iterable[str], counts: dict) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=("state",))
    for state in states:
        family.add_metric([state], counts.get(state, 0))
    for state in sorted(set(counts) - set(states)):  # a state the code no longer knows
        family.add_metric([state], counts[state])
    return family

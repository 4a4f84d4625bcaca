"""What the alerts of issue 21 read beside the request and state metrics of app/metrics.py.

Read at scrape time (each bounded: one query or a few Redis calls):
- `acme_payments_oldest_age_seconds{state}`: how long the oldest payment still `pending` or
  `processing` has waited (0 when none): a payment stuck there is money nobody is watching.
- in RQ mode, per queue: `acme_queue_jobs{queue}` (waiting), `acme_queue_oldest_job_age_seconds
  {queue}` (the job at the head of the queue; 0 when empty) and `acme_queue_failed_jobs{queue}`
  (RQ's failed job registry: jobs that used up their retries).
- where a chain is configured, what the chain watcher last saw: `acme_chain_head_block`,
  `acme_chain_scanned_block` and `acme_chain_last_scan_timestamp_seconds` (the end of the
  last scan that reached the node and read the logs up to its head).

The chain scan runs in a worker or the watcher, not in the web process that answers the scrape,
so `metrics.record_chain_scan` keeps its numbers where both see them: a Redis hash in RQ mode
(an HSET of absolute values: a retry after a lost reply writes the same numbers again), else
`IN_PROCESS_CHAIN` here. The Redis calls go through app/metrics.py's `with_retries` (a timeout
per try and bounded retries), handed to the collector.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable, Iterable

from flask import Flask
from prometheus_client.core import GaugeMetricFamily
from rq import Queue
from rq.job import Job
from sqlalchemy import func, select

from .extensions import db
from .logging_setup import log
from .models import Payment

UNSETTLED_PAYMENT_STATES = ("pending", "processing")
CHAIN_FIELDS = ("head_block", "scanned_block", "last_scan_timestamp_seconds")
IN_PROCESS_CHAIN: dict[str, float] = {}  # without RQ: the last scan of this process


def chain_configured(app: Flask) -> bool:
    return bool(app.config.get("CHAIN_RPC_URL") and app.config.get("CHAIN_CONTRACT_ADDRESS"))


class OpsCollector:
    """The gauges above, for one scrape of `app`."""

    def __init__(self, app: Flask, with_retries: Callable, now: datetime | None = None):
        self.app = app
        self.with_retries = with_retries  # with_retries(lambda redis_client: ...)
        self.now = now

    def collect(self) -> Iterable:
        now = self.now or datetime.now(timezone.utc)
        yield from self._payments(now)
        if self.app.config["JOBS_MODE"] == "rq":
            yield from self._queues(now)
        if chain_configured(self.app):
            yield from self._chain()

    def _payments(self, now: datetime) -> Iterable:
        try:
            oldest = dict(db.session.execute(
                select(Payment.state, func.min(Payment.created_at))
                .where(Payment.state.in_(UNSETTLED_PAYMENT_STATES)).group_by(Payment.state)).all())
        except Exception as exc:  # acme_database_up (app/metrics.py) already says so
            db.session.rollback()
            log().warning("metrics: payment ages unreadable", error=type(exc).__name__)
            return
        family = GaugeMetricFamily("acme_payments_oldest_age_seconds",
                                   "Age of the oldest payment in this state (0 when none)",
                                   labels=("state",))
        for state in UNSETTLED_PAYMENT_STATES:
            family.add_metric([state], _age(oldest.get(state), now))
        yield family

    def _queues(self, now: datetime) -> Iterable:
        waiting = GaugeMetricFamily("acme_queue_jobs", "Jobs waiting in the queue", labels=("queue",))
        oldest = GaugeMetricFamily("acme_queue_oldest_job_age_seconds",
                                   "Age of the job at the head of the queue (0 when empty)",
                                   labels=("queue",))
        failed = GaugeMetricFamily("acme_queue_failed_jobs",
                                   "Jobs in RQ's failed job registry (retries used up)",
                                   labels=("queue",))
        cfg = self.app.config
        try:
            for name in (cfg["JOBS_QUEUE_NAME"], cfg["REPORTS_QUEUE_NAME"]):
                def read(client, name=name):
                    queue = Queue(name, connection=client)
                    head = queue.get_job_ids(0, 1)
                    job = Job.fetch(head[0], connection=client) if head else None
                    return queue.count, job.enqueued_at if job else None, queue.failed_job_registry.count
                count, enqueued_at, failures = self.with_retries(read)
                waiting.add_metric([name], count)
                oldest.add_metric([name], _age(enqueued_at, now))
                failed.add_metric([name], failures)
        except Exception as exc:  # acme_redis_up (app/metrics.py) says Redis is unreadable
            log().warning("metrics: queues unreadable", error=type(exc).__name__)
            return
        yield from (waiting, oldest, failed)

    def _chain(self) -> Iterable:
        if self.app.config["JOBS_MODE"] == "rq":
            try:
                raw = self.with_retries(lambda client: client.hgetall(self.app.config["METRICS_CHAIN_KEY"]))
            except Exception as exc:
                log().warning("metrics: chain scan unreadable", error=type(exc).__name__)
                return
            numbers = {k.decode(): float(v) for k, v in raw.items()}
        else:
            numbers = dict(IN_PROCESS_CHAIN)
        docs = {"head_block": "The chain's newest block at the last scan",
                "scanned_block": "The last block whose logs the watcher has read",
                "last_scan_timestamp_seconds": "When the last scan that reached the node ended"}
        for field in CHAIN_FIELDS:
            if field in numbers:  # absent until the first scan that reached the node
                family = GaugeMetricFamily(f"acme_chain_{field}", docs[field])
                family.add_metric([], numbers[field])
                yield family


def _age(since: datetime | None, now: datetime) -> float:
    if since is None:
        return 0.0
    if since.tzinfo is None:  # RQ and SQLite hand back naive UTC
        since = since.replace(tzinfo=timezone.utc)
    return max(0.0, (now - since).total_seconds())

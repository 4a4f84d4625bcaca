"""/metrics: the gauges the alerts of issue 21 read (ansible/roles/monitoring/templates/rules):
payments waiting too long, the queues' backlog, oldest job and failed jobs, the chain watcher."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from rq import Queue, SimpleWorker
from rq.job import Job

from app.extensions import db
from app.jobs import queue
from app.metrics import IN_PROCESS_CHAIN, _redis, record_chain_scan
from app.models import Payment
from tests import factories
from tests.conftest import TEST_REDIS_URL
from tests.test_metrics import samples, scrape, value

CHAIN = {"CHAIN_RPC_URL": "http://127.0.0.1:9", "CHAIN_CONTRACT_ADDRESS": "0x" + "ab" * 20}


def _payment(hire, state: str, age: timedelta) -> None:
    created = datetime.now(timezone.utc) - age
    db.session.add(Payment(hire_id=hire.id, method="card", kind="charge", state=state,
                           amount_pence=100, idempotency_key=f"ops-metrics-{uuid.uuid4().hex}",
                           created_at=created, updated_at=created))


def test_the_oldest_unsettled_payment_is_measured_by_state(client):
    hire = factories.make_hire()
    text = scrape(client)
    assert value(text, "acme_payments_oldest_age_seconds", state="pending") == 0  # none yet
    _payment(hire, "pending", timedelta(hours=2))
    _payment(hire, "pending", timedelta(minutes=5))
    _payment(hire, "processing", timedelta(minutes=30))
    _payment(hire, "succeeded", timedelta(days=3))  # settled: never counts
    db.session.commit()
    text = scrape(client)
    assert 7200 <= value(text, "acme_payments_oldest_age_seconds", state="pending") < 7260
    assert 1800 <= value(text, "acme_payments_oldest_age_seconds", state="processing") < 1860
    assert not samples(text, "acme_payments_oldest_age_seconds").keys() - {
        frozenset({("state", "pending")}), frozenset({("state", "processing")})}


def test_the_chain_watchers_last_scan_is_shown_only_where_a_chain_is_configured(make_app):
    plain = make_app()
    with plain.app_context():
        assert "acme_chain_" not in scrape(plain.test_client())
    watched = make_app(**CHAIN)
    with watched.app_context():
        record_chain_scan(1200, 1188)
        text = scrape(watched.test_client())
    assert value(text, "acme_chain_head_block") == 1200
    assert value(text, "acme_chain_scanned_block") == 1188
    now = datetime.now(timezone.utc).timestamp()
    assert now - 60 < value(text, "acme_chain_last_scan_timestamp_seconds") <= now


def _boom() -> None:  # an RQ job with no retries left: it lands in the failed job registry
    raise RuntimeError("the outside world is down")


@pytest.mark.postgres
def test_queue_backlog_oldest_job_and_failed_jobs_come_from_redis(make_app, app):
    assert TEST_REDIS_URL, "the PostgreSQL pass runs with Redis"
    tag = uuid.uuid4().hex[:8]
    rq_app = make_app(JOBS_MODE="rq", JOBS_QUEUE_NAME=f"test-ops-{tag}",
                      REPORTS_QUEUE_NAME=f"test-ops-reports-{tag}",
                      METRICS_JOB_OUTCOMES_KEY=f"test:metrics:{tag}")
    with rq_app.app_context():
        q = queue()
        try:
            text = scrape(rq_app.test_client())
            assert value(text, "acme_queue_jobs", queue=q.name) == 0
            assert value(text, "acme_queue_oldest_job_age_seconds", queue=q.name) == 0

            q.enqueue(_boom)
            SimpleWorker([q], connection=q.connection).work(burst=True)  # fails, no retry
            waiting = [q.enqueue(_boom) for _ in range(3)]
            # The first one has waited ten minutes (as if no worker had been taking jobs).
            first = Job.fetch(waiting[0].id, connection=q.connection)
            first.enqueued_at = datetime.now(timezone.utc) - timedelta(minutes=10)
            first.save()
            text = scrape(rq_app.test_client())
        finally:
            q.failed_job_registry.cleanup()
            for job_id in q.failed_job_registry.get_job_ids():
                q.failed_job_registry.remove(job_id, delete_job=True)
            q.delete(delete_jobs=True)
            Queue(rq_app.config["REPORTS_QUEUE_NAME"], connection=q.connection).delete()
            q.connection.delete(f"test:metrics:{tag}")
    assert value(text, "acme_queue_jobs", queue=q.name) == 3
    assert 600 <= value(text, "acme_queue_oldest_job_age_seconds", queue=q.name) < 660
    assert value(text, "acme_queue_failed_jobs", queue=q.name) == 1
    assert value(text, "acme_queue_jobs", queue=rq_app.config["REPORTS_QUEUE_NAME"]) == 0


@pytest.mark.postgres
def test_a_scan_recorded_by_a_worker_is_read_by_the_web_through_redis(make_app, app):
    tag = uuid.uuid4().hex[:8]
    rq_app = make_app(JOBS_MODE="rq", METRICS_CHAIN_KEY=f"test:chain:{tag}", **CHAIN)
    with rq_app.app_context():
        record_chain_scan(50, 38)  # as a worker's scan does
        IN_PROCESS_CHAIN.clear()  # the web process has none of its own
        text = scrape(rq_app.test_client())
        _redis().delete(f"test:chain:{tag}")
    assert value(text, "acme_chain_head_block") == 50
    assert value(text, "acme_chain_scanned_block") == 38

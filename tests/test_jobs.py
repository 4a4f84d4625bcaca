"""Background jobs: RQ on Redis when configured, in-process otherwise; bounded retries."""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import select

from app.extensions import db
from app.jobs import enqueue, queue
from app.mail import record_email
from app.models import OutboundEmail
from tests.conftest import TEST_REDIS_URL

CALLS: list[int] = []


def always_fails(n: int) -> None:
    CALLS.append(n)
    raise RuntimeError("outside world unavailable")


def test_sync_mode_sends_once_per_key(app):
    first = record_email(key="t:1", to="a@example.com", subject="Hi", body="Hello")
    again = record_email(key="t:1", to="a@example.com", subject="Hi", body="Hello")
    assert first.id == again.id
    assert db.session.scalars(select(OutboundEmail)).one().state == "sent"


def test_in_process_retries_are_bounded_and_never_reach_the_page(app):
    CALLS.clear()
    enqueue(always_fails, 7)
    assert CALLS == [7] * (app.config["JOB_MAX_RETRIES"] + 1)


def test_thread_mode_runs_off_the_request(make_app, app):
    threaded = make_app(JOBS_MODE="thread")
    with threaded.app_context():
        record_email(key="t:thread", to="b@example.com", subject="Hi", body="Hello")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        db.session.expire_all()
        email = db.session.scalar(select(OutboundEmail).where(OutboundEmail.idempotency_key == "t:thread"))
        if email is not None and email.state == "sent":
            break
        time.sleep(0.05)
    assert email is not None and email.state == "sent"


@pytest.mark.postgres
def test_rq_mode_queues_in_redis_and_a_worker_sends(make_app, app):
    from rq import SimpleWorker
    assert TEST_REDIS_URL, "the PostgreSQL pass runs with Redis"
    rq_app = make_app(JOBS_MODE="rq", JOBS_QUEUE_NAME=f"test-{uuid.uuid4().hex[:8]}")
    with rq_app.app_context():
        email = record_email(key="t:rq", to="c@example.com", subject="Hi", body="Hello")
        assert email.state == "queued"  # nothing happened in the request
        q = queue()
        assert q.count == 1
        SimpleWorker([q], connection=q.connection).work(burst=True)
        db.session.expire_all()
        assert db.session.get(OutboundEmail, email.id).state == "sent"
        # Running the same job again (as an RQ retry would) sends nothing twice.
        from app.jobs.mail import send_email
        send_email(email.id)
        assert db.session.get(OutboundEmail, email.id).attempts == 1
        q.delete(delete_jobs=True)

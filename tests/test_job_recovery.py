"""Work committed while Redis was down is not lost: the page says so, the tick queues it later."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from rq import SimpleWorker
from sqlalchemy import select

from app.extensions import db
from app.jobs import queue
from app.jobs.booking import tick
from app.mail import record_email
from app.models import OutboundEmail, StripeEvent, utcnow
from app.security import allow
from tests.conftest import TEST_REDIS_URL

pytestmark = pytest.mark.postgres  # RQ on a real Redis


@pytest.fixture
def queue_name():
    name = f"test-recovery-{uuid.uuid4().hex[:8]}"
    yield name
    from redis import Redis
    from rq import Queue
    Queue(name, connection=Redis.from_url(TEST_REDIS_URL)).delete(delete_jobs=True)


def _run_jobs() -> int:
    q = queue()
    count = q.count
    SimpleWorker([q], connection=q.connection).work(burst=True)
    return count


def _later(minutes: int = 3) -> str:
    return (utcnow() + timedelta(minutes=minutes)).isoformat()


def test_redis_down_gives_the_friendly_503_and_the_tick_sends_the_email_later(
        make_app, app, queue_name):
    down = make_app(JOBS_MODE="rq", REDIS_URL="redis://127.0.0.1:1/0", JOBS_QUEUE_NAME=queue_name)

    @allow("public")
    def ask_for_email():
        record_email(key="recovery:1", to="a@example.com", subject="Hello", body="Hi")
        return "queued"

    down.add_url_rule("/test-ask-for-email", "ask_for_email", ask_for_email)
    response = down.test_client().get("/test-ask-for-email")
    body = response.get_data(as_text=True)
    assert response.status_code == 503 and "Temporarily unavailable" in body
    assert "Traceback" not in body
    email = db.session.scalar(select(OutboundEmail).where(OutboundEmail.idempotency_key == "recovery:1"))
    assert email.state == "queued"  # committed before the enqueue failed: waiting, no job

    up = make_app(JOBS_MODE="rq", JOBS_QUEUE_NAME=queue_name)
    with up.app_context():
        assert tick()["requeued"] == 0  # too young: its request may still be enqueueing it
        assert tick(_later())["requeued"] == 1
        assert tick(_later())["requeued"] == 0  # its job is queued now: never twice
        assert _run_jobs() == 1
    db.session.expire_all()
    assert db.session.get(OutboundEmail, email.id).state == "sent"


def test_an_event_stored_without_its_job_is_applied_and_one_with_a_job_is_left_alone(
        make_app, app, queue_name):
    now = utcnow()
    lost, fine = (StripeEvent(event_id=f"evt_recovery_{n}", type="checkout.session.completed",
                              created_at=now, received_at=now,
                              payload={"id": f"evt_recovery_{n}", "type": "checkout.session.completed",
                                       "data": {"object": {"id": f"cs_unknown_{n}"}}})
                  for n in (1, 2))
    db.session.add_all([lost, fine])
    db.session.commit()
    up = make_app(JOBS_MODE="rq", JOBS_QUEUE_NAME=queue_name)
    with up.app_context():
        from app.jobs import enqueue
        from app.jobs.payments import process_stripe_event
        enqueue(process_stripe_event, fine.id)  # its request did queue this one
        assert tick(_later())["requeued"] == 1
        assert _run_jobs() == 2
    db.session.expire_all()
    assert db.session.get(StripeEvent, lost.id).processed_at is not None
    assert db.session.get(StripeEvent, fine.id).processed_at is not None

"""A worker killed in the middle of a job (issue 14, section 2): the production worker
(`rq worker --worker-class app.jobs.worker.Worker`) in its own process group on real Redis,
SIGKILLed as systemd's kill would (parent and work horse), then started again."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
import pytest

from app.extensions import db
from app.jobs import queue
from app.models import HireState, Payment, utcnow
from devtools.stripe_standin import start as start_standin
from tests import factories
from tests.conftest import AuthActions, post_form
from tests.rq_process import RQWorker, worker_env
# The promise: the job goes on this soon after the worker is back.
RESUMED_WITHIN_SECONDS = 60
STRIPE_SLOW_SECONDS = 30  # Stripe's answer to the job that gets killed comes this late


@pytest.fixture
def standin():
    server = start_standin(slow_seconds=STRIPE_SLOW_SECONDS)
    yield server
    server.stop()


@pytest.fixture
def rq_setup(make_app, app, _schema, standin, tmp_path):
    name = f"test-killed-{uuid.uuid4().hex[:8]}"
    stripe = {"STRIPE_API_BASE": standin.url, "STRIPE_SECRET_KEY": "sk_test_worker_killed",
              "STRIPE_WEBHOOK_SECRET": standin.webhook_secret}
    rq_app = make_app(JOBS_MODE="rq", JOBS_QUEUE_NAME=name, PAYMENT_START_GIVE_UP_SECONDS=2,
                      **stripe)
    env = worker_env(_schema, name, FLASK_STRIPE_READ_TIMEOUT_SECONDS="120", **stripe)
    worker = RQWorker(env, name, tmp_path / "worker.log")
    try:
        yield rq_app, worker
    finally:
        worker.kill()
        with rq_app.app_context():
            queue().delete(delete_jobs=True)


def _killed_mid_checkout_job(rq_app, worker, standin):
    """A customer starts paying; the worker dies while Stripe is creating the session."""
    client = rq_app.test_client()
    customer = AuthActions(client).sign_in_as("customer")
    hire = factories.make_hire(customer=customer, state=HireState.HELD)
    hire.hold_expires_at = utcnow() + timedelta(minutes=15)
    db.session.commit()
    standin.fail_next("slow", path="/v1/checkout/sessions")
    answer = post_form(client, f"/pay/{hire.reference}/card", {"amount_pence": hire.total_pence})
    assert answer.status_code == 303, answer.get_data(as_text=True)
    worker.start()
    deadline = time.monotonic() + 90
    while not standin.requests("POST", "/v1/checkout/sessions"):
        assert time.monotonic() < deadline, worker.output()
        time.sleep(0.1)
    worker.kill()
    payment = _checkout_payment(hire)
    assert payment.state == "pending" and not payment.checkout_session_id
    return client, hire


def _checkout_payment(hire) -> Payment:
    db.session.expire_all()
    return db.session.scalars(db.select(Payment).where(Payment.hire_id == hire.id)).one()


def _wait_for_checkout(hire, worker, since: float) -> Payment:
    while time.monotonic() - since < RESUMED_WITHIN_SECONDS:
        payment = _checkout_payment(hire)
        if payment.details.get("checkout_url"):
            return payment
        time.sleep(0.25)
    raise AssertionError(f"still {payment.state} {RESUMED_WITHIN_SECONDS} s after the worker "
                         f"came back:\n{worker.output()}")


def _one_session_with_one_key(standin, hire, payment) -> None:
    keys = {r["idempotency_key"] for r in standin.requests("POST", "/v1/checkout/sessions")}
    assert keys == {f"hire:{hire.id}:checkout:1"}
    sessions = standin.objects("checkout.session")
    assert [s["id"] for s in sessions] == [payment.checkout_session_id]


@pytest.mark.postgres
def test_a_payment_job_killed_with_its_worker_goes_on_when_the_worker_is_back(rq_setup, standin):
    rq_app, worker = rq_setup
    with rq_app.app_context():
        _, hire = _killed_mid_checkout_job(rq_app, worker, standin)
        restarted = time.monotonic()
        worker.start()
        payment = _wait_for_checkout(hire, worker, restarted)
        assert payment.state == "processing"
        _one_session_with_one_key(standin, hire, payment)


@pytest.mark.postgres
def test_a_stuck_payment_offers_try_again_which_starts_it_afresh_with_the_same_key(rq_setup, standin):
    rq_app, worker = rq_setup
    with rq_app.app_context():
        client, hire = _killed_mid_checkout_job(rq_app, worker, standin)
        continue_url = f"/pay/{hire.reference}/card/continue"
        page = client.get(continue_url).get_data(as_text=True)
        if "Try again" not in page:  # not yet PAYMENT_START_GIVE_UP_SECONDS (2 s here)
            time.sleep(2.5)
            page = client.get(continue_url).get_data(as_text=True)
        assert "Connecting to secure card payment" not in page
        assert "taking longer than it should. No money has been taken." in page
        # "Try again" leads to the pay page; from there the customer pays by card again.
        assert f'href="/pay/{hire.reference}">Try again' in page
        start_page = client.get(f"/pay/{hire.reference}").get_data(as_text=True)
        assert f'href="/pay/{hire.reference}/card"' in start_page
        again = post_form(client, f"/pay/{hire.reference}/card", {"amount_pence": hire.total_pence})
        assert again.status_code == 303
        restarted = time.monotonic()
        worker.start()
        payment = _wait_for_checkout(hire, worker, restarted)
        hop = client.get(continue_url, headers={"HX-Request": "true"})
        assert hop.headers["HX-Redirect"] == payment.details["checkout_url"]
        _one_session_with_one_key(standin, hire, payment)
        db.session.expire_all()
        assert len(db.session.scalars(db.select(Payment).where(Payment.hire_id == hire.id)).all()) == 1


@pytest.mark.postgres
def test_the_tick_puts_a_dead_workers_job_back_on_the_queue(rq_setup, standin):
    """No worker restarted yet (the host's other worker, say): the minutely tick does it."""
    from app.jobs.booking import tick
    rq_app, worker = rq_setup
    with rq_app.app_context():
        _, hire = _killed_mid_checkout_job(rq_app, worker, standin)
        payment = _checkout_payment(hire)
        assert queue().job_ids == []  # RQ still counts it as started, by a worker now dead
        tick()
        [job] = queue().jobs
        assert (job.func_name, job.args) == ("app.jobs.payments.create_checkout_session", (payment.id,))

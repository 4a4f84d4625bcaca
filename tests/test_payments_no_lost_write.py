"""A payment never gets stuck (issue 14, section 2): writes to a payment or a hire from a
request and from a job never lose each other, nor fail as errors.

The pay step double-submitted 50 times runs through werkzeug's threaded server, with jobs
in-process (the embedded default) and, in the PostgreSQL pass, with the production RQ worker
on Redis; the real `stripe` SDK talks to the Stripe stand-in, whose webhooks come back to the
served portal. The customer's browser is played by `requests`.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from datetime import timedelta

import pytest
import requests
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session
from structlog.testing import capture_logs

from app.extensions import db
from app.jobs import queue
from app.models import Hire, HireState, Payment, utcnow
from devtools.stripe_standin import start as start_standin
from tests import factories
from tests.live_server import make_live_server  # noqa: F401  (a fixture)
from tests.conftest import CSRF_RE
from tests.rq_process import RQWorker, worker_env
from tests.test_payments_card import (CARD_OK, confirmation_count, customer, deliver,  # noqa: F401
                                      emails_to, held_hire, pay, start_card_payment, stripe_app)

BOOKINGS = 50
# How long one booking may take from the double submit to Stripe's page (a slow shared CI box).
REACH_CHECKOUT_SECONDS = 30


@pytest.fixture
def standin():
    server = start_standin()
    yield server
    server.stop()


@pytest.fixture
def served(make_live_server, standin):  # noqa: F811
    server = make_live_server(SQLALCHEMY_ENGINE_OPTIONS=_engine_options(), **_stripe(standin))
    standin.webhook_url = f"{server.url}/pay/webhooks/stripe"
    return server


def _stripe(standin) -> dict:
    return {"STRIPE_API_BASE": standin.url, "STRIPE_SECRET_KEY": "sk_test_double_submit",
            "STRIPE_WEBHOOK_SECRET": standin.webhook_secret}


def _engine_options() -> dict:
    if db.engine.dialect.name == "postgresql":
        return {"pool_size": 10, "max_overflow": 20, "pool_timeout": 60}
    return {"connect_args": {"timeout": 30}}


def _token(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, html[:500]
    return match.group(1) or match.group(2)


def _signed_in(base: str, email: str) -> requests.Session:
    browser = requests.Session()
    page = browser.get(f"{base}/account/sign-in", timeout=30)
    answer = browser.post(f"{base}/account/sign-in", timeout=30, allow_redirects=False,
                          data={"csrf_token": _token(page.text), "email": email,
                                "password": factories.PASSWORD})
    assert answer.status_code == 303, answer.text[:2000]
    return browser


def _double_submit(browser: requests.Session, base: str, hire: Hire) -> list[int]:
    """The confirm step's "Pay" pressed twice: two POSTs of the same form at the same instant."""
    form = browser.get(f"{base}/pay/{hire.reference}/card", timeout=30).text
    data = {"csrf_token": _token(form), "amount_pence": str(hire.total_pence)}
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def submit() -> None:
        barrier.wait(timeout=30)
        statuses.append(browser.post(f"{base}/pay/{hire.reference}/card", data=data,
                                     allow_redirects=False, timeout=60).status_code)

    pair = [threading.Thread(target=submit) for _ in range(2)]
    for thread in pair:
        thread.start()
    for thread in pair:
        thread.join(timeout=90)
    return statuses


def _try_again(browser: requests.Session, base: str, html: str) -> None:
    """Follow the page's "Try again" link and pay by card from there, as the customer would."""
    link = re.search(r'<a class="button" href="([^"]+)">Try again</a>', html)
    assert link, html
    start = browser.get(base + link.group(1), timeout=30).text
    card = re.search(r'href="([^"]*/card)"', start)
    assert card, start
    form = browser.get(base + card.group(1), timeout=30).text
    answer = browser.post(base + card.group(1), allow_redirects=False, timeout=60, data={
        "csrf_token": _token(form), "amount_pence": re.search(
            r'name="amount_pence"[^>]*value="(\d+)"', form).group(1)})
    assert answer.status_code == 303, answer.text[:2000]


def _reach_checkout(browser: requests.Session, base: str, hire: Hire) -> tuple[str, int]:
    """Wait on the continue page (as its htmx poll does) until it sends us to Stripe's page.
    Returns the Checkout URL and how often "Try again" had to be pressed."""
    deadline = time.monotonic() + REACH_CHECKOUT_SECONDS
    tries = 0
    while time.monotonic() < deadline:
        answer = browser.get(f"{base}/pay/{hire.reference}/card/continue", timeout=30,
                             headers={"HX-Request": "true"}, allow_redirects=False)
        if answer.status_code == 204 and answer.headers.get("HX-Redirect"):
            return answer.headers["HX-Redirect"], tries
        assert answer.status_code == 200, answer.text[:2000]
        if ">Try again</a>" in answer.text:
            tries += 1
            assert tries <= 3, f"{hire.reference}: 'Try again' keeps coming back: {answer.text}"
            _try_again(browser, base, answer.text)
        time.sleep(0.2)
    raise AssertionError(f"{hire.reference} never reached Checkout: {answer.text}")


def test_fifty_double_submitted_pay_steps_each_reach_checkout_and_pay_once(app, served, standin):
    """Jobs in-process, off the request (the embedded default)."""
    _fifty_double_submitted_pay_steps(served, standin)


@pytest.mark.postgres  # RQ on a real Redis, the app on PostgreSQL
def test_fifty_double_submitted_pay_steps_with_the_production_worker(
        app, make_live_server, standin, _schema, tmp_path):  # noqa: F811
    name = f"test-double-submit-{uuid.uuid4().hex[:8]}"
    server = make_live_server(JOBS_MODE="rq", JOBS_QUEUE_NAME=name,
                              SQLALCHEMY_ENGINE_OPTIONS=_engine_options(), **_stripe(standin))
    standin.webhook_url = f"{server.url}/pay/webhooks/stripe"
    worker = RQWorker(worker_env(_schema, name, **_stripe(standin)), name, tmp_path / "worker.log")
    worker.start()
    try:
        _fifty_double_submitted_pay_steps(server, standin)
        assert "Traceback" not in worker.output()
    finally:
        worker.kill()
        with server.app.app_context():
            queue().delete(delete_jobs=True)


def _fifty_double_submitted_pay_steps(served, standin) -> None:
    customer = factories.make_user("customer")
    hires = []
    for n in range(BOOKINGS):
        hire = factories.make_hire(customer=customer, state=HireState.HELD,
                                   start=utcnow() + timedelta(days=10 + 4 * n))
        hire.hold_expires_at = utcnow() + timedelta(minutes=15)
        hires.append(hire)
    db.session.commit()
    browser = _signed_in(served.url, customer.email)

    needed_try_again = {}
    for hire in hires:
        assert _double_submit(browser, served.url, hire) == [303, 303]
        url, tries = _reach_checkout(browser, served.url, hire)
        if tries:
            needed_try_again[hire.reference] = tries
        paid = requests.post(url, data={"cardnumber": CARD_OK, "exp": "12 / 34", "cvc": "123"},
                             allow_redirects=False, timeout=30)
        assert paid.status_code == 303, paid.text[:2000]
        assert browser.get(paid.headers["Location"], timeout=30).status_code == 200

    standin.wait_for_deliveries(timeout=60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        db.session.expire_all()
        if all(h.state == HireState.CONFIRMED.value for h in hires):
            break
        time.sleep(0.5)
    db.session.expire_all()
    assert [h.reference for h in hires if h.state != HireState.CONFIRMED.value] == []
    assert needed_try_again == {}, "a double submit must not break the first attempt"
    for hire in hires:
        # Paid exactly once: one Checkout Session, one successful charge, nothing refunded.
        sessions = [s for s in standin.objects("checkout.session")
                    if s["metadata"].get("hire_id") == str(hire.id)]
        intents = [i for i in standin.objects("payment_intent")
                   if i["metadata"].get("hire_id") == str(hire.id) and i["status"] == "succeeded"]
        assert (len(sessions), len(intents)) == (1, 1), hire.reference
        assert intents[0]["amount"] == hire.total_pence
        rows = db.session.scalars(select(Payment).where(Payment.hire_id == hire.id)).all()
        assert [(p.kind, p.state) for p in rows] == [("charge", "succeeded")], hire.reference
    assert standin.objects("refund") == []


# --- a job meeting a request's write to the same hire ---------------------------------------------

class AnotherWriter:
    """While the job confirming a hire is about to write it, another writer (a request saving
    the same hire) updates that row from its own connection and thread, at that instant."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.writes: list[int] = []
        self.threads: list[threading.Thread] = []

    def _write(self, hire_id: int) -> None:
        with self.engine.connect() as conn:
            conn.execute(update(Hire).where(Hire.id == hire_id)
                         .values(version=Hire.version + 1, updated_at=utcnow()))
            conn.commit()
        self.writes.append(hire_id)

    def before_flush(self, session, _context, _instances) -> None:
        confirming = [o for o in session.dirty if isinstance(o, Hire) and o.state == "confirmed"]
        if confirming and not self.threads:
            writer = threading.Thread(target=self._write, args=(confirming[0].id,))
            self.threads.append(writer)
            writer.start()
            # SQLite: it writes at once. PostgreSQL: the job holds the hire's row lock, so
            # it waits for the job's commit; the job goes on meanwhile.
            writer.join(timeout=1)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=30)


@pytest.fixture
def another_writer(app):
    writer = AnotherWriter(db.engine)
    event.listen(Session, "before_flush", writer.before_flush)
    yield writer
    event.remove(Session, "before_flush", writer.before_flush)
    writer.join()


def test_a_job_meeting_a_requests_write_to_its_hire_redoes_its_work_without_an_error(
        stripe_app, client, customer, standin, another_writer):
    hire = held_hire(customer)
    payment = start_card_payment(client, hire)
    assert pay(payment.details["checkout_url"], CARD_OK).status_code == 303
    with capture_logs() as logs:
        for event_ in standin.events():
            assert deliver(client, standin, event_).status_code == 200
        another_writer.join()
    assert another_writer.writes == [hire.id]
    assert [e for e in logs if e["log_level"] in ("error", "critical")] == []
    db.session.expire_all()
    assert hire.state == "confirmed"
    if db.engine.dialect.name == "sqlite":  # no row locks: the job met the write and redid its work
        assert any(e["event"].startswith("write conflict") for e in logs)
    assert confirmation_count(hire) == 1
    assert [e.idempotency_key for e in emails_to(customer)] == [f"hire:{hire.id}:confirmed"]

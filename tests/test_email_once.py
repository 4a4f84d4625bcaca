"""An email goes out at most once per business event, even when the worker dies while the
mail server is taking it, and every copy carries a Message-ID derived from that event
(issue 14, section 2). The mail server is the repo's real SMTP server (tests/smtp_server.py)."""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import select

from app.extensions import db
from app.jobs import queue
from app.jobs.mail import INTERRUPTED
from app.mail import record_email
from app.models import OutboundEmail
from tests.rq_process import RQWorker, worker_env
from tests.smtp_server import SMTPServer

# The server keeps the message, then takes this long to say so: the worker dies meanwhile.
SLOW_ANSWER_SECONDS = 30
RESUMED_WITHIN_SECONDS = 60


def test_every_copy_of_an_email_carries_the_message_id_of_its_business_event(make_app, app):
    server = SMTPServer().start()
    try:
        mail_app = make_app(MAIL_BACKEND="smtp", SMTP_HOST=server.host, SMTP_PORT=server.port)
        with mail_app.app_context():
            email = record_email(key="hire:7:confirmed", to="jane@example.com",
                                subject="Booking confirmed", body="See you soon.")
            from app.integrations.mail import build_message
            again = build_message(email)  # what a retry of the same email would send
        [sent] = server.messages
        assert sent["Message-ID"] == "<hire.7.confirmed@acme-rentals.example>"
        assert again["Message-ID"] == sent["Message-ID"]
    finally:
        server.stop()


@pytest.mark.postgres  # RQ on a real Redis, the app on PostgreSQL
def test_a_worker_killed_while_the_server_takes_the_email_does_not_send_it_twice(
        make_app, app, _schema, tmp_path):
    server = SMTPServer(answer_after_seconds=SLOW_ANSWER_SECONDS).start()
    name = f"test-mail-killed-{uuid.uuid4().hex[:8]}"
    smtp = {"SMTP_HOST": server.host, "SMTP_PORT": str(server.port)}
    rq_app = make_app(JOBS_MODE="rq", JOBS_QUEUE_NAME=name, MAIL_BACKEND="smtp",
                      SMTP_HOST=server.host, SMTP_PORT=server.port)
    worker = RQWorker(worker_env(_schema, name, MAIL_BACKEND="smtp",
                                 FLASK_SMTP_TIMEOUT_SECONDS="120", **smtp),
                      name, tmp_path / "worker.log")
    try:
        with rq_app.app_context():
            email_id = record_email(key="hire:8:confirmed", to="jane@example.com",
                                   subject="Booking confirmed", body="See you soon.").id
        worker.start()
        deadline = time.monotonic() + 90
        while not server.messages:
            assert time.monotonic() < deadline, worker.output()
            time.sleep(0.1)
        worker.kill()  # the server has the message; the worker never heard its "250"

        restarted = time.monotonic()
        worker.start()
        while True:
            db.session.expire_all()
            row = db.session.get(OutboundEmail, email_id)
            if row.state != "queued":
                break
            assert time.monotonic() - restarted < RESUMED_WITHIN_SECONDS, worker.output()
            time.sleep(0.25)
        time.sleep(2)  # room for a second copy, were one on its way
        assert len(server.messages) == 1, [m["Message-ID"] for m in server.messages]
        assert (row.state, row.last_error) == ("failed", INTERRUPTED)
        assert db.session.scalars(select(OutboundEmail.id)).all() == [email_id]
    finally:
        worker.kill()
        server.stop()
        with rq_app.app_context():
            queue().delete(delete_jobs=True)

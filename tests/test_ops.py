"""`flask acme ping-worker`: proof, after a deploy or a reboot, that a worker runs what the app
enqueues. (tests/deploy runs it against the real worker service on a booted Debian host.)"""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import pytest
from redis import Redis
from rq import Queue, SimpleWorker

from .conftest import TEST_REDIS_URL

WAIT_FOR_ENQUEUE_SECONDS = 20


def test_ping_worker_refuses_without_the_queue(runner):
    result = runner.invoke(args=["acme", "ping-worker", "--timeout", "1"])
    assert result.exit_code == 1
    assert "needs the RQ queue" in result.output


def _invoke_in_thread(app, *args: str) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def run():
        outcome["result"] = app.test_cli_runner().invoke(args=["acme", "ping-worker", *args])

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


@pytest.mark.postgres
def test_ping_worker_reports_the_worker_that_ran_the_job(make_app):
    app = make_app(JOBS_MODE="rq")
    connection = Redis.from_url(TEST_REDIS_URL)
    queue = Queue(app.config["JOBS_QUEUE_NAME"], connection=connection)
    queue.empty()
    thread, outcome = _invoke_in_thread(app, "--timeout", "30")
    deadline = time.monotonic() + WAIT_FOR_ENQUEUE_SECONDS
    while queue.count == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert queue.count == 1, "ping-worker enqueued nothing"
    with app.app_context():  # RQ signals need the main thread; the job finds this app
        SimpleWorker([queue], connection=connection).work(burst=True)
    thread.join(timeout=60)

    result = outcome["result"]
    assert result.exit_code == 0, result.output
    answer = json.loads(next(line for line in result.output.splitlines() if line.startswith("{")))
    assert answer["host"] == socket.gethostname()
    assert answer["pid"] == os.getpid()


@pytest.mark.postgres
def test_ping_worker_fails_when_no_worker_answers(make_app):
    app = make_app(JOBS_MODE="rq")
    queue = Queue(app.config["JOBS_QUEUE_NAME"], connection=Redis.from_url(TEST_REDIS_URL))
    try:
        result = app.test_cli_runner().invoke(args=["acme", "ping-worker", "--timeout", "0.5"])
        assert result.exit_code == 1
        assert "No worker processed the ping within 0.5 s" in result.output
    finally:
        queue.empty()

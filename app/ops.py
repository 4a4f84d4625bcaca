"""Operations hooks for admins and the deploy test.

`flask acme ping-worker` enqueues a trivial job through the app's own queue (the same
`enqueue` every feature uses) and waits until a background worker has run it. It proves,
after a deploy or a reboot, that the web side and the worker side share the same Redis and
queue and that a worker is alive: it prints which host, process and release ran the job.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid

import click
from flask import current_app
from flask.cli import with_appcontext

from .config import BASE_DIR
from .queueing import enqueue, redis_connection, task
from .models import utcnow

PING_KEY_PREFIX = "acme:ops:ping:"
PING_RESULT_TTL_SECONDS = 300  # the answer only has to outlive the waiting command
PING_DEFAULT_TIMEOUT_SECONDS = 30.0
PING_POLL_INTERVAL_SECONDS = 0.2


@task
def ping_job(token: str) -> None:
    """Record who processed the ping. Idempotent: running it twice sets the same key."""
    answer = {"host": socket.gethostname(), "pid": os.getpid(), "release": str(BASE_DIR),
              "at": utcnow().isoformat()}
    redis_connection().set(PING_KEY_PREFIX + token, json.dumps(answer),
                           ex=PING_RESULT_TTL_SECONDS)


@click.command("ping-worker")
@click.option("--timeout", type=float, default=PING_DEFAULT_TIMEOUT_SECONDS, show_default=True,
              help="Seconds to wait for a worker to run the job.")
@with_appcontext
def ping_worker(timeout: float) -> None:
    """Enqueue a trivial job and wait until a worker has processed it (exit 1 if none does)."""
    if current_app.config["JOBS_MODE"] != "rq":
        raise click.ClickException("ping-worker needs the RQ queue: set REDIS_URL.")
    token = uuid.uuid4().hex
    enqueue(ping_job, token, job_id=f"ops-ping-{token}")
    connection = redis_connection()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = connection.get(PING_KEY_PREFIX + token)
        if answer is not None:
            click.echo(answer.decode())
            return
        time.sleep(PING_POLL_INTERVAL_SECONDS)
    raise click.ClickException(f"No worker processed the ping within {timeout:g} s "
                               f"(queue {current_app.config['JOBS_QUEUE_NAME']!r}).")

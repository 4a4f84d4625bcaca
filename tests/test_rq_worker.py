"""The production worker (`rq worker --worker-class app.jobs.worker.Worker`) runs jobs in
forked horses from an app built once, each horse with database connections of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from app.extensions import db
from app.jobs import queue
from app.mail import record_email
from app.models import OutboundEmail
from tests.conftest import TEST_REDIS_URL

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.postgres  # RQ on a real Redis, the app on PostgreSQL
def test_the_preloading_worker_runs_every_job_in_its_own_horse(make_app, app, _schema):
    name = f"test-worker-{uuid.uuid4().hex[:8]}"
    rq_app = make_app(JOBS_MODE="rq", JOBS_QUEUE_NAME=name)
    with rq_app.app_context():
        ids = [record_email(key=f"worker:{n}", to=f"w{n}@example.com", subject="Hi",
                           body="Hello").id for n in range(3)]
        q = queue()
        assert q.count == 3
    env = {**os.environ, "DATABASE_URL": _schema, "REDIS_URL": TEST_REDIS_URL,
           "ACME_ENV": "development", "MAIL_BACKEND": "outbox", "FLASK_DEV_TICK_SECONDS": "0",
           "FLASK_JOBS_QUEUE_NAME": name, "PYTHONPATH": str(ROOT)}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "rq.cli", "worker", "--burst", "--worker-class",
             "app.jobs.worker.Worker", "-u", TEST_REDIS_URL, name],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr[-3000:]
        db.session.expire_all()
        states = db.session.scalars(select(OutboundEmail.state).where(
            OutboundEmail.id.in_(ids))).all()
        assert states == ["sent"] * 3, done.stderr[-3000:]
        assert "Traceback" not in done.stderr
    finally:
        with rq_app.app_context():
            queue().delete(delete_jobs=True)

"""The production RQ worker as a process of its own, for tests that kill it.

`RQWorker(env, queue_name, log_path)` runs `rq worker --worker-class app.jobs.worker.Worker`
as the systemd unit does; `.kill()` SIGKILLs it together with its work horse.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import TEST_REDIS_URL

ROOT = Path(__file__).resolve().parent.parent


def worker_env(database_url: str, queue_name: str, **settings: str) -> dict:
    """The environment of a worker on the test database and Redis; `settings` add or override."""
    return {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": TEST_REDIS_URL,
            "ACME_ENV": "development", "MAIL_BACKEND": "outbox", "FLASK_DEV_TICK_SECONDS": "0",
            "FLASK_JOBS_QUEUE_NAME": queue_name, "PYTHONPATH": str(ROOT), **settings}


class RQWorker:
    """`rq worker` as the systemd unit runs it, in a process group of its own."""

    def __init__(self, env: dict, queue_name: str, log_path: Path) -> None:
        self.env, self.queue_name, self.log_path = env, queue_name, log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = self.log_path.open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rq.cli", "worker", "--worker-class", "app.jobs.worker.Worker",
             "-u", TEST_REDIS_URL, self.queue_name],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def kill(self) -> None:
        """SIGKILL the worker and its work horse at once, as systemd kills the unit's cgroup
        (the horse runs in a session of its own: killing the worker's group would miss it)."""
        if self.process is None or self.process.poll() is not None:
            return
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        os.killpg(pid, signal.SIGKILL)
        for child in children:
            try:
                os.kill(int(child), signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=30)

    def output(self) -> str:
        return self.log_path.read_text()[-4000:]

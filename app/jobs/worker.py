"""The RQ worker the workers run: `rq worker --worker-class app.jobs.worker.Worker acme
acme-reports` (customer-facing jobs first; report refreshes only when there are none).

RQ forks a fresh "work horse" for every job. With RQ's plain worker the horse then imports
the app and builds it (`worker_app()`) before it can start: about 2 s of CPU per job on a
small host, far more than most jobs' own work (on the benchmark machine two plain workers ran
0.4 trivial jobs a second, two of these 22: bench/README.md). This worker imports the tasks
and builds the app once, in the parent, so every horse starts with them.

The parent holds no database connection across a fork (the engine's pool is emptied after
the app is built; horses open their own). A new release needs the workers restarted, which
the deploy does (ansible/roles/app/tasks/switch.yml restarts acme-workers.target).
"""

from __future__ import annotations

import importlib

from rq.worker import Worker as RQWorker

# Every module that defines tasks (@task): imported before forking.
TASK_MODULES = ("app.jobs.booking", "app.jobs.chain", "app.licence.jobs", "app.jobs.mail",
                "app.jobs.payments", "app.admin.reports", "app.ops")


def preload() -> None:
    """Import the tasks and build the worker's app; leave no database connection open."""
    for name in TASK_MODULES:
        importlib.import_module(name)
    from ..extensions import db
    from ..queueing import worker_app
    app = worker_app()
    with app.app_context():
        db.engine.dispose()


class Worker(RQWorker):
    def work(self, *args, **kwargs):
        preload()
        self.requeue_abandoned()
        return super().work(*args, **kwargs)

    def requeue_abandoned(self) -> None:
        """A worker restarted after being killed mid-job (systemd restarts it at once): its
        job goes back on the queue now, not when RQ's heartbeat and scheduler get to it."""
        from ..queueing import worker_app
        from .recovery import requeue_abandoned
        with worker_app().app_context():
            for q in self.queues:
                requeue_abandoned(q)

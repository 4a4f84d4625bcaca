"""The background jobs: each module is the tasks of one area, and calls that area's services.

`booking` (the scheduler's tick: holds, no-shows, reminders, deposits, settled returns),
`payments` (Stripe: checkout, webhooks, refunds, deposit holds), `chain` (crypto: scanning and
refunds), `licence` (the old name of app/licence/jobs.py's task, for jobs queued before it
moved), `mail` (sending an email), `recovery` (putting
back jobs whose worker died), `worker` (the RQ worker's own class).

Dependencies run one way: jobs -> services -> `app.queueing`. A service enqueues a job by its
dotted path (`enqueue("app.jobs.payments.create_refund", id)`) and never imports this package;
those paths are stored in Redis with queued jobs, so they stay as they are.

The queue itself (`enqueue`, `task`, `queue`, ...) is `app.queueing`; the names below keep
`from app.jobs import enqueue` working for code written before it moved there.
"""

from ..queueing import (  # noqa: F401  (re-exported)
    Task,
    enqueue,
    enqueue_or_leave_for_recovery,
    queue,
    queue_names,
    redis_connection,
    resolve,
    task,
    task_name,
    worker_app,
)

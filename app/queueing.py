"""The job queue: how any part of the app puts work in the background.

Every call to the outside world runs in a job, never in a request. The jobs themselves live
in `app/jobs/` (and `app/admin/reports/`, `app/ops.py`); this module only runs them.

`enqueue(task, *args, job_id=...)` puts a task on the RQ queue when REDIS_URL is set; on
the embedded default it runs the task in-process: on a small thread pool ("thread") so
pages still never wait, or inline ("sync", for deterministic tests). Tasks take ids, build
their own app context when they need one, and are idempotent, so running one twice is safe.
Callers enqueue only after committing what the task will read.

A service names its task by its dotted path (`enqueue("app.jobs.payments.create_refund", id)`),
so services never import the jobs that call them back: dependencies run one way, jobs ->
services -> this module (services import `app.queueing`, never `app.jobs`). RQ stores that same path for a task given as a function, so both forms make the
same job, and the paths of jobs already queued keep working.
"""

from __future__ import annotations

import functools
import importlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Union

from flask import Flask, current_app, has_app_context
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .conflicts import retry_on_conflict
from .extensions import db
from .logging_setup import log
from .metrics import record_job_outcome

_executor: ThreadPoolExecutor | None = None
_worker_app: Flask | None = None
IN_PROCESS_THREADS = 2


def task(fn: Callable) -> Callable:
    """Make `fn` runnable from a worker: give it an app context if it has none.

    A task meeting a request's write to the same hire or payment (StaleDataError) is run
    again at once on a fresh read: an expected conflict, not a failure (tasks are idempotent).
    """
    run = retry_on_conflict(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if has_app_context():
            return _counted(run, args, kwargs)
        with worker_app().app_context():
            return _counted(run, args, kwargs)

    return wrapper


def _counted(fn: Callable, args: tuple, kwargs: dict) -> Any:
    """Run one attempt of a task and count its outcome for /metrics (app/metrics.py)."""
    try:
        result = fn(*args, **kwargs)
    except BaseException:  # a timeout or a warm shutdown ends the attempt too: a failure
        record_job_outcome(fn.__name__, "failure")
        raise
    record_job_outcome(fn.__name__, "success")
    return result


def worker_app() -> Flask:
    global _worker_app
    if _worker_app is None:
        from . import create_app  # the factory imports every area, and so this module: import it late
        _worker_app = create_app()
    return _worker_app


def redis_connection():
    from redis import Redis
    return Redis.from_url(current_app.config["REDIS_URL"], socket_timeout=5,
                          socket_connect_timeout=5)


def queue(name: str | None = None):
    """An RQ queue: the customer-facing one (JOBS_QUEUE_NAME) unless `name` says otherwise."""
    from rq import Queue
    return Queue(name or current_app.config["JOBS_QUEUE_NAME"], connection=redis_connection(),
                 default_timeout=current_app.config["JOB_TIMEOUT_SECONDS"])


def queue_names() -> list[str]:
    """Every queue the workers take jobs from, customer-facing first: a worker takes a job
    from a later queue only when the earlier ones are empty (the workers' command lists
    them in this order: ansible/roles/workers/defaults/main.yml)."""
    cfg = current_app.config
    return [cfg["JOBS_QUEUE_NAME"], cfg["REPORTS_QUEUE_NAME"]]


Task = Union[Callable, str]  # a task, or its dotted path ("app.jobs.payments.create_refund")


def resolve(fn: Task) -> Callable:
    """The task a dotted path names (a callable is returned as it is)."""
    if callable(fn):
        return fn
    module, _, name = fn.rpartition(".")
    return getattr(importlib.import_module(module), name)


def task_name(fn: Task) -> str:
    return fn.rpartition(".")[2] if isinstance(fn, str) else fn.__name__


def enqueue(fn: Task, *args: Any, job_id: str | None = None, queue_name: str | None = None,
            timeout: int | None = None) -> None:
    """Run `fn(*args)` in the background: on RQ's queue `queue_name` (the customer-facing
    one by default) with at most `timeout` seconds an attempt (JOB_TIMEOUT_SECONDS by
    default), or in-process on the embedded default. `fn` is the task or its dotted path."""
    mode = current_app.config["JOBS_MODE"]
    if mode != "rq":
        fn = resolve(fn)
    if mode == "rq":
        from rq import Retry
        queue(queue_name).enqueue(
            fn, *args, job_id=job_id, job_timeout=timeout,
            retry=Retry(max=current_app.config["JOB_MAX_RETRIES"],
                        interval=current_app.config["JOB_RETRY_INTERVALS_SECONDS"]),
        )
    elif mode == "sync":
        _run_in_process(fn, args, job_id)
    elif mode == "thread":
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        _pool().submit(_run_with_app, app, fn, args, job_id)
    else:
        raise RuntimeError(f"unknown JOBS_MODE {mode!r}")


def enqueue_or_leave_for_recovery(fn: Task, *args: Any, job_id: str | None = None) -> bool:
    """Enqueue the task for a row already committed; False if the queue was unreachable.

    The row then waits, and the scheduler's tick queues its task once Redis answers again
    (app/jobs/recovery.py). For a page whose work is saved and whose answer would otherwise
    be a 503 for something that did happen (a new account's licence check)."""
    try:
        enqueue(fn, *args, job_id=job_id)
    except (RedisConnectionError, RedisTimeoutError) as exc:
        log().warning("queue unreachable: the tick will queue the job", task=task_name(fn),
                      job_id=job_id, error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return False
    return True


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=IN_PROCESS_THREADS, thread_name_prefix="job")
    return _executor


def _run_with_app(app: Flask, fn: Callable, args: tuple, job_id: str | None) -> None:
    with app.app_context():
        _run_in_process(fn, args, job_id)


def _run_in_process(fn: Callable, args: tuple, job_id: str | None) -> None:
    """Run with the same bounded retries RQ would give, minus the waiting."""
    attempts = current_app.config["JOB_MAX_RETRIES"] + 1
    for attempt in range(1, attempts + 1):
        try:
            fn(*args)
            return
        except Exception:
            db.session.rollback()
            log().exception("job failed", job=getattr(fn, "__name__", str(fn)), job_id=job_id,
                            attempt=attempt, of=attempts)

"""Committed work whose job never reached the queue, queued again by the scheduler's tick.

A request commits what a job will do, then enqueues the job (jobs read committed rows). When
Redis is down at that moment (the person gets the friendly 503), or the process dies between
the two, the row waits for a job that does not exist and nothing would ever move it: a refund
never sent, a webhook event never applied. `requeue_orphans` (run by `tick`, every minute)
finds the rows that have waited longer than JOB_RECOVERY_AFTER_SECONDS for which RQ holds no
job (queued, scheduled for a retry, started, deferred, or failed: a failed job is visible and
is retried by hand, not here) and enqueues their task again. Every task re-reads its row and
does nothing when the work is done, and the outside calls carry fixed idempotency keys, so a
job that turns up meanwhile costs one extra, harmless run.

A job whose worker died mid-run (SIGKILL, out of memory, a host reboot) is still "started"
for RQ, which gives it up only when its heartbeat lapses and then retries it through the
scheduler: many minutes while a customer waits. `requeue_abandoned` puts such jobs back on
their queue at once when their worker is known to be dead; the worker runs it as it starts
(app/jobs/worker.py) and the tick runs it every minute.

In-process modes (thread, sync) have no queue to lose a job in: nothing to do there.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta
from typing import Callable

from flask import current_app
from sqlalchemy import select

from ..extensions import db
from ..logging_setup import log


def waiting_rows(now: datetime) -> dict[str, tuple[Callable, list[int]]]:
    """{what: (task, ids)} of the rows that have waited for their task since before
    JOB_RECOVERY_AFTER_SECONDS ago, whether or not a job exists for them."""
    from ..models import DataExport, LicenceCheck, OutboundEmail, Payment, StripeEvent
    from ..models.licence import LicenceCheckStatus
    from ..payments import CARD, CHECKOUT, EXTENSION, SAVED_CARD
    from ..licence import jobs as licence
    from . import mail, payments, privacy

    before = now - timedelta(seconds=current_app.config["JOB_RECOVERY_AFTER_SECONDS"])
    pending_card = db.session.scalars(select(Payment).where(
        Payment.method == CARD, Payment.state == "pending", Payment.created_at <= before,
        Payment.kind.in_(("charge", "refund", "deposit_hold"))).order_by(Payment.id)).all()

    def purpose(p: Payment) -> str:
        return (p.details or {}).get("purpose", "")

    found = {
        "card payment waiting for its Checkout Session": (payments.create_checkout_session, [
            p.id for p in pending_card if p.kind == "charge" and purpose(p) == CHECKOUT
            and not p.checkout_session_id]),
        "saved-card charge not sent to Stripe": (payments.charge_saved_card, [
            p.id for p in pending_card if p.kind == "charge" and purpose(p) in (SAVED_CARD, EXTENSION)
            and not p.provider_ref]),
        "card refund not sent to Stripe": (payments.create_refund, [
            p.id for p in pending_card if p.kind == "refund" and not p.provider_ref]),
        "deposit hold not sent to Stripe": (payments.authorise_deposit, [
            p.id for p in pending_card if p.kind == "deposit_hold" and not p.provider_ref]),
        "Stripe event not applied": (payments.process_stripe_event, list(db.session.scalars(
            select(StripeEvent.id).where(StripeEvent.processed_at.is_(None),
                                         StripeEvent.received_at <= before)
            .order_by(StripeEvent.id)))),
        "licence check not asked": (licence.check_licence, list(db.session.scalars(
            select(LicenceCheck.id).where(LicenceCheck.status == LicenceCheckStatus.PENDING.value,
                                          LicenceCheck.requested_at <= before)
            .order_by(LicenceCheck.id)))),
        "data export not built": (privacy.build_data_export, list(db.session.scalars(
            select(DataExport.id).where(DataExport.state == "pending", DataExport.requested_at <= before)
            .order_by(DataExport.id)))),
        "email not sent": (mail.send_email, list(db.session.scalars(
            select(OutboundEmail.id).where(OutboundEmail.state == "queued",
                                           OutboundEmail.created_at <= before)
            .order_by(OutboundEmail.id)))),
    }
    db.session.rollback()  # read only; hold no transaction open over the Redis calls
    return found


def jobs_in_rq() -> set[tuple[str, object]]:
    """(task name, first argument) of every job RQ holds for our queue, in any live or
    failed state."""
    from rq.registry import (DeferredJobRegistry, FailedJobRegistry, ScheduledJobRegistry,
                             StartedJobRegistry)

    from ..queueing import queue
    q = queue()
    ids = set(q.job_ids)
    for registry in (ScheduledJobRegistry, StartedJobRegistry, DeferredJobRegistry,
                     FailedJobRegistry):
        ids.update(registry(queue=q).get_job_ids())
    held = set()
    for job in q.job_class.fetch_many(sorted(ids), connection=q.connection):
        if job is not None:
            held.add((job.func_name.rsplit(".", 1)[-1], job.args[0] if job.args else None))
    return held


def orphans(now: datetime) -> dict[str, tuple[Callable, list[int]]]:
    """The waiting rows for which RQ holds no job: {what: (task, ids)}, empty ones left out."""
    if current_app.config["JOBS_MODE"] != "rq":
        return {}
    held = jobs_in_rq()
    out = {}
    for what, (task_fn, ids) in waiting_rows(now).items():
        lost = [i for i in ids if (task_fn.__name__, i) not in held]
        if lost:
            out[what] = (task_fn, lost)
    return out


def requeue_orphans(now: datetime) -> dict[str, list[int]]:
    """Enqueue the task of every orphaned row again. Returns {what: ids} of those queued."""
    from ..queueing import enqueue, queue, queue_names
    from ..licence import jobs as licence
    from . import mail
    if current_app.config["JOBS_MODE"] == "rq":
        for name in queue_names():
            requeue_abandoned(queue(name))
    # Tasks whose jobs have fixed ids: the same id their first enqueue used.
    job_ids = {mail.send_email: mail.JOB_ID, licence.check_licence: licence.JOB_ID}
    queued: dict[str, list[int]] = {}
    for what, (task_fn, ids) in orphans(now).items():
        job_id = job_ids.get(task_fn)
        for row_id in ids:
            enqueue(task_fn, row_id, job_id=job_id.format(row_id) if job_id else None)
        queued[what] = ids
        log().warning("work found without its job: queued again", what=what, ids=ids[:20],
                      count=len(ids))
    return queued


def _worker_dead(connection, worker_name: str) -> bool:
    """Whether the worker that ran an execution is certainly gone: its registration expired,
    or it ran on this host under a process id that no longer exists. A worker on another
    host whose registration lives is left to RQ (its heartbeat lapses in a few minutes)."""
    from rq.worker import Worker
    if not worker_name:
        return True
    hostname, pid = connection.hmget(Worker.redis_worker_namespace_prefix + worker_name,
                                     "hostname", "pid")
    if hostname is None:
        return True
    if hostname.decode() != socket.gethostname() or pid is None:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # a live process of another user
    return False


def requeue_abandoned(q) -> list[str]:
    """Put back on queue `q` the jobs RQ still counts as started whose worker is dead.

    Each such execution is taken out of the started registry first (ZREM: of two workers
    starting at once, only the one that removed it queues the job again); the job keeps its
    retries, since it did not fail. Returns the ids of the jobs queued again.
    """
    from rq.executions import Execution
    from rq.job import JobStatus
    from rq.registry import StartedJobRegistry

    registry = StartedJobRegistry(queue=q)
    connection = q.connection
    requeued = []
    for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
        try:
            worker_name = Execution.fetch(execution_id, job_id, connection).worker_name
        except ValueError:  # the execution's own record expired with its heartbeat
            worker_name = ""
        if not _worker_dead(connection, worker_name):
            continue
        if not connection.zrem(registry.key, f"{job_id}:{execution_id}"):
            continue  # another worker took it first
        job = q.fetch_job(job_id)
        if job is None or job.get_status() != JobStatus.STARTED:
            continue
        q._enqueue_job(job, at_front=True)
        requeued.append(job_id)
    if requeued:
        log().warning("jobs of a dead worker queued again", queue=q.name, jobs=requeued[:20],
                      count=len(requeued))
    return requeued

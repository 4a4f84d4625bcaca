"""Checking a driving licence with the service. Safe to run twice: a finished check is left alone.

The task is enqueued by its dotted name, `CHECK_TASK` (app/licence/checks.py).
"""

from __future__ import annotations

from sqlalchemy import select

from ..extensions import db
from ..integrations import licence as licence_client
from ..logging_setup import log
from ..models import LicenceCheck, utcnow
from ..queueing import task
from .checks import CHECK_JOB_ID, record_answer, record_failure
from .rules import local_today

JOB_ID = CHECK_JOB_ID  # one job per check


@task
def check_licence(check_id: int) -> None:
    """Ask the service about one pending check and record the verdict, exactly once.

    The row lock makes a duplicate job wait and then find the check finished. The client
    already retried within its bounds, so every failure is recorded here ("try again
    later") instead of raised: the customer is watching the page, not waiting for a queue
    retry minutes later.
    """
    check = db.session.scalar(select(LicenceCheck).where(LicenceCheck.id == check_id)
                              .with_for_update().execution_options(populate_existing=True))
    if check is None or check.is_final:
        db.session.rollback()
        return
    try:
        record = licence_client.client_from_config().check(
            check.licence_number, check.check_code, idempotency_key=check.idempotency_key)
    except licence_client.LicenceServiceError as exc:
        record_failure(check, exc, now=utcnow())
        log().warning("licence check failed", check_id=check.id, reason=check.reason_code,
                      error=str(exc)[:200])
    else:
        record_answer(check, record, today=local_today(), now=utcnow())
        log().info("licence checked", check_id=check.id, status=check.status,
                   reason=check.reason_code)
    db.session.commit()

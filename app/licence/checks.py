"""Starting a licence check and recording the service's answer.

- `start_customer_check(user, check_code, now=...)` and `recheck_for_hire(hire, by_user, now)`
  record a pending `LicenceCheck` and enqueue the `check_licence` job (app/licence/jobs.py);
- `record_answer` / `record_failure` (called by the job) apply the rental rules (rules.py) to
  what the service said and mirror the result on the customer's profile;
- `give_up_if_stale`: a check pending far too long becomes "try again later".
Refusals raise `LicenceError`, keyed by form field.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Optional


from sqlalchemy import func, select

from .. import audit
from ..errors import FieldErrors
from ..extensions import db
from ..integrations import licence as client
from ..models import CustomerProfile, Hire, LicenceCheck, LicenceCheckStatus, LicenceStatus, User
from ..queueing import enqueue_or_leave_for_recovery
from ..settings import settings
from .rules import OWN, REASONS, S, normalise_licence, refusal_for

CHECK_JOB_ID = "licence-check-{}"  # one job per check
CHECK_TASK = "app.licence.jobs.check_licence"  # by name: services never import jobs


class LicenceError(FieldErrors):
    """A licence check refused before it started, with a message per field ("": the form)."""


# --- input ------------------------------------------------------------------------------

def check_code_error(code: str | None) -> str | None:
    """Why a typed check code cannot be right, or None."""
    if not client.CHECK_CODE_RE.match(client.normalise_check_code(code or "")):
        return ("Enter the 8-character check code (letters and numbers) from "
                "gov.uk/view-driving-licence.")
    return None


def _licence_number_error(profile: CustomerProfile) -> str | None:
    number = normalise_licence(profile.licence_number)
    if len(number) != 16 or not client.LICENCE_RE.match(number):
        return "The licence number on your account is not valid; correct it on your account page first."
    return None


# --- starting a check ---------------------------------------------------------------------

def start_customer_check(user: User, check_code: str, *, now: datetime) -> LicenceCheck:
    """Check the licence on `user`'s profile with this check code. Commits, then enqueues.

    Posting the same code again while a check is running returns that check (one request
    to the service, however often the button is pressed).
    """
    profile = user.profile
    if profile is None:
        raise LicenceError({"": "Only customer accounts have a driving licence to check."})
    error = check_code_error(check_code)
    if error:
        raise LicenceError({"check_code": error})
    error = _licence_number_error(profile)
    if error:
        raise LicenceError({"": error})
    code = client.normalise_check_code(check_code)
    running = _pending_check(user.id, None, profile.licence_number, code)
    if running is not None:
        return running
    check = _new_check(user, profile.licence_number, code, now=now)
    profile.licence_status = LicenceStatus.PENDING.value
    profile.licence_refusal_reason = ""
    db.session.commit()
    _enqueue(check)
    return check


def recheck_for_hire(hire: Hire, by_user: User, now: datetime,
                     check_code: Optional[str] = None) -> LicenceCheck:
    """Counter staff check the hirer's licence again at pickup. Commits, then enqueues.

    Uses the check code the customer gives at the counter, or else the last one they
    shared (gov.uk codes last 21 days); the answer is recorded against the hire and audited.
    """
    customer = hire.customer
    profile = customer.profile
    if profile is None:
        raise LicenceError({"": "This hire's customer has no driving licence on record."})
    if check_code:
        error = check_code_error(check_code)
        if error:
            raise LicenceError({"check_code": error})
        code = client.normalise_check_code(check_code)
    else:
        code = db.session.scalar(
            select(LicenceCheck.check_code).where(LicenceCheck.user_id == customer.id, OWN)
            .order_by(LicenceCheck.id.desc()).limit(1)) or ""
        if not code:
            raise LicenceError({"check_code": "The customer has not shared a check code yet: ask for "
                                              "one from gov.uk/view-driving-licence."})
    error = _licence_number_error(profile)
    if error:
        raise LicenceError({"": "The licence number on this customer's account is not valid."})
    running = _pending_check(customer.id, hire.id, profile.licence_number, code)
    if running is not None:
        return running
    check = _new_check(customer, profile.licence_number, code, now=now, hire=hire, by=by_user)
    audit.record(by_user, "licence.recheck", hire, {"licence_status": profile.licence_status},
                 {"licence_status": LicenceStatus.PENDING.value, "licence_check_id": check.id},
                 at=now)
    profile.licence_status = LicenceStatus.PENDING.value
    profile.licence_refusal_reason = ""
    db.session.commit()
    _enqueue(check)
    return check


def _new_check(user: User, number: str, code: str, *, now: datetime,
               hire: Hire | None = None, by: User | None = None) -> LicenceCheck:
    check = LicenceCheck(
        user_id=user.id, requested_by_id=(by or user).id, hire_id=hire.id if hire else None,
        licence_number=normalise_licence(number), check_code=code, requested_at=now,
        status=S.PENDING.value, reason_code="", message="", categories=[],
        idempotency_key=f"licence-check:{user.id}:{uuid.uuid4().hex}",
    )
    db.session.add(check)
    db.session.flush()
    return check


def _pending_check(user_id: int, hire_id: int | None, number: str, code: str) -> LicenceCheck | None:
    return db.session.scalar(
        select(LicenceCheck).where(
            LicenceCheck.user_id == user_id, OWN, LicenceCheck.hire_id.is_(None) if hire_id is None
            else LicenceCheck.hire_id == hire_id,
            LicenceCheck.status == S.PENDING.value,
            LicenceCheck.licence_number == normalise_licence(number),
            LicenceCheck.check_code == code,
        ).order_by(LicenceCheck.id.desc()).limit(1))


def _enqueue(check: LicenceCheck) -> None:
    # The check is committed and shown as "Checking…": with the queue down it waits for the
    # tick to ask it, which is what the page already says (not a 503 for saved work).
    enqueue_or_leave_for_recovery(CHECK_TASK, check.id, job_id=CHECK_JOB_ID.format(check.id))

# --- recording the answer -------------------------------------------------------------------

def record_answer(check: LicenceCheck, record: client.LicenceRecord, *, today: date,
                  now: datetime) -> None:
    """Store what the service said and the rules' verdict; mirror it on the profile."""
    category = settings().licence.required_licence_category
    entitlement = record.entitlement(category)
    ends = [d for d in (record.valid_to, entitlement.valid_to if entitlement else None) if d]
    check.raw_response = record.raw
    check.valid_from = record.valid_from
    check.valid_to = min(ends) if ends else None  # the day they stop being allowed to drive a car
    check.categories = sorted({e.category for e in record.entitlements if e.full})
    check.held_since = entitlement.valid_from if entitlement else None
    check.penalty_points = record.penalty_points
    check.disqualified = record.disqualified_on(today)
    refusal = refusal_for(record, born=check.user.profile.date_of_birth if check.user.profile
                          else today, today=today)
    if refusal is None:
        _finish(check, S.VERIFIED, "verified", REASONS["verified"], now)
    else:
        _finish(check, S.REFUSED, *refusal, now)


def record_failure(check: LicenceCheck, error: client.LicenceServiceError, *, now: datetime) -> None:
    """The service gave no verdict. A wrong or expired check code refuses; the rest is "try later"."""
    code = error.code if error.code in REASONS else "service_unavailable"
    if isinstance(error, (client.CheckCodeRejected, client.InvalidLicenceRequest,
                          client.LicenceRequestRejected)):
        _finish(check, S.REFUSED, code, REASONS[code], now)
    else:
        _finish(check, S.FAILED, code, REASONS[code], now)
    check.raw_response = {"error": code, "detail": str(error)[:300]}


def _finish(check: LicenceCheck, status: LicenceCheckStatus, code: str, message: str,
            now: datetime) -> None:
    check.status = status.value
    check.reason_code = code
    check.message = message[:300]
    check.completed_at = now
    _mirror_on_profile(check)


def _mirror_on_profile(check: LicenceCheck) -> None:
    """The profile shows the latest check of the licence it holds; older answers do not count."""
    profile = check.user.profile
    latest = db.session.scalar(select(func.max(LicenceCheck.id)).where(LicenceCheck.user_id == check.user_id, OWN))
    if profile is None or latest != check.id or profile.licence_number != check.licence_number:
        return
    profile.licence_status = (LicenceStatus.VERIFIED if check.status == S.VERIFIED.value
                              else LicenceStatus.REFUSED).value
    profile.licence_refusal_reason = "" if check.status == S.VERIFIED.value else check.message[:200]
    profile.licence_checked_at = check.completed_at


def give_up_if_stale(check: LicenceCheck | None, *, now: datetime) -> None:
    """A check pending far longer than the client could take (worker down...) becomes "try later".

    Skips a row a worker holds locked: that worker is still talking to the service.
    """
    if check is None or check.is_final:
        return
    limit = timedelta(seconds=settings().licence.licence_check_give_up_seconds)
    if now - check.requested_at <= limit:
        return
    locked = db.session.scalar(select(LicenceCheck).where(LicenceCheck.id == check.id)
                               .with_for_update(skip_locked=True)
                               .execution_options(populate_existing=True))
    if locked is None or locked.is_final:
        db.session.rollback()
        return
    _finish(locked, S.FAILED, "timed_out", REASONS["timed_out"], now)
    db.session.commit()


"""Driving-licence verification: starting checks, the rental rules, and who may book.

Plain functions over the session (taking `now`/`today`, raising `AccountError` keyed by form
field) used by the account pages, the counter and the booking issue:

- `start_customer_check(user, check_code, now=...)` and `recheck_for_hire(hire, by_user, now)`
  record a pending `LicenceCheck` and enqueue the `check_licence` job;
- `record_answer` / `record_failure` (called by the job) apply the rental rules to what the
  service said and mirror the result on the customer's profile;
- `can_confirm_booking(user, start, end)` and `is_young_driver(profile, on_date)` answer the
  booking and pricing questions;
- `status_for_customer` / `status_for_hire` give the self-polling fragment what to show.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Optional
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import func, select

from .. import audit
from ..extensions import db
from ..integrations import licence as client
from ..models import CustomerProfile, Hire, LicenceCheck, LicenceCheckStatus, LicenceStatus, User
from ..queueing import enqueue_or_leave_for_recovery
from . import validators as v
from .services import AccountError

S = LicenceCheckStatus
CHECK_JOB_ID = "licence-check-{}"  # one job per check
CHECK_TASK = "app.jobs.licence.check_licence"  # by name: the job imports this module
# The user's own licence, not an additional driver's (app/accounts/drivers.py, issue 18).
OWN = LicenceCheck.driver_id.is_(None)

# Messages a person understands, by reason code (the rules add their numbers to some).
UNAVAILABLE_MESSAGE = ("We could not reach the licence checking service just now. "
                       "Please try again later.")
REASONS: dict[str, str] = {
    "verified": "Your driving licence is verified.",
    "expired": "Your driving licence has expired. Renew it with the DVLA, then check it again.",
    "disqualified": "The DVLA record shows you are disqualified from driving, so we cannot hire you a car.",
    "not_valid": "The DVLA record shows your licence is not currently valid (status: {status}).",
    "no_category": "Your licence does not include full category {category} (car) entitlement.",
    "too_young": "You must be at least {age} to hire a car.",
    "not_held_long_enough": ("You need to have held a full category {category} licence for at least "
                             "{years} year(s); yours dates from {since:%d %B %Y}."),
    "too_many_points": ("Your licence has {points} penalty points; we can hire to drivers with "
                        "at most {limit}."),
    "check_code_invalid": ("That check code is wrong or has expired. Get a new one at "
                           "gov.uk/view-driving-licence and try again."),
    "check_code_expired": ("That check code has expired. Get a new one at "
                           "gov.uk/view-driving-licence and try again."),
    "request_rejected": ("The licence service could not accept these details. Check your licence "
                         "number and check code, then try again."),
    "invalid_request": "That is not a valid licence number or check code.",
    "service_unavailable": UNAVAILABLE_MESSAGE,
    "bad_response": UNAVAILABLE_MESSAGE,
    "timed_out": "The check took too long to answer. Please try again later.",
}


# --- input ------------------------------------------------------------------------------

def check_code_error(code: str | None) -> str | None:
    """Why a typed check code cannot be right, or None."""
    if not client.CHECK_CODE_RE.match(client.normalise_check_code(code or "")):
        return ("Enter the 8-character check code (letters and numbers) from "
                "gov.uk/view-driving-licence.")
    return None


def _licence_number_error(profile: CustomerProfile) -> str | None:
    number = v.normalise_licence(profile.licence_number)
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
        raise AccountError({"": "Only customer accounts have a driving licence to check."})
    error = check_code_error(check_code)
    if error:
        raise AccountError({"check_code": error})
    error = _licence_number_error(profile)
    if error:
        raise AccountError({"": error})
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
        raise AccountError({"": "This hire's customer has no driving licence on record."})
    if check_code:
        error = check_code_error(check_code)
        if error:
            raise AccountError({"check_code": error})
        code = client.normalise_check_code(check_code)
    else:
        code = db.session.scalar(
            select(LicenceCheck.check_code).where(LicenceCheck.user_id == customer.id, OWN)
            .order_by(LicenceCheck.id.desc()).limit(1)) or ""
        if not code:
            raise AccountError({"check_code": "The customer has not shared a check code yet: ask for "
                                              "one from gov.uk/view-driving-licence."})
    error = _licence_number_error(profile)
    if error:
        raise AccountError({"": "The licence number on this customer's account is not valid."})
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
        licence_number=v.normalise_licence(number), check_code=code, requested_at=now,
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
            LicenceCheck.licence_number == v.normalise_licence(number),
            LicenceCheck.check_code == code,
        ).order_by(LicenceCheck.id.desc()).limit(1))


def _enqueue(check: LicenceCheck) -> None:
    # The check is committed and shown as "Checking…": with the queue down it waits for the
    # tick to ask it, which is what the page already says (not a 503 for saved work).
    enqueue_or_leave_for_recovery(CHECK_TASK, check.id, job_id=CHECK_JOB_ID.format(check.id))


# --- the rental rules -----------------------------------------------------------------------

def refusal_for(record: client.LicenceRecord, *, born: date, today: date) -> tuple[str, str] | None:
    """(reason code, message) if the rules refuse this licence today, None if it is fine."""
    cfg = current_app.config
    category = cfg["REQUIRED_LICENCE_CATEGORY"]
    if record.disqualified_on(today):
        return "disqualified", REASONS["disqualified"]
    if record.status.lower() == "expired" or (record.valid_to is not None and record.valid_to < today):
        return "expired", REASONS["expired"]
    if record.status.lower() != "valid":
        return "not_valid", REASONS["not_valid"].format(status=record.status)
    entitlement = record.entitlement(category)
    if entitlement is None or (entitlement.valid_to is not None and entitlement.valid_to < today):
        return "no_category", REASONS["no_category"].format(category=category)
    min_age = cfg["LEGAL_DRIVING_AGE"]
    if v.age_on(record.date_of_birth or born, today) < min_age:
        return "too_young", REASONS["too_young"].format(age=min_age)
    years = cfg["MIN_YEARS_LICENCE_HELD"]
    since = entitlement.valid_from
    if since is None or v.age_on(since, today) < years:
        return "not_held_long_enough", REASONS["not_held_long_enough"].format(
            category=category, years=years, since=since or today)
    limit = cfg["MAX_PENALTY_POINTS"]
    if record.penalty_points > limit:
        return "too_many_points", REASONS["too_many_points"].format(points=record.penalty_points,
                                                                    limit=limit)
    return None


def record_answer(check: LicenceCheck, record: client.LicenceRecord, *, today: date,
                  now: datetime) -> None:
    """Store what the service said and the rules' verdict; mirror it on the profile."""
    category = current_app.config["REQUIRED_LICENCE_CATEGORY"]
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
    limit = timedelta(seconds=current_app.config["LICENCE_CHECK_GIVE_UP_SECONDS"])
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


# --- what the rest of the app asks ------------------------------------------------------------

def latest_check(user: User) -> LicenceCheck | None:
    return db.session.scalar(select(LicenceCheck).where(LicenceCheck.user_id == user.id, OWN)
                             .order_by(LicenceCheck.id.desc()).limit(1))


def latest_check_for_hire(hire: Hire) -> LicenceCheck | None:
    return db.session.scalar(select(LicenceCheck).where(LicenceCheck.hire_id == hire.id, OWN)
                             .order_by(LicenceCheck.id.desc()).limit(1))


def _local_date(moment: datetime) -> date:
    return moment.astimezone(ZoneInfo(current_app.config["DEFAULT_TIMEZONE"])).date()


def licence_valid_until(user: User) -> date | None:
    """The last day the verified licence lets them drive: the service's answer, else section 4b."""
    profile = user.profile
    if profile is None:
        return None
    check = db.session.scalar(
        select(LicenceCheck).where(LicenceCheck.user_id == user.id, OWN,
                                   LicenceCheck.status == S.VERIFIED.value,
                                   LicenceCheck.licence_number == profile.licence_number)
        .order_by(LicenceCheck.id.desc()).limit(1))
    if check is not None and check.valid_to is not None:
        return check.valid_to
    return profile.licence_expires_on


def can_confirm_booking(user: User, start: datetime, end: datetime) -> tuple[bool, str]:
    """May `user` confirm a hire from `start` to `end`? (False, why) when not.

    Searching and quoting need no licence; confirming needs a verified licence that is
    valid for the whole hire and a driver old enough on the first day. The booking pages
    show the message with a link to `accounts.licence_check`.
    """
    profile = user.profile
    if profile is None:
        return False, "Only customer accounts can book a car."
    status = profile.licence_status
    if status == LicenceStatus.PENDING.value:
        return False, "We are still checking your driving licence; this usually takes a few seconds."
    if status == LicenceStatus.REFUSED.value:
        reason = profile.licence_refusal_reason or "it did not pass our checks."
        last = latest_check(user)
        if last is not None and last.status == S.FAILED.value:  # an outage, not a verdict
            return False, f"We could not check your driving licence yet. {reason}"
        return False, f"We could not accept your driving licence: {reason}"
    if status != LicenceStatus.VERIFIED.value:
        return False, ("We need to check your driving licence before you can book: enter your "
                       "gov.uk check code on the licence page.")
    min_age = current_app.config["LEGAL_DRIVING_AGE"]
    if v.age_on(profile.date_of_birth, _local_date(start)) < min_age:
        return False, f"You must be at least {min_age} on the day the hire starts."
    valid_until = licence_valid_until(user)
    last_day = _local_date(end)
    if valid_until is not None and valid_until < last_day:
        return False, (f"Your driving licence is valid until {valid_until:%d %B %Y}, before this "
                       "hire ends. Choose dates that end by then, or renew your licence and check it again.")
    return True, ""


def is_young_driver(profile: CustomerProfile, on_date: date) -> bool:
    """In the young-driver surcharge band (aged YOUNG_DRIVER_MAX_AGE or under) on `on_date`."""
    return v.age_on(profile.date_of_birth, on_date) <= current_app.config["YOUNG_DRIVER_MAX_AGE"]


def pickup_licence_ok(hire: Hire) -> tuple[bool, str]:
    """At the counter: did the latest re-check for this hire verify a licence valid to its end?"""
    check = latest_check_for_hire(hire)
    if check is None:
        return False, "The licence has not been checked for this hire yet."
    if check.status == S.PENDING.value:
        return False, "The licence check is still running."
    if check.status != S.VERIFIED.value:
        return False, check.message
    if check.valid_to is not None and check.valid_to < _local_date(hire.end_at):
        return False, f"The licence is valid only until {check.valid_to:%d %B %Y}, before the hire ends."
    return True, ""


# --- what the status fragment shows ---------------------------------------------------------

@dataclass(frozen=True)
class LicenceStatusView:
    state: str  # unchecked | pending | verified | refused | failed
    title: str
    message: str
    checked_at: Optional[datetime] = None
    checked_by: str = ""

    @property
    def polling(self) -> bool:
        return self.state == "pending"

    @property
    def is_final(self) -> bool:
        return self.state in ("verified", "refused", "failed")


TITLES = {"unchecked": "Not checked yet", "pending": "Checking…", "verified": "Verified",
          "refused": "Refused", "failed": "Not checked: try again later"}


def _view_of(check: LicenceCheck, *, show_by: bool = False) -> LicenceStatusView:
    by = ""
    if show_by and check.requested_by is not None and check.requested_by_id != check.user_id:
        by = check.requested_by.full_name
    if check.status == S.PENDING.value:
        return LicenceStatusView("pending", TITLES["pending"],
                                 "We are asking the DVLA; this usually takes a few seconds.",
                                 check.requested_at, by)
    return LicenceStatusView(check.status, TITLES[check.status], check.message,
                             check.completed_at, by)


def status_for_customer(user: User, *, now: datetime) -> LicenceStatusView:
    """What the customer's licence panel shows (giving up a check stuck far too long)."""
    profile = user.profile
    if profile is None:
        return LicenceStatusView("unchecked", TITLES["unchecked"], "")
    check = latest_check(user)
    give_up_if_stale(check, now=now)
    if (check is not None and check.licence_number == profile.licence_number
            and profile.licence_status != LicenceStatus.UNCHECKED.value):
        return _view_of(check)
    status = profile.licence_status
    if status == LicenceStatus.UNCHECKED.value:
        return LicenceStatusView("unchecked", TITLES["unchecked"],
                                 "Enter your gov.uk check code below so we can check your licence.")
    message = (REASONS["verified"] if status == LicenceStatus.VERIFIED.value
               else profile.licence_refusal_reason)
    return LicenceStatusView(status, TITLES.get(status, status), message, profile.licence_checked_at)


def status_for_hire(hire: Hire, *, now: datetime) -> LicenceStatusView:
    """What the counter sees for this hire's latest re-check, with when and by whom."""
    check = latest_check_for_hire(hire)
    give_up_if_stale(check, now=now)
    if check is None:
        return LicenceStatusView("unchecked", TITLES["unchecked"],
                                 "The licence has not been checked for this hire yet.")
    return _view_of(check, show_by=True)

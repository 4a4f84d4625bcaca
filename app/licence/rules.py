"""The rental rules for a driving licence, and what booking, pricing and the counter ask.

- `refusal_for(record, born, today)`: does a licence record pass (verdicts and their messages
  are in `REASONS`)?
- `can_confirm_booking(user, start, end)`, `is_young_driver(profile, on_date)`: booking and
  pricing; `pickup_licence_ok(hire)`: the counter's hand-over.
- `normalise_licence`, `age_on`: shared with the account forms' own checks.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import select

from ..extensions import db
from ..integrations import licence as client
from ..models import (CustomerProfile, Hire, LicenceCheck, LicenceCheckStatus, LicenceStatus, User,
                      utcnow)
from ..settings import settings

S = LicenceCheckStatus
# The user's own licence, not an additional driver's (drivers.py, issue 18).
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



def normalise_licence(number: str) -> str:
    return re.sub(r"\s+", "", number or "").upper()


def age_on(born: date, day: date) -> int:
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def _local_date(moment: datetime) -> date:
    return moment.astimezone(ZoneInfo(current_app.config["DEFAULT_TIMEZONE"])).date()



def local_today() -> date:
    """Today where the business is (dates of birth and expiry are local dates)."""
    return _local_date(utcnow())


def refusal_for(record: client.LicenceRecord, *, born: date, today: date) -> tuple[str, str] | None:
    """(reason code, message) if the rules refuse this licence today, None if it is fine."""
    cfg = settings()
    category = cfg.licence.required_licence_category
    if record.disqualified_on(today):
        return "disqualified", REASONS["disqualified"]
    if record.status.lower() == "expired" or (record.valid_to is not None and record.valid_to < today):
        return "expired", REASONS["expired"]
    if record.status.lower() != "valid":
        return "not_valid", REASONS["not_valid"].format(status=record.status)
    entitlement = record.entitlement(category)
    if entitlement is None or (entitlement.valid_to is not None and entitlement.valid_to < today):
        return "no_category", REASONS["no_category"].format(category=category)
    min_age = cfg.licence.legal_driving_age
    if age_on(record.date_of_birth or born, today) < min_age:
        return "too_young", REASONS["too_young"].format(age=min_age)
    years = cfg.licence.min_years_licence_held
    since = entitlement.valid_from
    if since is None or age_on(since, today) < years:
        return "not_held_long_enough", REASONS["not_held_long_enough"].format(
            category=category, years=years, since=since or today)
    limit = cfg.licence.max_penalty_points
    if record.penalty_points > limit:
        return "too_many_points", REASONS["too_many_points"].format(points=record.penalty_points,
                                                                    limit=limit)
    return None



def latest_check(user: User) -> LicenceCheck | None:
    return db.session.scalar(select(LicenceCheck).where(LicenceCheck.user_id == user.id, OWN)
                             .order_by(LicenceCheck.id.desc()).limit(1))


def latest_check_for_hire(hire: Hire) -> LicenceCheck | None:
    return db.session.scalar(select(LicenceCheck).where(LicenceCheck.hire_id == hire.id, OWN)
                             .order_by(LicenceCheck.id.desc()).limit(1))



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
    min_age = settings().licence.legal_driving_age
    if age_on(profile.date_of_birth, _local_date(start)) < min_age:
        return False, f"You must be at least {min_age} on the day the hire starts."
    valid_until = licence_valid_until(user)
    last_day = _local_date(end)
    if valid_until is not None and valid_until < last_day:
        return False, (f"Your driving licence is valid until {valid_until:%d %B %Y}, before this "
                       "hire ends. Choose dates that end by then, or renew your licence and check it again.")
    return True, ""


def is_young_driver(profile: CustomerProfile, on_date: date) -> bool:
    """In the young-driver surcharge band (aged YOUNG_DRIVER_MAX_AGE or under) on `on_date`."""
    return age_on(profile.date_of_birth, on_date) <= settings().licence.young_driver_max_age


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


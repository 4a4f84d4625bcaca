"""Additional drivers' licences (issue 18): checked by the licence job like the hirer's.

A driver named at online check-in gives their licence number and a gov.uk check code; a
`LicenceCheck` with `driver_id` set goes to the same `check_licence` job, so the same rental
rules apply. The hirer's own checks are those with no driver (`rules.OWN`).

`online_licences_ok(hire)` answers the counter's question for a hire checked in online: is
the hirer's licence verified to the end of the hire, and every named driver's too?
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select

from ..extensions import db
from ..integrations import licence as client
from ..models import Hire, HireDriver, LicenceCheck, LicenceCheckStatus, LicenceStatus, User
from .checks import LicenceError, _enqueue, check_code_error
from .rules import _local_date, licence_valid_until, normalise_licence

S = LicenceCheckStatus


def licence_number_error(number: str) -> str | None:
    number = normalise_licence(number)
    if len(number) != 16 or not client.LICENCE_RE.match(number):
        return "Enter the 16-character driving licence number from the front of the licence (section 5)."
    return None


def start_driver_check(hire: Hire, driver: HireDriver, check_code: str, *, by: User,
                       now: datetime) -> LicenceCheck:
    """Check an additional driver's licence with their check code. Commits, then enqueues."""
    error = check_code_error(check_code)
    if error:
        raise LicenceError({"check_code": error})
    check = LicenceCheck(
        user_id=hire.customer_id, requested_by_id=by.id, hire_id=hire.id, driver_id=driver.id,
        licence_number=normalise_licence(driver.licence_number),
        check_code=client.normalise_check_code(check_code), requested_at=now,
        status=S.PENDING.value, reason_code="", message="", categories=[],
        idempotency_key=f"licence-check:driver:{driver.id}:{uuid.uuid4().hex}")
    db.session.add(check)
    db.session.commit()
    _enqueue(check)
    return check


def latest_driver_checks(hire: Hire) -> dict[int, LicenceCheck]:
    """Each named driver's latest licence check, by driver id."""
    checks = db.session.scalars(select(LicenceCheck).where(
        LicenceCheck.hire_id == hire.id, LicenceCheck.driver_id.is_not(None))
        .order_by(LicenceCheck.id))
    return {check.driver_id: check for check in checks}  # later ids win


def drivers_of(hire: Hire) -> list[HireDriver]:
    return list(db.session.scalars(select(HireDriver).where(HireDriver.hire_id == hire.id)
                                   .order_by(HireDriver.id)))


def online_licences_ok(hire: Hire) -> tuple[bool, str]:
    """The hirer's licence verified and valid to the hire's end, and every driver's likewise."""
    profile = hire.customer.profile
    if profile is None or profile.licence_status != LicenceStatus.VERIFIED.value:
        return False, "The hirer's licence is not verified."
    last_day = _local_date(hire.end_at)
    valid_until = licence_valid_until(hire.customer)
    if valid_until is not None and valid_until < last_day:
        return False, f"The hirer's licence is valid only until {valid_until:%d %B %Y}."
    checks = latest_driver_checks(hire)
    for driver in drivers_of(hire):
        check = checks.get(driver.id)
        if check is None or check.status != S.VERIFIED.value:
            return False, f"{driver.full_name}'s licence is not verified."
        if check.valid_to is not None and check.valid_to < last_day:
            return False, f"{driver.full_name}'s licence is valid only until {check.valid_to:%d %B %Y}."
    return True, ""

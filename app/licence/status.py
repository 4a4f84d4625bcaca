"""What the self-polling licence status fragment shows, to the customer and at the counter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Optional

from ..models import Hire, LicenceCheck, LicenceStatus, User
from .checks import give_up_if_stale
from .rules import REASONS, S, latest_check, latest_check_for_hire


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

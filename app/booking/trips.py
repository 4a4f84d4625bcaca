"""Trips: where and when a hire is. Branch-local times to UTC and back, opening hours,
the booking window (notice, how far ahead, longest hire) and suggested default times."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from .. import refdata
from ..refdata import BranchRef
from ..settings import settings
from . import pricing
from .errors import BookingError


@dataclass(frozen=True)
class Trip:
    pickup_branch: BranchRef  # the reference data's (app/refdata.py): plain values
    return_branch: BranchRef
    start: datetime  # aware UTC
    end: datetime  # aware UTC

    @property
    def tz(self) -> str:
        return self.pickup_branch.timezone

    @property
    def one_way(self) -> bool:
        return self.pickup_branch.id != self.return_branch.id

    def until(self) -> datetime:
        """The end of the car's occupancy: the return plus the cleaning buffer."""
        return self.end + timedelta(minutes=settings().booking.cleaning_buffer_minutes)


# How search results may be ordered: (value, label); the first is the default.
SORTS = (("price", "Price: lowest first"), ("price_desc", "Price: highest first"),
         ("size", "Size: largest first"), ("size_asc", "Size: smallest first"))


@dataclass(frozen=True)
class Filters:
    car_class: str = ""
    min_seats: int = 0
    transmission: str = ""
    fuel_type: str = ""
    sort: str = SORTS[0][0]

    def narrowed(self) -> bool:
        """Whether any filter (not the order) leaves cars out."""
        return bool(self.car_class or self.min_seats or self.transmission or self.fuel_type)


def local_to_utc(local: datetime, tz: str) -> datetime:
    """A wall-clock time at a branch as aware UTC; refuses a time the clocks skip."""
    zone = ZoneInfo(tz)
    aware = local.replace(tzinfo=zone, fold=0)
    as_utc = aware.astimezone(timezone.utc)
    if as_utc.astimezone(zone).replace(tzinfo=None) != local.replace(tzinfo=None):
        raise ValueError("that time does not exist: the clocks go forward then")
    return as_utc


def to_local(value: datetime, tz: str) -> datetime:
    """Aware UTC to the naive wall-clock time at a branch (what a form shows)."""
    return value.astimezone(ZoneInfo(tz)).replace(tzinfo=None)


def _hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


DAY_NAMES = {"mon": "Mondays", "tue": "Tuesdays", "wed": "Wednesdays", "thu": "Thursdays",
             "fri": "Fridays", "sat": "Saturdays", "sun": "Sundays"}


def opening_error(branch: BranchRef, local: datetime) -> str | None:
    """Why the branch cannot hand over or take back a car at this local time, if it cannot."""
    day = pricing.WEEKDAY_KEYS[local.weekday()]
    hours = (branch.opening_hours or {}).get(day)
    if not hours:
        return f"{branch.name} is closed on {DAY_NAMES[day]}."
    opens, closes = _hhmm(hours[0]), _hhmm(hours[1])
    if not opens <= local.time() <= closes:
        return f"{branch.name} is open {hours[0]}–{hours[1]} on {DAY_NAMES[day]}."
    return None


def make_trip(*, pickup_branch_id: int | None, return_branch_id: int | None,
              pickup_local: datetime | None, return_local: datetime | None,
              now: datetime) -> Trip:
    """Check the where and when of a hire; every problem is reported at once, by field."""
    cfg = settings()
    errors: dict[str, str] = {}
    reference = refdata.current()
    pickup_branch = reference.branch(pickup_branch_id) if pickup_branch_id else None
    return_branch = reference.branch(return_branch_id) if return_branch_id else None
    if pickup_branch is None:
        errors["pickup_branch"] = "Choose where to pick the car up."
    if return_branch is None:
        errors["return_branch"] = "Choose where to return the car."
    if pickup_local is None:
        errors["pickup_at"] = "Enter the pickup date and time."
    if return_local is None:
        errors["return_at"] = "Enter the return date and time."
    start = end = None
    if pickup_branch is not None and pickup_local is not None:
        try:
            start = local_to_utc(pickup_local, pickup_branch.timezone)
        except ValueError:
            errors["pickup_at"] = "That time does not exist: the clocks go forward an hour then."
        else:
            earliest = now + timedelta(minutes=cfg.booking.booking_min_notice_minutes)
            if start < earliest:
                errors["pickup_at"] = (
                    "Pickup must be in the future, at least "
                    f"{_duration_words(cfg.booking.booking_min_notice_minutes)} from now.")
            elif start > now + timedelta(days=cfg.booking.booking_max_advance_days):
                errors["pickup_at"] = (f"We take bookings up to {cfg.booking.booking_max_advance_days} "
                                       "days ahead.")
            elif (closed := opening_error(pickup_branch, pickup_local)) is not None:
                errors["pickup_at"] = closed
    if return_branch is not None and return_local is not None:
        try:
            end = local_to_utc(return_local, return_branch.timezone)
        except ValueError:
            errors["return_at"] = "That time does not exist: the clocks go forward an hour then."
        else:
            if start is not None and end <= start:
                errors["return_at"] = "Return must be after pickup."
            elif start is not None and pricing.charged_days(
                    start, end, cfg.money.late_grace_minutes) > cfg.booking.max_hire_days:
                errors["return_at"] = (f"A hire can be at most {cfg.booking.max_hire_days} days. "
                                       "For longer, book a second hire or call us.")
            elif (closed := opening_error(return_branch, return_local)) is not None:
                errors["return_at"] = closed
    if errors:
        raise BookingError(errors)
    return Trip(pickup_branch, return_branch, start, end)  # type: ignore[arg-type]


def _duration_words(minutes: int) -> str:
    if minutes % 60 == 0:
        hours = minutes // 60
        return "an hour" if hours == 1 else f"{hours} hours"
    return f"{minutes} minutes"


def default_trip_times(branch: BranchRef, now: datetime, days: int = 3) -> tuple[datetime, datetime]:
    """Suggested local pickup and return: the next open day at 10:00 (or opening), `days` later."""
    zone = ZoneInfo(branch.timezone)
    day = now.astimezone(zone).date() + timedelta(days=1)
    start = _first_open(branch, day)
    end = _first_open(branch, start.date() + timedelta(days=days), not_before=start.time())
    return start, end


def _first_open(branch: BranchRef, day: date, not_before: time | None = None) -> datetime:
    preferred = not_before or time(10, 0)
    for offset in range(14):
        d = day + timedelta(days=offset)
        hours = (branch.opening_hours or {}).get(pricing.WEEKDAY_KEYS[d.weekday()])
        if hours:
            opens, closes = _hhmm(hours[0]), _hhmm(hours[1])
            at = min(max(preferred, opens), closes)
            return datetime.combine(d, at)
    return datetime.combine(day, preferred)

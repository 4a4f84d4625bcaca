"""Report periods: weeks or months in the business's time zone, the range a report may cover
(at most REPORT_MAX_RANGE_DAYS, checked before any job is queued) and the default range.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Optional
from zoneinfo import ZoneInfo

from flask import current_app

from ...errors import FieldErrors


GROUPINGS = ("class", "branch", "car")
PERIOD_KINDS = ("week", "month")


class ReportError(FieldErrors):
    """A report that cannot be made as asked (a bad range), with messages by form field."""


@dataclass(frozen=True)
class Period:
    index: int
    label: str
    starts_at: datetime  # aware; local midnight of the first day
    ends_at: datetime

    @property
    def first_day(self) -> date:
        return self.starts_at.date()


def report_zone() -> ZoneInfo:
    return ZoneInfo(current_app.config["DEFAULT_TIMEZONE"])


def local_today() -> date:
    return datetime.now(report_zone()).date()


def default_range(today: date) -> tuple[date, date]:
    """The last REPORT_DEFAULT_WEEKS whole weeks up to and including this one."""
    weeks = current_app.config["REPORT_DEFAULT_WEEKS"]
    this_monday = today - timedelta(days=today.weekday())
    return this_monday - timedelta(weeks=weeks - 1), today


def _month_start(day: date) -> date:
    return day.replace(day=1)


def _next_month(day: date) -> date:
    return date(day.year + (day.month == 12), day.month % 12 + 1, 1)


def periods(date_from: date, date_to: date, kind: str, *, limit: Optional[int] = -1) -> list[Period]:
    """Whole weeks (Monday to Sunday) or calendar months covering the two dates.

    At most REPORT_MAX_PERIODS (or `limit`; None for no limit).
    """
    if date_to < date_from:
        raise ReportError({"date_to": "The end date is before the start date."})
    if limit == -1:
        limit = current_app.config["REPORT_MAX_PERIODS"]
    zone = report_zone()
    if kind == "month":
        start, step = _month_start(date_from), _next_month
        label = lambda d: d.strftime("%b %Y")  # noqa: E731
    else:
        start = date_from - timedelta(days=date_from.weekday())
        step = lambda d: d + timedelta(days=7)  # noqa: E731
        label = lambda d: d.strftime("w/c %d %b %Y")  # noqa: E731
    result: list[Period] = []
    day = start
    while day <= date_to:
        try:
            nxt = step(day)
        except OverflowError:  # a period running past 31 December 9999
            raise ReportError({"date_to": "Choose an end date before the year 9999."})
        result.append(Period(len(result), label(day), datetime.combine(day, time(0), zone),
                             datetime.combine(nxt, time(0), zone)))
        day = nxt
        if limit is not None and len(result) > limit:
            raise ReportError({"date_from": f"Choose a shorter range: at most {limit} periods."})
    return result


def check_range(date_from: date, date_to: date, kind: str = "week") -> list[Period]:
    """The periods of a range a report or a refresh may cover, or ReportError: the end after
    the start, at most REPORT_MAX_RANGE_DAYS apart, within the calendar. Checked before any
    work is queued for the range."""
    if date_to < date_from:
        raise ReportError({"date_to": "The end date is before the start date."})
    longest = current_app.config["REPORT_MAX_RANGE_DAYS"]
    if (date_to - date_from).days >= longest:
        raise ReportError({"date_from": f"Choose a shorter range: at most {longest} days "
                                        "(the nightly refresh covers the whole history)."})
    return periods(date_from, date_to, kind)

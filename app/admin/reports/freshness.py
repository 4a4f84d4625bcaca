"""Keeping a report's figures fresh: which parts of a range are stale (the periods around
today after REPORT_REFRESH_MINUTES; older ones when never refreshed) and queueing their
refresh on the reports' own low-priority queue, with a time limit.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Optional

from flask import current_app
from sqlalchemy import func, select

from ...extensions import db
from ...queueing import enqueue
from ...models import ReportRefresh
from . import refresh_task
from .periods import ReportError, check_range


def recent_range(today: date) -> tuple[date, date]:
    """The dates whose figures still change often: refreshed every REPORT_REFRESH_MINUTES."""
    cfg = current_app.config
    return (today - timedelta(days=cfg["REPORT_REFRESH_DAYS_BACK"]),
            today + timedelta(days=cfg["REPORT_REFRESH_DAYS_AHEAD"]))


def request_refresh(date_from: date, date_to: date, *, job_id: str) -> None:
    """Queue a refresh of a range (checked first: ReportError, and nothing queued, if it is
    not one a report may cover) on the reports' own low-priority queue, with a time limit
    that fits a bounded range."""
    check_range(date_from, date_to)
    cfg = current_app.config
    enqueue(refresh_task, date_from.isoformat(), date_to.isoformat(), job_id=job_id,
            queue_name=cfg["REPORTS_QUEUE_NAME"], timeout=cfg["REPORT_JOB_TIMEOUT_SECONDS"])


def covered_since(date_from: date, date_to: date) -> Optional[datetime]:
    """When a finished refresh last covered the whole range (None: never)."""
    return db.session.scalar(
        select(func.max(ReportRefresh.finished_at))
        .where(ReportRefresh.finished_at.is_not(None), ReportRefresh.date_from <= date_from,
               ReportRefresh.date_to >= date_to))


def ensure_fresh(date_from: date, date_to: date, *, today: date, now: datetime) -> Optional[datetime]:
    """Ask for a refresh of the figures this report needs if they are missing or stale.

    The periods around today (`recent_range`) go stale after REPORT_REFRESH_MINUTES; the
    others are refreshed nightly, or now if no refresh ever covered them. Returns when the
    figures shown were refreshed (the oldest part; None if never), for the page to say.
    """
    check_range(date_from, date_to)
    max_age = timedelta(minutes=current_app.config["REPORT_REFRESH_MINUTES"])
    recent_from, recent_to = recent_range(today)
    times: list[Optional[datetime]] = []
    if date_from <= recent_to and date_to >= recent_from:
        recent = covered_since(recent_from, recent_to)
        if recent is None or now - recent > max_age:
            request_refresh(recent_from, recent_to, job_id=f"report-refresh-recent-{now:%Y%m%d%H%M}")
            recent = covered_since(recent_from, recent_to) or recent
        times.append(recent)
    # The parts before and after the recent periods: refreshed once, then nightly.
    for part_from, part_to in ((date_from, min(date_to, recent_from - timedelta(days=1))),
                               (max(date_from, recent_to + timedelta(days=1)), date_to)):
        if part_from > part_to:
            continue
        covered = covered_since(part_from, part_to)
        if covered is None:
            request_refresh(part_from, part_to, job_id=f"report-refresh-{part_from}-{part_to}")
            covered = covered_since(part_from, part_to)
        times.append(covered)
    return None if not times or None in times else min(t for t in times if t is not None)

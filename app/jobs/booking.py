"""The booking scheduler: expire unpaid holds and mark hires nobody collected as no-shows
(both moves of the hire lifecycle, app/booking/lifecycle.py), queue pickup and return-due reminders, and queue again the jobs
that never reached RQ (app/jobs/recovery.py).

`tick` is safe to run twice, or twice at once: expiry locks the rows it moves (skipping
rows another run holds) and only moves hires still `held`; a no-show is moved under a row
lock (version check on SQLite) only while still `confirmed`; every email has its own
idempotency key. Production runs `flask acme tick` from a systemd timer every minute;
on the embedded default (JOBS_MODE "thread") `start_dev_ticker` enqueues it on the
in-process pool every DEV_TICK_SECONDS.
"""

from __future__ import annotations

import threading
from datetime import datetime

from flask import Flask

from ..booking.lifecycle import expire_held_hires, finish_interrupted_no_shows, mark_due_no_shows
from ..booking.scheduled import queue_due_reminders
from ..logging_setup import log
from ..models import utcnow
from ..payments import place_due_deposit_holds, release_stranded_holds
from ..payments.crypto import request_scan
from ..queueing import enqueue, task
from ..settings import settings_of
from ..counter.car_return import close_settled_returns
from ..counter.offline import prune_offline_steps
from ..privacy.exports import expire_exports
from ..privacy.retention import apply_retention
from .recovery import requeue_orphans

_ticker_lock = threading.Lock()
_ticker_started: set[int] = set()


@task
def tick(now_iso: str | None = None) -> dict:
    """One scheduler pass. `now_iso` (ISO 8601 with offset) is for tests and catch-up runs."""
    now = datetime.fromisoformat(now_iso) if now_iso else utcnow()
    expired = expire_held_hires(now)
    no_shows = mark_due_no_shows(now)
    no_shows_finished = finish_interrupted_no_shows(now)
    reminders = queue_due_reminders(now)
    # Payments' scheduled work rides on the same timer: card deposit holds that are now due
    # (DEPOSIT_HOLD_LEAD_DAYS before pickup), and a chain scan when crypto payments are open.
    holds = place_due_deposit_holds(now)
    # Card holds left on hires that ended before pickup (a release that failed or was cut
    # off) are let go: money is never kept blocked on a card for a hire that will not happen.
    released = release_stranded_holds(now)
    scanning = request_scan(now)
    # The counter's returns whose money has settled since (jobs, chain confirmations) close.
    closed = close_settled_returns(now)
    # The customer's own data (issue 18): licence data past its retention, expired downloads.
    retention = apply_retention(now)
    exports_expired = expire_exports(now)
    # The answers kept for the tablets' offline steps, once no tablet can send them again.
    offline_pruned = prune_offline_steps(now)
    # Work committed while Redis was down (its job never queued) gets its job now.
    requeued = requeue_orphans(now)
    return {"expired": len(expired), "no_shows": len(no_shows),
            "no_shows_finished": len(no_shows_finished), "reminders": len(reminders),
            "deposit_holds": len(holds), "holds_released": len(released), "chain_scan": scanning, "closed": len(closed),
            "requeued": sum(len(ids) for ids in requeued.values()),
            "retention_deleted": len(retention), "exports_expired": len(exports_expired),
            "offline_steps_pruned": offline_pruned}


class DevTicker(threading.Thread):
    """Enqueues `tick` every `interval` seconds until stopped."""

    def __init__(self, app: Flask, interval: float):
        super().__init__(name="booking-ticker", daemon=True)
        self.app, self.interval = app, interval
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                with self.app.app_context():
                    enqueue(tick, job_id="booking-tick")
            except Exception:  # never let the ticker die; the next round tries again
                log().exception("could not enqueue the booking tick")

    def stop(self) -> None:
        self._stopped.set()
        self.join()


def start_dev_ticker(app: Flask) -> DevTicker | None:
    """Development only: enqueue `tick` on the in-process pool every DEV_TICK_SECONDS.

    Started once per app (on its first request); returns the ticker, or None.
    """
    interval = settings_of(app).booking.dev_tick_seconds
    if (interval <= 0 or app.config["JOBS_MODE"] != "thread"
            or app.config["ENV_NAME"] != "development" or id(app) in _ticker_started):
        return None
    with _ticker_lock:
        if id(app) in _ticker_started:
            return None
        _ticker_started.add(id(app))
    ticker = DevTicker(app, interval)
    ticker.start()
    log().info("development booking ticker started", every_seconds=interval)
    return ticker

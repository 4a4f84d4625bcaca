"""Reference data, read once per worker: branches (opening hours), car classes and the rate
tables (duration tiers, seasons, extras, one-way fees), as plain frozen values (issue 19).

Every search and car page needs all of them and they change a few times a year, so each app
(one per Gunicorn worker) keeps a `Reference` snapshot and checks, once per request, that it
is still current: the database's `reference_data_version` row (app/models/refdata.py), which
triggers rewrite in the same transaction as any change to those tables. The check costs no
round trip of its own for a signed-in person: the session loader reads the version in the
query that loads the user (`version_column`, `saw_version`); anyone else's request reads it
with one small query. A snapshot found out of date is replaced before the request uses it, so
the request after an admin's change sees the change, in every worker. Never a wrong price:
the version is read before the tables, so a snapshot can only be newer than its version says
(then it is read again on the next request), never older.

Not here: cars (their status, branch and own rate are read with their availability, in the
same query) and settings (`settings()`, app/settings.py: the rate tables built from a
snapshot are kept per money settings, so a changed config is priced with at once).

`derived(key, build)` keeps values computed from a snapshot (the price engine's rate tables,
form classes with a field per extra) for as long as the snapshot lives.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType
from typing import Any, Callable, Mapping

from flask import Flask, current_app, g, has_app_context, has_request_context
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from .extensions import db
from .models import Branch, CarClass, DurationTier, Extra, OneWayFee, ReferenceDataVersion, Season

EXTENSION = "acme_refdata"
_NOT_SEEN = object()
REFERENCE_MODELS = (Branch, CarClass, DurationTier, Season, Extra, OneWayFee)


@dataclass(frozen=True)
class BranchRef:
    id: int
    code: str
    name: str
    address_line1: str
    town: str
    postcode: str
    phone: str
    timezone: str
    opening_hours: Mapping[str, Any]  # read-only: {"mon": ["08:00", "18:00"], ..., "sun": None}


@dataclass(frozen=True)
class CarClassRef:
    id: int
    code: str
    name: str
    description: str
    daily_rate_pence: int
    deposit_pence: int
    mileage_allowance_per_day: int


@dataclass(frozen=True)
class ExtraRef:
    id: int
    code: str
    name: str
    description: str
    per_day_pence: int
    cap_pence: int | None
    max_quantity: int
    group: str
    sort_order: int


@dataclass(frozen=True)
class TierRef:
    min_days: int
    percent_off: int


@dataclass(frozen=True)
class SeasonRef:
    code: str
    name: str
    starts_on: date
    ends_on: date
    percent: int


@dataclass(frozen=True, eq=False)
class Reference:
    """One consistent copy of the reference data, as of `version`."""

    version: int | None
    branches: tuple[BranchRef, ...]  # by name
    classes: tuple[CarClassRef, ...]  # by daily rate
    extras: tuple[ExtraRef, ...]  # the active ones, in the order customers see them
    tiers: tuple[TierRef, ...]  # by min_days
    seasons: tuple[SeasonRef, ...]  # by starts_on, code
    one_way_fees: Mapping[tuple[int, int], int]  # (from branch id, to branch id) -> pence
    _branches: Mapping[int, BranchRef] = field(default_factory=dict, repr=False)
    _classes: Mapping[int, CarClassRef] = field(default_factory=dict, repr=False)
    _derived: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def branch(self, branch_id: int | None) -> BranchRef | None:
        return self._branches.get(branch_id) if branch_id is not None else None

    def car_class(self, class_id: int) -> CarClassRef | None:
        return self._classes.get(class_id)

    def derived(self, key, build: Callable[[], Any]) -> Any:
        """`build()`'s value, computed once for this snapshot (thread-safe)."""
        try:
            return self._derived[key]
        except KeyError:
            pass
        with self._lock:
            if key not in self._derived:
                self._derived[key] = build()
            return self._derived[key]


def car_class_ref(c: CarClass) -> CarClassRef:
    return CarClassRef(c.id, c.code, c.name, c.description, c.daily_rate_pence, c.deposit_pence,
                       c.mileage_allowance_per_day)


def read(version: int | None) -> Reference:
    """Read every reference table now (after `version` was read)."""
    s = db.session
    branches = tuple(BranchRef(b.id, b.code, b.name, b.address_line1, b.town, b.postcode, b.phone,
                               b.timezone, MappingProxyType(dict(b.opening_hours or {})))
                     for b in s.scalars(select(Branch).order_by(Branch.name, Branch.id)))
    classes = tuple(car_class_ref(c) for c in s.scalars(
        select(CarClass).order_by(CarClass.daily_rate_pence, CarClass.id)))
    extras = tuple(ExtraRef(e.id, e.code, e.name, e.description, e.per_day_pence, e.cap_pence,
                            e.max_quantity, e.group, e.sort_order)
                   for e in s.scalars(select(Extra).where(Extra.active.is_(True))
                                      .order_by(Extra.sort_order, Extra.id)))
    tiers = tuple(TierRef(t.min_days, t.percent_off)
                  for t in s.scalars(select(DurationTier).order_by(DurationTier.min_days)))
    seasons = tuple(SeasonRef(x.code, x.name, x.starts_on, x.ends_on, x.percent)
                    for x in s.scalars(select(Season).order_by(Season.starts_on, Season.code)))
    fees = MappingProxyType({(f.from_branch_id, f.to_branch_id): f.fee_pence
                             for f in s.scalars(select(OneWayFee))})
    return Reference(version, branches, classes, extras, tiers, seasons, fees,
                     MappingProxyType({b.id: b for b in branches}),
                     MappingProxyType({c.id: c for c in classes}))


class ReferenceCache:
    """The app's (the worker's) current snapshot."""

    def __init__(self) -> None:
        self.snapshot: Reference | None = None
        self.loads = 0  # how many times the tables were read (tests and benchmarks look)
        self._lock = threading.Lock()

    def get(self, version: int | None) -> Reference:
        snapshot = self.snapshot
        if snapshot is not None and snapshot.version == version:
            return snapshot
        with self._lock:  # one thread reads the tables; the others wait for its copy
            snapshot = self.snapshot
            if snapshot is None or snapshot.version != version:
                snapshot = read(version)
                self.snapshot = snapshot
                self.loads += 1
            return snapshot


def version_column():
    """The current version, as a column to add to a query a request makes anyway."""
    return select(ReferenceDataVersion.version).where(ReferenceDataVersion.id == 1) \
        .scalar_subquery().label("reference_data_version")


def saw_version(version: int | None) -> None:
    """Note the version a query of this request read (see `version_column`)."""
    g._acme_refdata_version = version


def current() -> Reference:
    """This request's snapshot: checked against the database's version once per request
    (outside a request, a job or a command, at every call)."""
    in_request = has_request_context()
    snapshot = g.get("_acme_refdata") if in_request else None
    if snapshot is not None:
        return snapshot
    version = g.pop("_acme_refdata_version", _NOT_SEEN) if in_request else _NOT_SEEN
    if version is _NOT_SEEN:
        version = db.session.scalar(select(version_column()))
    snapshot = current_app.extensions[EXTENSION].get(version)
    if in_request:
        g._acme_refdata = snapshot
    return snapshot


def _forget_after_own_change(session, _flush_context) -> None:
    """A request (or test) that itself changes reference data reads the version again."""
    if not has_app_context():
        return
    if any(isinstance(obj, REFERENCE_MODELS)
           for obj in (*session.new, *session.dirty, *session.deleted)):
        g.pop("_acme_refdata", None)
        g.pop("_acme_refdata_version", None)


event.listen(Session, "after_flush", _forget_after_own_change)


def init_refdata(app: Flask) -> None:
    app.extensions[EXTENSION] = ReferenceCache()

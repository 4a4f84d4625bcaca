"""Admin reports: fleet utilisation, revenue, and what went wrong, per week or month.

Reports read `ReportFact` rows: one car's figures for one week or month, rolled up in SQL
from hires, payments and the counter's return inspections by `refresh`. A report over
years of a 2,000,000-hire history so adds up a few thousand rows and answers in well under
a second (bench/reports.py measures it); rolling up happens off the request: the periods
around today every REPORT_REFRESH_MINUTES (a job the reports page asks for when its
figures are older), and the whole history nightly (`flask admin refresh-reports`). A range
is checked (at most REPORT_MAX_RANGE_DAYS) before any job is queued for it; the jobs go to
their own queue (REPORTS_QUEUE_NAME), which workers take only when no customer's job waits,
and each attempt is stopped after REPORT_JOB_TIMEOUT_SECONDS.

Definitions (also shown on the page):
- Utilisation: the hours cars were booked (hires confirmed, active, returned or closed) as
  a share of the hours they were in the fleet (from being added until retired), per period.
  A hire spanning two periods counts in each for the part within it.
- Revenue: money taken for hires starting in the period, by payment method and by car
  class: succeeded charges and captures, less succeeded refunds.
- Bookings, cancellations and no-shows: hires starting in the period, by final state.
- Late returns and damage charges: hires due back in the period, from the charges the
  counter froze at their return (a "late" line however it was settled; damage lines not
  waived).
Classes and branches are the cars' current ones.
"""

from __future__ import annotations

import csv
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Callable, Optional, Sequence
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import (ColumnElement, Integer, String, and_, case, cast, delete, func, insert,
                        literal, select, text, true, union_all)

from ..errors import FieldErrors
from ..extensions import db
from ..jobs import enqueue, task
from ..models import (Branch, Car, CarClass, Hire, HireState, Payment, ReportFact, ReportGroupFact,
                      ReportRefresh, utcnow)
from ..models.counter import Inspection
from ..models.types import UTCDateTime

BOOKED_STATES = tuple(s.value for s in (HireState.CONFIRMED, HireState.ACTIVE, HireState.RETURNED,
                                        HireState.CLOSED))
# Hires that were really booked (paid), whatever happened next; held and expired never were.
COUNTED_STATES = BOOKED_STATES + tuple(s.value for s in (
    HireState.CANCELLED, HireState.NO_SHOW, HireState.REFUSED_AT_PICKUP))
REVENUE_KINDS = ("charge", "capture", "refund")
METHODS = ("card", "crypto")
GROUPINGS = ("class", "branch", "car")
PERIOD_KINDS = ("week", "month")
REPORT_WORK_MEM = "32MB"
# The figures rolled up per car and period (ReportFact) and per class and branch.
FACT_COLUMNS = ("booked_seconds", "fleet_seconds", "bookings", "cancellations", "no_shows",
                "revenue_card_pence", "revenue_crypto_pence", "late_returns", "damage_charges",
                "damage_pence")
# Periods rolled up per statement when refreshing: bounds the work of each one.
REFRESH_CHUNK_PERIODS = 13


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


@dataclass
class Table:
    """A report table: a header row and rows of cells (first cell: the row's name)."""

    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    kind: str = "number"  # number | percent | money


@dataclass
class Report:
    periods: list[Period]
    grouping: str
    period_kind: str
    utilisation: Table
    utilisation_overall: Table
    revenue_by_method: Table
    revenue_by_class: Table
    outcomes: Table
    as_of: Optional[datetime] = None
    timings: dict[str, float] = field(default_factory=dict)
    cars_total: int = 0  # per car: how many cars there are (the table may show fewer)


# --- periods --------------------------------------------------------------------------------

def _zone() -> ZoneInfo:
    return ZoneInfo(current_app.config["DEFAULT_TIMEZONE"])


def local_today() -> date:
    return datetime.now(_zone()).date()


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
    zone = _zone()
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


# --- dialect-neutral SQL pieces ---------------------------------------------------------------

def _postgres() -> bool:
    return db.engine.dialect.name == "postgresql"


def _seconds(later: ColumnElement, earlier: ColumnElement) -> ColumnElement:
    if _postgres():
        return func.extract("epoch", later - earlier)
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def _least(a: ColumnElement, b: ColumnElement) -> ColumnElement:
    return func.least(a, b) if _postgres() else func.min(a, b)


def _greatest(a: ColumnElement, b: ColumnElement) -> ColumnElement:
    return func.greatest(a, b) if _postgres() else func.max(a, b)


def _buckets(chosen: Sequence[Period]):
    """The periods as a small derived table (idx, b_start, b_end) to join against."""
    rows = [select(literal(p.index, Integer).label("idx"),
                   literal(p.starts_at, UTCDateTime()).label("b_start"),
                   literal(p.ends_at, UTCDateTime()).label("b_end")) for p in chosen]
    return (union_all(*rows) if len(rows) > 1 else rows[0]).cte("buckets")


def _bounds(chosen: Sequence[Period]):
    """PostgreSQL: the period boundaries as one timestamptz array (n periods, n + 1 bounds)."""
    from sqlalchemy.dialects.postgresql import array
    return array([literal(p.starts_at, UTCDateTime()) for p in chosen]
                 + [literal(chosen[-1].ends_at, UTCDateTime())])


def _period_index(ts: ColumnElement, chosen: Sequence[Period]) -> ColumnElement:
    """The 0-based period a time (known to be within the range) falls in.

    PostgreSQL finds it by binary search over the boundaries (width_bucket); elsewhere a
    CASE over the periods does, which is plenty for the embedded database's data.
    """
    if _postgres():
        return func.width_bucket(ts, _bounds(chosen)) - 1
    if len(chosen) == 1:
        return literal(0, Integer)
    return case(*[(ts < literal(p.ends_at, UTCDateTime()), p.index) for p in chosen[:-1]],
                else_=chosen[-1].index)


def _group_column(grouping: str) -> ColumnElement:
    return {"class": Car.car_class_id, "branch": Car.home_branch_id, "car": Car.id}[grouping]


def _group_names(grouping: str) -> dict[int, str]:
    if grouping == "class":
        return dict(db.session.execute(select(CarClass.id, CarClass.name)).all())
    if grouping == "branch":
        return dict(db.session.execute(select(Branch.id, Branch.name)).all())
    from ..fleet.validators import format_plate
    return {i: f"{format_plate(p)} {m}" for i, p, m in
            db.session.execute(select(Car.id, Car.plate, Car.model)).all()}


# --- rolling up: per car and period, from hires, payments and return inspections -------------
# Each query reads the rows of interest once, in one range scan of a reports index (a
# materialised CTE for hires, so PostgreSQL does not re-scan the index for every period),
# and only then spreads them over the periods: by binary search over the boundaries on
# PostgreSQL, by a join or a CASE elsewhere.

def _window(chosen: Sequence[Period], by: str, *states: str):
    """The hires overlapping the range ("overlap"), starting in it ("start") or due back in
    it ("end")."""
    lo, hi = chosen[0].starts_at, chosen[-1].ends_at
    query = select(Hire.id, Hire.car_id, Hire.start_at, Hire.end_at, Hire.state)
    if by == "overlap":
        query = query.where(Hire.end_at > lo, Hire.start_at < hi)
    elif by == "start":
        query = query.where(Hire.start_at >= lo, Hire.start_at < hi)
    else:
        query = query.where(Hire.end_at >= lo, Hire.end_at < hi)
    if states:
        query = query.where(Hire.state.in_(states))
    return query.cte(f"hires_{by}").prefix_with("MATERIALIZED")


def _hired_seconds(chosen: Sequence[Period]) -> dict[tuple[int, int], float]:
    """(period, car) -> seconds the car was booked within the period."""
    h = _window(chosen, "overlap", *BOOKED_STATES)
    group = h.c.car_id
    if _postgres():
        # Each hire is spread over just the periods it touches (usually one or two): the
        # first and last found by binary search, the ones between by generate_series.
        lo, hi = chosen[0].starts_at, chosen[-1].ends_at
        bounds = _bounds(chosen)
        first = func.width_bucket(func.greatest(h.c.start_at, literal(lo, UTCDateTime())), bounds)
        last = func.width_bucket(func.least(h.c.end_at, literal(hi, UTCDateTime()))
                                 - text("interval '1 microsecond'"), bounds)
        k = func.generate_series(first, last).table_valued("k").render_derived("k")
        overlap = _seconds(func.least(h.c.end_at, bounds[k.c.k + 1]),
                           func.greatest(h.c.start_at, bounds[k.c.k]))
        query = (select(k.c.k - 1, group, func.sum(overlap))
                 .select_from(h).join(k, true())
                 .group_by(k.c.k, group))
    else:
        b = _buckets(chosen)
        overlap = _seconds(_least(h.c.end_at, b.c.b_end), _greatest(h.c.start_at, b.c.b_start))
        query = (select(b.c.idx, group, func.sum(overlap))
                 .select_from(h)
                 .join(b, and_(h.c.start_at < b.c.b_end, h.c.end_at > b.c.b_start))
                 .group_by(b.c.idx, group))
    return {(i, g): float(s or 0) for i, g, s in db.session.execute(query)}


def _fleet_seconds(chosen: Sequence[Period], grouping: str) -> dict[tuple[int, int], float]:
    """(period, group) -> seconds cars were in the fleet within the period."""
    b = _buckets(chosen)
    group = _group_column(grouping)
    until = _least(func.coalesce(Car.retired_at, b.c.b_end), b.c.b_end)
    query = (select(b.c.idx, group, func.sum(_seconds(until, _greatest(Car.created_at, b.c.b_start))))
             .select_from(Car)
             .join(b, and_(Car.created_at < b.c.b_end,
                           (Car.retired_at.is_(None)) | (Car.retired_at > b.c.b_start)))
             .group_by(b.c.idx, group))
    return {(i, g): float(s or 0) for i, g, s in db.session.execute(query)}


def _revenue(chosen: Sequence[Period]) -> dict[tuple[int, int], tuple[int, int]]:
    """(period, car) -> (card pence, crypto pence) for hires starting in each period."""
    h = _window(chosen, "start")
    money = (select(Payment.hire_id, Payment.method, Payment.kind, Payment.amount_pence)
             .where(Payment.state == "succeeded", Payment.kind.in_(REVENUE_KINDS)))
    if _postgres():
        # For each hire its few payments, by the hire_id index: far less than a pass over
        # every payment ever taken. (OFFSET 0 keeps the planner from flattening the lateral
        # subquery back into a join that scans them all.)
        p = money.where(Payment.hire_id == h.c.id).offset(0).lateral("p")
        on = true()
    else:
        p = money.subquery("p")
        on = p.c.hire_id == h.c.id
    signed = case((p.c.kind == "refund", -p.c.amount_pence), else_=p.c.amount_pence)
    query = (select(_period_index(h.c.start_at, chosen).label("period"), h.c.car_id,
                    func.sum(case((p.c.method == "card", signed), else_=0)),
                    func.sum(case((p.c.method == "crypto", signed), else_=0)))
             .select_from(h).join(p, on)
             .group_by(text("period"), h.c.car_id))
    return {(i, car): (int(card or 0), int(crypto or 0))
            for i, car, card, crypto in db.session.execute(query)}


def _bookings(chosen: Sequence[Period]) -> dict[tuple[int, int], tuple[int, int, int]]:
    """(period, car) -> (bookings, cancellations, no-shows) for hires starting in it."""
    h = _window(chosen, "start")

    def count_if(condition) -> ColumnElement:
        return func.sum(case((condition, 1), else_=0))

    query = (select(_period_index(h.c.start_at, chosen).label("period"), h.c.car_id,
                    count_if(h.c.state.in_(COUNTED_STATES)),
                    count_if(h.c.state == HireState.CANCELLED.value),
                    count_if(h.c.state == HireState.NO_SHOW.value))
             .group_by(text("period"), h.c.car_id))
    return {(i, car): (int(n or 0), int(c or 0), int(s or 0))
            for i, car, n, c, s in db.session.execute(query)}


def _return_charges(chosen: Sequence[Period]) -> dict[tuple[int, int], tuple[int, int, int]]:
    """(period, car) -> (late returns, damage charges, damage pence) for hires due back in it."""
    inspections = Inspection.__table__
    h = _window(chosen, "end", HireState.RETURNED.value, HireState.CLOSED.value)
    found = (select(inspections.c.hire_id, inspections.c.charge_lines)
             .where(inspections.c.kind == "return", inspections.c.completed_at.is_not(None)))
    if _postgres():
        # Each hire's return inspection by the hire_id index (OFFSET 0: see _revenue).
        found = found.where(inspections.c.hire_id == h.c.id).offset(0).lateral("found")
        on = true()
        line = func.json_array_elements(found.c.charge_lines).table_valued("value").alias("line")

        def item(key: str) -> ColumnElement:
            return line.c.value.op("->>")(key)
    else:
        found = found.subquery("found")
        on = found.c.hire_id == h.c.id
        line = func.json_each(found.c.charge_lines).table_valued("value").alias("line")

        def item(key: str) -> ColumnElement:
            return func.json_extract(line.c.value, f"$.{key}")

    code = cast(item("code"), String)
    waived = func.coalesce(cast(item("waived_reason"), String), "")
    amount = cast(item("amount_pence"), Integer)
    damage = and_(code.like("damage%"), waived == "")
    query = (select(_period_index(h.c.end_at, chosen).label("period"), h.c.car_id,
                    func.count(func.distinct(case((code == "late", h.c.id)))),
                    func.sum(case((damage, 1), else_=0)),
                    func.sum(case((damage, amount), else_=0)))
             .select_from(h).join(found, on).join(line, true())
             .group_by(text("period"), h.c.car_id))
    return {(i, car): (int(late or 0), int(n or 0), int(p or 0))
            for i, car, late, n, p in db.session.execute(query)}


# --- refreshing the rolled-up figures --------------------------------------------------------

def _tune_transaction() -> None:
    if _postgres():
        # These queries look expensive to the planner but are range scans of small parts of
        # big tables: compiling them to machine code (JIT) first costs more than it saves,
        # and their sorts fit in a little more memory than the default.
        db.session.execute(text("SET LOCAL jit = off"))
        db.session.execute(text(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'"))


def _run_all(queries: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """Run independent queries: side by side on PostgreSQL (one connection each), one after
    another elsewhere."""
    if not _postgres():
        return {name: fn() for name, fn in queries.items()}
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    def in_own_session(fn: Callable[[], Any]) -> Any:
        with app.app_context():
            try:
                _tune_transaction()
                return fn()
            finally:
                db.session.remove()

    with ThreadPoolExecutor(max_workers=len(queries), thread_name_prefix="report") as pool:
        futures = {name: pool.submit(in_own_session, fn) for name, fn in queries.items()}
        return {name: future.result() for name, future in futures.items()}


def _facts_for(chosen: Sequence[Period], kind: str) -> list[dict[str, Any]]:
    """The ReportFact rows for these periods, computed from the source tables."""
    results = _run_all({
        "fleet": lambda: _fleet_seconds(chosen, "car"),
        "hired": lambda: _hired_seconds(chosen),
        "revenue": lambda: _revenue(chosen),
        "bookings": lambda: _bookings(chosen),
        "returns": lambda: _return_charges(chosen),
    })
    keys = set().union(*(r.keys() for r in results.values()))
    rows = []
    for index, car_id in sorted(keys):
        card, crypto = results["revenue"].get((index, car_id), (0, 0))
        booked, cancelled, no_show = results["bookings"].get((index, car_id), (0, 0, 0))
        late, damages, damage_pence = results["returns"].get((index, car_id), (0, 0, 0))
        rows.append(dict(
            period_kind=kind, period_start=chosen[index].first_day, car_id=car_id,
            booked_seconds=round(results["hired"].get((index, car_id), 0.0)),
            fleet_seconds=round(results["fleet"].get((index, car_id), 0.0)),
            bookings=booked, cancellations=cancelled, no_shows=no_show,
            revenue_card_pence=card, revenue_crypto_pence=crypto,
            late_returns=late, damage_charges=damages, damage_pence=damage_pence))
    return rows


def _group_rows(rows: list[dict[str, Any]], cars: dict[int, tuple[int, int]]) -> list[dict[str, Any]]:
    """The per-car rows added up per period, class and branch (classes as they are now)."""
    totals: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        class_id, branch_id = cars[row["car_id"]]
        key = (row["period_kind"], row["period_start"], class_id, branch_id)
        total = totals.get(key)
        if total is None:
            totals[key] = total = dict(period_kind=key[0], period_start=key[1], car_class_id=class_id,
                                       branch_id=branch_id, **{c: 0 for c in FACT_COLUMNS})
        for column in FACT_COLUMNS:
            total[column] += row[column]
    return list(totals.values())


def refresh(date_from: date, date_to: date, *, now: datetime) -> int:
    """Roll the figures up again for every week and month touching the two dates. Commits.

    Idempotent: each chunk of periods is replaced whole, in one transaction.
    """
    log = ReportRefresh(date_from=date_from, date_to=date_to, started_at=now)
    cars = {car_id: (class_id, branch_id) for car_id, class_id, branch_id in
            db.session.execute(select(Car.id, Car.car_class_id, Car.home_branch_id))}
    written = 0
    for kind in PERIOD_KINDS:
        chosen = periods(date_from, date_to, kind, limit=None)
        for first in range(0, len(chosen), REFRESH_CHUNK_PERIODS):
            chunk = [Period(i, p.label, p.starts_at, p.ends_at) for i, p in
                     enumerate(chosen[first:first + REFRESH_CHUNK_PERIODS])]
            rows = _facts_for(chunk, kind)
            groups = _group_rows(rows, cars)
            starts = [p.first_day for p in chunk]
            for model in (ReportFact, ReportGroupFact):
                db.session.execute(delete(model).where(model.period_kind == kind,
                                                       model.period_start.in_(starts)))
            if rows:
                db.session.execute(insert(ReportFact), rows)
                db.session.execute(insert(ReportGroupFact), groups)
            db.session.commit()
            written += len(rows)
    log.finished_at = utcnow()
    log.facts = written
    db.session.add(log)
    db.session.commit()
    return written


def recent_range(today: date) -> tuple[date, date]:
    """The dates whose figures still change often: refreshed every REPORT_REFRESH_MINUTES."""
    cfg = current_app.config
    return (today - timedelta(days=cfg["REPORT_REFRESH_DAYS_BACK"]),
            today + timedelta(days=cfg["REPORT_REFRESH_DAYS_AHEAD"]))


def history_range(today: date) -> tuple[date, date]:
    """From the first hire to the furthest booking: what the nightly refresh covers."""
    first = db.session.scalar(select(func.min(Hire.start_at)))
    last = db.session.scalar(select(func.max(Hire.end_at)))
    start = first.astimezone(_zone()).date() if first else today
    end = max(last.astimezone(_zone()).date() if last else today, today)
    return start, end


@task
def refresh_task(date_from: str, date_to: str) -> None:
    """Background job: roll up the figures for the periods touching these ISO dates."""
    refresh(date.fromisoformat(date_from), date.fromisoformat(date_to), now=utcnow())


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


# --- the report (from the rolled-up figures) -----------------------------------------------

def _percent(part: float, whole: float) -> Optional[float]:
    return round(100.0 * part / whole, 1) if whole > 0 else None


def _fact_sums(chosen: Sequence[Period], kind: str, grouping: str) -> dict[tuple[int, int], list[int]]:
    """(period, class or branch) -> the FACT_COLUMNS summed, from the per-group figures."""
    group = ReportGroupFact.car_class_id if grouping == "class" else ReportGroupFact.branch_id
    starts = {p.first_day: p.index for p in chosen}
    query = (select(ReportGroupFact.period_start, group,
                    *[func.sum(getattr(ReportGroupFact, c)) for c in FACT_COLUMNS])
             .where(ReportGroupFact.period_kind == kind,
                    ReportGroupFact.period_start >= chosen[0].first_day,
                    ReportGroupFact.period_start <= chosen[-1].first_day)
             .group_by(ReportGroupFact.period_start, group))
    return {(starts[start], g): [int(v or 0) for v in values]
            for start, g, *values in db.session.execute(query) if start in starts}


def _car_utilisation(chosen: Sequence[Period], kind: str,
                     limit: Optional[int]) -> tuple[dict[int, list[tuple[int, int]]], int]:
    """car -> [(booked, fleet seconds) per period] for the `limit` least-used cars over the
    range (all if None), and how many cars there are, from the per-car figures."""
    in_range = and_(ReportFact.period_kind == kind,
                    ReportFact.period_start >= chosen[0].first_day,
                    ReportFact.period_start <= chosen[-1].first_day)
    booked, fleet = func.sum(ReportFact.booked_seconds), func.sum(ReportFact.fleet_seconds)
    ranked = (select(ReportFact.car_id, func.count().over().label("cars"))
              .where(in_range).group_by(ReportFact.car_id)
              .order_by(case((fleet == 0, 1), else_=0),
                        (booked * 1.0 / func.nullif(fleet, 0)), ReportFact.car_id))
    if limit is not None:
        ranked = ranked.limit(limit)
    # Core rows straight from the connection: thousands of them, no ORM work needed.
    connection = db.session.connection()
    chosen_cars = connection.execute(ranked).all()
    cars_total = chosen_cars[0].cars if chosen_cars else 0
    ids = [row.car_id for row in chosen_cars]
    starts = {p.first_day: p.index for p in chosen}
    query = (select(ReportFact.car_id, ReportFact.period_start, ReportFact.booked_seconds,
                    ReportFact.fleet_seconds).where(in_range))
    if limit is not None:
        query = query.where(ReportFact.car_id.in_(ids))
    out: dict[int, list[tuple[int, int]]] = {car_id: [(0, 0)] * len(chosen) for car_id in ids}
    for car_id, start, booked_s, fleet_s in connection.execute(query).all():
        values = out.get(car_id)
        if values is not None and start in starts:
            values[starts[start]] = (booked_s, fleet_s)
    return out, cars_total


def build(date_from: date, date_to: date, *, period_kind: str = "week",
          grouping: str = "class", as_of: Optional[datetime] = None,
          car_limit: Optional[int] = None, clock: Callable[[], float] | None = None) -> Report:
    """The whole report for the range, from the rolled-up figures.

    Per car, `car_limit` keeps the least-used cars only (what a page shows; the CSV has all).
    `clock` (e.g. time.perf_counter) records how long the reads took.
    """
    if period_kind not in PERIOD_KINDS:
        raise ReportError({"period": "Choose week or month."})
    if grouping not in GROUPINGS:
        raise ReportError({"by": "Choose class, branch or car."})
    chosen = periods(date_from, date_to, period_kind)
    labels = [p.label for p in chosen]
    n = len(chosen)
    timings: dict[str, float] = {}
    started = clock() if clock else 0.0
    class_sums = _fact_sums(chosen, period_kind, "class")
    sums = class_sums if grouping != "branch" else _fact_sums(chosen, period_kind, "branch")
    cars, cars_total = (_car_utilisation(chosen, period_kind, car_limit) if grouping == "car"
                        else ({}, 0))
    if clock:
        timings["queries"] = clock() - started

    col = {c: i for i, c in enumerate(FACT_COLUMNS)}
    # One pass: per group and per period, and per period for everything.
    by_group: dict[int, list[list[int]]] = {}
    per_period = [[0] * len(FACT_COLUMNS) for _ in range(n)]
    for (index, g), values in sums.items():
        by_group.setdefault(g, [[0] * len(FACT_COLUMNS) for _ in range(n)])[index] = values
        totals = per_period[index]
        for k, v in enumerate(values):
            totals[k] += v

    def series(rows: list[list[int]], column: str) -> list[int]:
        return [row[col[column]] for row in rows]

    names = _group_names(grouping)
    utilisation = Table("Utilisation (% of fleet hours booked)", ["", *labels, "Whole range"],
                        kind="percent")
    if grouping == "car":
        # Least used first (the order the database chose them in).
        lines = [(names.get(car_id, f"#{car_id}"), [b for b, _ in values], [f for _, f in values])
                 for car_id, values in cars.items()]
    else:
        lines = sorted(((names.get(g, f"#{g}"), series(rows, "booked_seconds"),
                         series(rows, "fleet_seconds")) for g, rows in by_group.items()),
                       key=lambda line: line[0])
    for name, hired, fleet in lines:
        utilisation.rows.append([name, *[_percent(h, f) for h, f in zip(hired, fleet)],
                                 _percent(sum(hired), sum(fleet))])
    overall = Table("Whole fleet", ["", *labels, "Whole range"], kind="percent")
    hired, fleet = series(per_period, "booked_seconds"), series(per_period, "fleet_seconds")
    overall.rows.append(["All cars", *[_percent(h, f) for h, f in zip(hired, fleet)],
                         _percent(sum(hired), sum(fleet))])

    by_method = Table("Revenue by payment method", ["", *labels, "Total"], kind="money")
    card, crypto = series(per_period, "revenue_card_pence"), series(per_period, "revenue_crypto_pence")
    for name, cells in (("Card", card), ("Crypto", crypto),
                        ("All methods", [a + b for a, b in zip(card, crypto)])):
        by_method.rows.append([name, *cells, sum(cells)])

    class_names = _group_names("class")
    by_class = Table("Revenue by class", ["", *labels, "Total"], kind="money")
    for class_id in sorted({c for _, c in class_sums}, key=lambda c: class_names.get(c, "")):
        cells = []
        for p in chosen:
            values = class_sums.get((p.index, class_id))
            cells.append(values[col["revenue_card_pence"]] + values[col["revenue_crypto_pence"]]
                         if values else 0)
        by_class.rows.append([class_names.get(class_id, f"#{class_id}"), *cells, sum(cells)])

    outcomes = Table("Bookings and what went wrong", ["", *labels, "Total"])
    for name, column in (("Bookings (hires starting)", "bookings"), ("Cancellations", "cancellations"),
                         ("No-shows", "no_shows"), ("Late returns", "late_returns"),
                         ("Damage charges (number)", "damage_charges"),
                         ("Damage charges (£)", "damage_pence")):
        cells = series(per_period, column)
        outcomes.rows.append([name, *cells, sum(cells)])

    return Report(chosen, grouping, period_kind, utilisation, overall, by_method, by_class,
                  outcomes, as_of, timings, cars_total)


# --- export -----------------------------------------------------------------------------------

SECTIONS = {
    "utilisation": lambda r: r.utilisation,
    "revenue-method": lambda r: r.revenue_by_method,
    "revenue-class": lambda r: r.revenue_by_class,
    "outcomes": lambda r: r.outcomes,
}


def _csv_value(value: Any, kind: str, row_name: str) -> str:
    if value is None:
        return ""
    if kind == "money" or row_name == "Damage charges (£)":
        return f"{value / 100:.2f}"
    return str(value)


def to_csv(table: Table) -> str:
    """A table as CSV (money in pounds with two decimals, percentages as numbers)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["name" if not c else c for c in table.columns])
    for row in table.rows:
        name = str(row[0])
        writer.writerow([("'" + name) if name.startswith(("=", "+", "-", "@")) else name,
                         *[_csv_value(v, table.kind, name) for v in row[1:]]])
    return buffer.getvalue()

"""The SQL roll-ups: per car and period, from hires, payments and the counter's return
inspections (see the definitions in `__init__.py`). Dialect-neutral pieces first (seconds
between times, least/greatest, the period a time falls in), so PostgreSQL and SQLite agree.
"""

from __future__ import annotations

from typing import Sequence

from sqlalchemy import (ColumnElement, Integer, String, and_, case, cast, func, literal, select,
                        text, true, union_all)

from ...extensions import db
from ...models import Branch, Car, CarClass, Hire, HireState, Payment
from ...models.counter import Inspection
from ...models.types import UTCDateTime
from .periods import Period


BOOKED_STATES = tuple(s.value for s in (HireState.CONFIRMED, HireState.ACTIVE, HireState.RETURNED,
                                        HireState.CLOSED))
# Hires that were really booked (paid), whatever happened next; held and expired never were.
COUNTED_STATES = BOOKED_STATES + tuple(s.value for s in (
    HireState.CANCELLED, HireState.NO_SHOW, HireState.REFUSED_AT_PICKUP))
REVENUE_KINDS = ("charge", "capture", "refund")
METHODS = ("card", "crypto")
# The figures rolled up per car and period (ReportFact) and per class and branch.
FACT_COLUMNS = ("booked_seconds", "fleet_seconds", "bookings", "cancellations", "no_shows",
                "revenue_card_pence", "revenue_crypto_pence", "late_returns", "damage_charges",
                "damage_pence")


def on_postgres() -> bool:
    return db.engine.dialect.name == "postgresql"


def _seconds(later: ColumnElement, earlier: ColumnElement) -> ColumnElement:
    if on_postgres():
        return func.extract("epoch", later - earlier)
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def _least(a: ColumnElement, b: ColumnElement) -> ColumnElement:
    return func.least(a, b) if on_postgres() else func.min(a, b)


def _greatest(a: ColumnElement, b: ColumnElement) -> ColumnElement:
    return func.greatest(a, b) if on_postgres() else func.max(a, b)


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
    if on_postgres():
        return func.width_bucket(ts, _bounds(chosen)) - 1
    if len(chosen) == 1:
        return literal(0, Integer)
    return case(*[(ts < literal(p.ends_at, UTCDateTime()), p.index) for p in chosen[:-1]],
                else_=chosen[-1].index)


def _group_column(grouping: str) -> ColumnElement:
    return {"class": Car.car_class_id, "branch": Car.home_branch_id, "car": Car.id}[grouping]


def group_names(grouping: str) -> dict[int, str]:
    if grouping == "class":
        return dict(db.session.execute(select(CarClass.id, CarClass.name)).all())
    if grouping == "branch":
        return dict(db.session.execute(select(Branch.id, Branch.name)).all())
    from ...fleet.validators import format_plate
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


def rollup_hired_seconds(chosen: Sequence[Period]) -> dict[tuple[int, int], float]:
    """(period, car) -> seconds the car was booked within the period."""
    h = _window(chosen, "overlap", *BOOKED_STATES)
    group = h.c.car_id
    if on_postgres():
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


def rollup_fleet_seconds(chosen: Sequence[Period], grouping: str) -> dict[tuple[int, int], float]:
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


def rollup_revenue(chosen: Sequence[Period]) -> dict[tuple[int, int], tuple[int, int]]:
    """(period, car) -> (card pence, crypto pence) for hires starting in each period."""
    h = _window(chosen, "start")
    money = (select(Payment.hire_id, Payment.method, Payment.kind, Payment.amount_pence)
             .where(Payment.state == "succeeded", Payment.kind.in_(REVENUE_KINDS)))
    if on_postgres():
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


def rollup_bookings(chosen: Sequence[Period]) -> dict[tuple[int, int], tuple[int, int, int]]:
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


def rollup_return_charges(chosen: Sequence[Period]) -> dict[tuple[int, int], tuple[int, int, int]]:
    """(period, car) -> (late returns, damage charges, damage pence) for hires due back in it."""
    inspections = Inspection.__table__
    h = _window(chosen, "end", HireState.RETURNED.value, HireState.CLOSED.value)
    found = (select(inspections.c.hire_id, inspections.c.charge_lines)
             .where(inspections.c.kind == "return", inspections.c.completed_at.is_not(None)))
    if on_postgres():
        # Each hire's return inspection by the hire_id index (OFFSET 0: see rollup_revenue).
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

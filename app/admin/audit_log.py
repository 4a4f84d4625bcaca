"""Reading the audit log: filter by person, hire, car, action and date; page it; export CSV."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Iterator, Optional
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import Select, String, and_, cast, func, or_, select
from sqlalchemy.orm import joinedload

from ..extensions import db
from ..fleet.validators import normalise_plate
from ..hire_access import hire_by_reference
from ..models import AuditRecord, Car, Hire, User

CSV_HEADER = ["at (UTC)", "person", "email", "action", "object type", "object id", "old", "new",
              "request id"]
# Spreadsheets run cells starting with these as formulas ("CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class AuditFilters:
    person: str = ""
    hire: str = ""
    car: str = ""
    action: str = ""
    date_from: Optional[date] = None
    date_to: Optional[date] = None
    page: int = 1


@dataclass
class AuditPage:
    records: list[AuditRecord]
    total: int
    page: int
    pages: int
    unknown: list[str]  # filters that named nothing (a plate or hire that does not exist)


def actions() -> list[str]:
    return list(db.session.scalars(select(AuditRecord.action).distinct().order_by(AuditRecord.action)))


def _local_midnight(day: date) -> datetime:
    zone = ZoneInfo(current_app.config["DEFAULT_TIMEZONE"])
    return datetime.combine(day, time(0), tzinfo=zone)


def _query(filters: AuditFilters) -> tuple[Select, list[str]]:
    query = select(AuditRecord)
    unknown: list[str] = []
    if filters.person:
        needle = filters.person.lower()
        people = select(User.id).where(or_(func.lower(User.email).contains(needle, autoescape=True),
                                           func.lower(User.full_name).contains(needle, autoescape=True)))
        query = query.where(AuditRecord.actor_id.in_(people))
    if filters.hire:
        found = hire_by_reference(filters.hire)
        hire_id = found.id if found is not None else None
        if hire_id is None:
            unknown.append(f"no hire {filters.hire.upper()}")
        query = query.where(AuditRecord.object_type == "hire",
                            AuditRecord.object_id == str(hire_id or 0))
    if filters.car:
        car_id = db.session.scalar(select(Car.id).where(Car.plate == normalise_plate(filters.car)))
        if car_id is None:
            unknown.append(f"no car {normalise_plate(filters.car)}")
        # Records about the car itself, and about the hires it is (now) booked for.
        hires = select(cast(Hire.id, String)).where(Hire.car_id == (car_id or 0))
        query = query.where(or_(
            and_(AuditRecord.object_type == "car", AuditRecord.object_id == str(car_id or 0)),
            and_(AuditRecord.object_type == "hire", AuditRecord.object_id.in_(hires))))
    if filters.action:
        query = query.where(AuditRecord.action == filters.action)
    if filters.date_from:
        query = query.where(AuditRecord.at >= _local_midnight(filters.date_from))
    if filters.date_to:
        query = query.where(AuditRecord.at < _local_midnight(filters.date_to + timedelta(days=1)))
    return query, unknown


def search(filters: AuditFilters) -> AuditPage:
    """One page of matching records, newest first."""
    size = current_app.config["AUDIT_PAGE_SIZE"]
    query, unknown = _query(filters)
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    pages = max(1, -(-total // size))
    page = min(max(1, filters.page), pages)
    records = db.session.scalars(
        query.options(joinedload(AuditRecord.actor))
        .order_by(AuditRecord.at.desc(), AuditRecord.id.desc())
        .offset((page - 1) * size).limit(size)).all()
    return AuditPage(list(records), total, page, pages, unknown)


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _json(value: dict) -> str:
    import json
    return json.dumps(value or {}, sort_keys=True, ensure_ascii=False, default=str)


def csv_rows(filters: AuditFilters, *, batch: int = 1000) -> Iterator[str]:
    """Every matching record as CSV text, oldest first, read from the database in batches."""
    query, _ = _query(filters)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_HEADER)
    yield buffer.getvalue()
    last_id = 0
    while True:
        chunk = db.session.scalars(
            query.options(joinedload(AuditRecord.actor)).where(AuditRecord.id > last_id)
            .order_by(AuditRecord.id).limit(batch)).all()
        if not chunk:
            return
        buffer.seek(0)
        buffer.truncate()
        for r in chunk:
            writer.writerow([_cell(v) for v in (
                r.at.isoformat(), r.actor.full_name if r.actor else "system",
                r.actor.email if r.actor else "", r.action, r.object_type, r.object_id,
                _json(r.old), _json(r.new), r.request_id)])
        yield buffer.getvalue()
        last_id = chunk[-1].id

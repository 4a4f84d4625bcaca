"""Write audit records: who changed what, from what, to what.

Every staff action that changes money or a car's state calls `record(...)` in the same
transaction as the change, so the record and the change are committed (or rolled back)
together. `record` never commits.

    from app.audit import record
    record(current_user, "car.retired", car, {"status": "available"}, {"status": "retired"})
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Optional

from flask import g, has_app_context

from .extensions import db
from .models import AuditRecord, User, utcnow


def _plain(value: Any) -> Any:
    """Make a value JSON-safe: times as ISO strings, enums by value, containers recursively."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    return value


def object_ref(obj: Any) -> tuple[str, str]:
    """(type, id) naming what a record is about: a model instance or an explicit pair.

    A model instance is named by its table in the singular ("cars" -> "car"), so the
    viewer can filter on "car"/"hire"/"user"; it must have an id (flush it first).
    """
    if isinstance(obj, tuple):
        kind, ident = obj
        return str(kind), str(ident)
    table = getattr(obj, "__tablename__", None)
    if table is None:
        raise TypeError(f"cannot audit {obj!r}: pass a model instance or (type, id)")
    ident = getattr(obj, "id", None)
    if ident is None:
        db.session.flush()
        ident = getattr(obj, "id", None)
    kind = {"car_classes": "car_class", "branches": "branch"}.get(table, table.removesuffix("s"))
    return kind, str(ident)


def record(actor: Optional[User], action: str, obj: Any, old: Optional[dict] = None,
           new: Optional[dict] = None, *, at: Optional[datetime] = None) -> AuditRecord:
    """Add an audit record to the session (the caller commits it with the change).

    `actor` is the signed-in person (None for the system), `action` a dotted name such as
    "car.retired", `obj` the model instance (or a ("type", id) pair) it is about, `old` and
    `new` the changed fields before and after. The request id comes from `flask.g` when
    there is a request, tying the record to the request's log lines.
    """
    kind, ident = object_ref(obj)
    request_id = g.get("request_id", "") if has_app_context() else ""
    entry = AuditRecord(
        at=at or utcnow(),
        actor_id=getattr(actor, "id", None),
        action=action[:60],
        object_type=kind[:30],
        object_id=ident[:40],
        old=_plain(old or {}),
        new=_plain(new or {}),
        request_id=(request_id or "")[:40],
    )
    db.session.add(entry)
    return entry


def changes(before: dict, after: dict) -> tuple[dict, dict]:
    """Only the fields that differ, as (old, new): what `record` usually wants."""
    keys = [k for k in after if before.get(k) != after.get(k)]
    return {k: before.get(k) for k in keys}, {k: after[k] for k in keys}

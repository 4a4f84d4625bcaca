"""The offline counter (issue 20): what a tablet syncs, and the steps it sends later.

`sync_payload` gives the tablet today's and tomorrow's hires at its branch (what the board
shows) and the charge rules with their version, so it computes the return charges as
`charges.compute_charges` does (its copy: static/js/offline-charges.js).

`apply_steps` takes a batch of steps done offline, in the order they were done, each with
its idempotency key, and applies each through the same services the online forms call
(`inspections`). The answer to each key is kept (`OfflineStep`): sent again, it changes
nothing and answers the same. A step whose hire moved on meanwhile (settled by another
tablet, cancelled, changed since the tablet synced) is answered as a conflict carrying both
versions; the server's state is never overwritten. Steps that need the outside world
(licence re-check, hand-over, settlement) are refused: they wait for a connection.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any, Optional

from flask import current_app
from sqlalchemy import delete, select
from sqlalchemy.orm import selectinload
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..hire_access import hire_by_reference
from ..settings import settings
from ..filters import local_time
from ..logging_setup import log
from ..models import Car, Hire, Inspection, OfflineStep, User
from ..models.counter import PANEL_STATES
from ..plain_text import plain_text_error
from ..web import bounded_int
from . import charges as rules
from . import counter_board, inspections, pickup
from .car_return import day_rate_pence
from .errors import AlreadyProcessed, CounterError
from .inspections import PICKUP, RETURN

KEY_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
VERSIONED_STEPS = ("id_check", "condition", "signature")  # each moves the record's version on by one
SAFE_STEPS = {"id_check": (PICKUP,), "condition": (PICKUP, RETURN), "photo": (PICKUP, RETURN),
              "signature": (PICKUP,)}
NEEDS_CONNECTION = {
    "licence_check": "The licence re-check asks the licensing service: it waits for a connection.",
    "hand_over": "Handing over confirms the deposit hold on the customer's card: it waits for a connection.",
    "refuse": "Refusing refunds the customer: it waits for a connection.",
    "settle": "Settling moves the deposit and the charges: it waits for a connection.",
}
DATA_URL = re.compile(r"^data:image/(png|jpeg|webp);base64,")
APPLIED, CONFLICT, REFUSED = "applied", "conflict", "refused"
RETRY = "retry"  # never kept: the step stays in the tablet's queue


class BatchError(ValueError):
    """The batch itself is not one the tablet sends (not a list of steps, too many)."""


def rules_payload() -> dict[str, Any]:
    """The charge rules the tablet applies: the amounts from the settings and the code's
    revision, with a version that changes when either does."""
    rates = asdict(rules.Rates.from_settings(settings().money))
    digest = hashlib.sha256(json.dumps(rates, sort_keys=True).encode()).hexdigest()[:12]
    return {"revision": rules.RULES_REVISION, "version": f"{rules.RULES_REVISION}-{digest}",
            "rates": rates, "eighths_in_tank": rules.EIGHTHS_IN_TANK}


def _iso(value: Optional[datetime]) -> Optional[str]:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def inspection_snapshot(insp: Optional[Inspection]) -> Optional[dict[str, Any]]:
    """What the server holds for a pickup or return (the tablet's starting point, and the
    server's side of a conflict)."""
    if insp is None:
        return None
    return {
        "version": insp.version, "id_checked": insp.id_checked_at is not None,
        "odometer": insp.odometer_miles, "fuel_eighths": insp.fuel_eighths, "checklist": insp.checklist,
        "needs_cleaning": insp.needs_cleaning, "condition_recorded_at": _iso(insp.condition_recorded_at),
        "signed": insp.signed_at is not None, "photos": [p.panel for p in insp.photos],
        "damages": insp.damages, "waivers": insp.waivers,
        "completed_by": insp.completed_by.full_name if insp.completed_by else None,
        "completed_at": _iso(insp.completed_at),
        "completed_at_local": local_time(insp.completed_at, fmt="%H:%M") if insp.completed_at else None,
        "total_pence": insp.total_pence,
    }


def hire_payload(hire: Hire) -> dict[str, Any]:
    kind = RETURN if hire.state == "active" else PICKUP
    insp = inspections.inspection(hire, kind)
    out = inspections.inspection(hire, PICKUP) if kind == RETURN else None
    data = {
        "reference": hire.reference, "kind": kind, "state": hire.state,
        "customer": hire.customer.full_name, "car": f"{hire.car.make} {hire.car.model}", "plate": hire.car.plate,
        "start_at": _iso(hire.start_at), "end_at": _iso(hire.end_at),
        "start_local": local_time(hire.start_at, fmt="%a %H:%M"), "end_local": local_time(hire.end_at, fmt="%a %H:%M"),
        "day_rate_pence": day_rate_pence(hire),
        "miles_allowed_per_day": hire.car.car_class.mileage_allowance_per_day,
        "car_odometer": hire.car.odometer_miles,
        "inspection": inspection_snapshot(insp),
        "out": {"odometer": out.odometer_miles, "fuel_eighths": out.fuel_eighths} if out else None,
    }
    if kind == PICKUP:
        data["licence_ok"], data["licence_message"] = pickup.licence_ok(hire)
    return data


def sync_payload(*, branch_id: Optional[int], now: datetime) -> dict[str, Any]:
    """Today's and tomorrow's pickups and returns (and overdue returns) at the branch, with
    the charge rules: everything the tablet needs to work offline."""
    board = counter_board.board(branch_id=branch_id, now=now)
    # The board lists plain values (issue 19); the tablet needs each hire whole.
    ids = [h.id for h in (*board.overdue, *board.returns, *board.pickups)]
    whole = {h.id: h for h in db.session.scalars(
        select(Hire).where(Hire.id.in_(ids)).options(  # car, class and customer in 2 queries, not per hire
            selectinload(Hire.car).selectinload(Car.car_class), selectinload(Hire.customer)))} if ids else {}
    cfg = current_app.config
    return {
        "synced_at": _iso(now), "synced_at_local": local_time(now, fmt="%H:%M"),
        "rules": rules_payload(), "panels": list(settings().counter.condition_panels), "panel_states": list(PANEL_STATES),
        "photo": {"max_side": cfg["OFFLINE_PHOTO_MAX_SIDE"], "quality": cfg["OFFLINE_PHOTO_JPEG_QUALITY"]},
        "sync_seconds": cfg["OFFLINE_SYNC_SECONDS"], "batch_max_steps": cfg["OFFLINE_BATCH_MAX_STEPS"],
        "request_timeout_seconds": cfg["OFFLINE_REQUEST_TIMEOUT_SECONDS"],
        "hires": [hire_payload(whole[i]) for i in ids],
    }


def apply_steps(steps: Any, *, by: User, now: datetime) -> list[dict[str, Any]]:
    """Apply a batch in order; one answer per step (see the module's docstring)."""
    if not isinstance(steps, list) or not steps:
        raise BatchError("Send the steps as a list.")
    if len(steps) > current_app.config["OFFLINE_BATCH_MAX_STEPS"]:
        raise BatchError(f"Send at most {current_app.config['OFFLINE_BATCH_MAX_STEPS']} steps at a time.")
    # The versions this batch's steps moved each record on (applied now or earlier: a step
    # sent again answers as before), so the steps after them are checked against the record
    # as those steps left it.
    moved: dict[tuple[str, str], dict[int, int]] = {}
    answers: list[dict[str, Any]] = []
    for raw in steps:
        if answers and answers[-1]["outcome"] == RETRY:  # in order: the rest waits for it
            key = raw.get("key") if isinstance(raw, dict) else ""
            answers.append(_answer(str(key)[:64], RETRY, "Waiting for the step before it."))
            continue
        answer = _apply_one(raw, by=by, now=now, moved=moved)
        before, after = answer.get("base_version"), answer.get("version")
        if answer["outcome"] == APPLIED and before is not None and after is not None and after != before:
            moved.setdefault((answer["hire"], str(raw.get("kind"))), {})[before] = after
        answers.append(answer)
    return answers


def _answer(key: str, outcome: str, message: str = "", **extra) -> dict[str, Any]:
    return {"key": key, "outcome": outcome, "message": message, **extra}


def _apply_one(raw: Any, *, by: User, now: datetime, moved: dict) -> dict[str, Any]:
    key = raw.get("key") if isinstance(raw, dict) else None
    if not isinstance(key, str) or not KEY_RE.match(key):
        return _answer(str(key)[:64] if key else "", REFUSED, "Each step needs its key (8 to 64 letters, "
                                                             "digits, - or _).")
    kept = db.session.scalar(select(OfflineStep).where(OfflineStep.key == key))
    if kept is not None:
        return kept.answer
    step, kind = (value if isinstance(value, str) else "" for value in (raw.get("step"), raw.get("kind")))
    reference = raw.get("hire") if isinstance(raw.get("hire"), str) else ""
    hire = hire_by_reference(reference) if reference and not plain_text_error(reference) else None
    tablet = _tablet_side(raw)
    if step in NEEDS_CONNECTION:
        return _keep(key, by, hire, str(step), _answer(key, REFUSED, NEEDS_CONNECTION[step]))
    if step not in SAFE_STEPS or kind not in SAFE_STEPS[step]:
        return _keep(key, by, hire, str(step)[:20], _answer(key, REFUSED, "This step cannot be done offline."))
    if hire is None:
        return _keep(key, by, None, step, _answer(key, REFUSED, "There is no such hire."))
    try:
        done_at = _done_at(raw.get("done_at"), now)
        data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
        base = raw.get("base_version")
        base = bounded_int(base) if base is not None else 1  # 1: opened, nothing recorded yet
    except (CounterError, ValueError) as exc:
        errors = exc.errors if isinstance(exc, CounterError) else {"": "The step's version is not a number."}
        return _keep(key, by, hire, step, _answer(key, REFUSED, "; ".join(errors.values()), errors=errors))
    chain = moved.get((hire.reference, kind), {})
    while base in chain:  # a step before it in this batch moved the version on (versions only grow)
        base = chain[base]
    insp = inspections.inspection(hire, kind)
    try:
        inspections.ensure_still_open(hire, kind, insp)
        if insp is None:
            insp = inspections.open_inspection(hire, kind, by=by, now=done_at)
        expected = base
        inspections.check_version(insp, expected)
        before = insp.version
        # The answer is committed with the step (both or neither), whole: a request sending
        # the same key at the same moment may read it before this one has finished.
        after = before + 1 if step in VERSIONED_STEPS else before
        row = OfflineStep(key=key, user_id=by.id, hire_id=hire.id, step=step, outcome=APPLIED, created_at=now,
                          answer=_answer(key, APPLIED, hire=hire.reference, version=after, base_version=before))
        db.session.add(row)
        _run(step, insp, data, by=by, done_at=done_at, version=expected)
    except IntegrityError as exc:  # another request for this key or this record won the race
        db.session.rollback()
        log().info("offline step lost a race", key=key, error=str(exc.orig).splitlines()[0])
        kept = db.session.scalar(select(OfflineStep).where(OfflineStep.key == key))
        # Not kept: nothing happened and the tablet keeps the step for its next try.
        return kept.answer if kept is not None else _answer(key, RETRY, "Busy: it is sent again shortly.")
    except AlreadyProcessed as exc:
        db.session.rollback()
        db.session.expire_all()
        server = {"state": hire.state, "inspection": inspection_snapshot(inspections.inspection(hire, kind))}
        return _keep(key, by, hire, step, _answer(key, CONFLICT, exc.errors.get("", str(exc)),
                                                   hire=hire.reference, server=server, tablet=tablet))
    except CounterError as exc:
        db.session.rollback()
        return _keep(key, by, hire, step, _answer(key, REFUSED, "; ".join(exc.errors.values()),
                                                   errors=exc.errors, hire=hire.reference, tablet=tablet))
    db.session.refresh(insp)
    if insp.version != after:  # not expected (one update per step), but the answer must be true
        row.answer = _answer(key, APPLIED, hire=hire.reference, version=insp.version, base_version=before)
        db.session.commit()
    return row.answer


def _keep(key: str, by: User, hire: Optional[Hire], step: str, answer: dict[str, Any]) -> dict[str, Any]:
    """Keep an answer that changed nothing, so the key answers the same next time."""
    db.session.add(OfflineStep(key=key, user_id=by.id, hire_id=hire.id if hire else None, step=step,
                               outcome=answer["outcome"], answer=answer))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        kept = db.session.scalar(select(OfflineStep).where(OfflineStep.key == key))
        return kept.answer if kept is not None else answer
    return answer


def _done_at(value: Any, now: datetime) -> datetime:
    """When staff did the step on the tablet (a return's time is what the late fee counts
    from): not in the future, not older than OFFLINE_STEP_MAX_AGE_HOURS."""
    try:
        done = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise CounterError({"done_at": "The step's time is missing."})
    if done.tzinfo is None:
        raise CounterError({"done_at": "The step's time has no time zone."})
    if done < now - timedelta(hours=settings().counter.offline_step_max_age_hours):
        raise CounterError({"done_at": "This step was done too long ago to be sent: do it again."})
    return min(done, now)


def _text(value: Any, field: str) -> str:
    text = value if isinstance(value, str) else ""
    error = plain_text_error(text)
    if error:
        raise CounterError({field: error})
    return text


def _run(step: str, insp: Inspection, data: dict, *, by: User, done_at: datetime, version: int) -> None:
    """Call the service the online form calls for this step."""
    if step == "id_check":
        inspections.tick_id_checked(insp, by=by, now=done_at, version=version)
    elif step == "condition":
        checklist_in = data.get("checklist") if isinstance(data.get("checklist"), dict) else {}
        checklist = {str(p)[:20]: {"state": _text(e.get("state"), f"panel_{p}"), "note": _text(e.get("note"), f"note_{p}")}
                     for p, e in checklist_in.items() if isinstance(e, dict)}
        try:
            odometer, fuel = bounded_int(data.get("odometer")), bounded_int(data.get("fuel_eighths"))
        except ValueError:
            raise CounterError({"odometer": "Enter the odometer and the fuel as whole numbers."})
        if odometer < 0:
            raise CounterError({"odometer": "The odometer cannot be below zero."})
        inspections.record_condition(insp, by=by, now=done_at, odometer=odometer, fuel_eighths=fuel,
                                     checklist=checklist, needs_cleaning=data.get("needs_cleaning") is True,
                                     version=version)
    elif step == "photo":
        inspections.add_photo(insp, panel=_text(data.get("panel"), "panel"),
                              data=_image(data.get("image"), "photo"), by=by, now=done_at)
    elif step == "signature":
        inspections.record_signature(insp, png=_image(data.get("image"), "signature"), by=by, now=done_at,
                                     version=version)


def _image(value: Any, field: str) -> bytes:
    match = DATA_URL.match(value) if isinstance(value, str) else None
    if match is None:
        raise CounterError({field: "The picture did not arrive; take it again."})
    try:
        return base64.b64decode(value[match.end():], validate=True)
    except (binascii.Error, ValueError):
        raise CounterError({field: "The picture did not arrive whole; take it again."})


def _tablet_side(raw: Any) -> dict[str, Any]:
    """The step as the tablet sent it, without its pictures (the tablet's side of a conflict)."""
    data = raw.get("data") if isinstance(raw, dict) and isinstance(raw.get("data"), dict) else {}
    shown = {k: v for k, v in data.items() if k != "image"}
    return {"step": str(raw.get("step"))[:20], "kind": str(raw.get("kind"))[:8],
            "done_at": str(raw.get("done_at"))[:40], "data": shown}


def keep_steps_until(now: datetime) -> datetime:
    """Answers kept before this moment may go: OFFLINE_STEP_KEEP_DAYS ago, and never less than
    OFFLINE_STEP_MAX_AGE_HOURS ago (a step still young enough to be sent keeps its answer)."""
    cfg = settings().counter
    return now - max(timedelta(days=cfg.offline_step_keep_days),
                     timedelta(hours=cfg.offline_step_max_age_hours))


def prune_offline_steps(now: datetime) -> int:
    """The tick's clean-up: delete the answers to offline steps kept longer than needed
    (`keep_steps_until`); returns how many went. Safe to run twice, or twice at once."""
    gone = db.session.execute(delete(OfflineStep).where(OfflineStep.created_at < keep_steps_until(now)))
    db.session.commit()
    if gone.rowcount:
        log().info("offline steps pruned", count=gone.rowcount)
    return gone.rowcount or 0

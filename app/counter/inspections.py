"""Inspections, the record of each pickup and return: opened per hire and kind, then filled
step by step (ID checked, condition and photos, the customer's signature). Each step is
committed when done, with the inspection's version checked, so a dropped tablet connection
loses nothing and two tablets cannot both finish a step.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Optional
from zoneinfo import ZoneInfo

from flask import current_app
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm.exc import StaleDataError

from ..audit import record
from ..extensions import db
from ..fleet import photos as photo_files
from ..models import Hire, HireState, Inspection, InspectionPhoto, User
from ..models.counter import PANEL_STATES
from ..settings import settings
from . import charges as rules
from .errors import AlreadyProcessed, CounterError

S = HireState


PICKUP, RETURN = "pickup", "return"
UPLOAD_SUBDIR = "inspections"
THUMB_SIDE = 320
NOT_A_SIGNATURE = "The signature did not arrive as a picture; please sign again."


def inspection(hire: Hire, kind: str) -> Inspection | None:
    return db.session.scalar(select(Inspection).where(Inspection.hire_id == hire.id,
                                                      Inspection.kind == kind))


@dataclass(frozen=True)
class Readings:
    """What the condition form starts with: the car's last recorded odometer and fuel."""

    odometer_miles: Optional[int]
    fuel_eighths: Optional[int]  # None: no level on record, staff must choose one


def starting_readings(hire: Hire, kind: str) -> Readings:
    """Pre-fill for the condition step that never costs the customer money if left as is.

    Out (pickup): the car's odometer and the fuel level its last return recorded (none on
    record: no level chosen, staff pick one). In (return): the readings the car left with, so
    an untouched form charges no miles and no fuel."""
    if kind == RETURN:
        out = inspection(hire, PICKUP)
        return Readings(out.odometer_miles if out else None, out.fuel_eighths if out else None)
    last_fuel = db.session.scalar(
        select(Inspection.fuel_eighths).join(Hire, Hire.id == Inspection.hire_id)
        .where(Hire.car_id == hire.car_id, Inspection.kind == RETURN,
               Inspection.fuel_eighths.is_not(None), Inspection.condition_recorded_at.is_not(None))
        .order_by(Inspection.condition_recorded_at.desc()).limit(1))
    return Readings(hire.car.odometer_miles, last_fuel)


def open_inspection(hire: Hire, kind: str, *, by: User, now: datetime) -> Inspection:
    """The pickup or return record for this hire, created on first use (resumable)."""
    needed = S.CONFIRMED if kind == PICKUP else S.ACTIVE
    found = inspection(hire, kind)
    if found is not None:
        return found
    if hire.hire_state != needed:
        raise CounterError(f"This hire is {hire.state.replace('_', ' ')}: "
                           f"it cannot be {'picked up' if kind == PICKUP else 'returned'}.")
    found = Inspection(hire_id=hire.id, kind=kind, started_by_id=by.id, started_at=now,
                       checklist={}, damages=[], waivers={}, charge_lines=[])
    db.session.add(found)
    record(by, f"{kind}.started", hire, {}, {"inspection": kind}, at=now)
    db.session.commit()
    return found


def check_version(insp: Inspection, version: Optional[int]) -> None:
    if version is not None and insp.version != version:
        who = insp.completed_by.full_name if insp.completed_by else "another member of staff"
        when = insp.completed_at or insp.started_at
        raise AlreadyProcessed(f"This was already updated by {who} at "
                               f"{when.astimezone(ZoneInfo(current_app.config['DEFAULT_TIMEZONE'])):%H:%M}. "
                               "The page now shows the latest state.")


def commit_step(insp: Inspection) -> None:
    try:
        db.session.commit()
    except StaleDataError:
        db.session.rollback()
        db.session.refresh(insp)
        check_version(insp, -1)


def tick_id_checked(insp: Inspection, *, by: User, now: datetime, version: Optional[int] = None) -> None:
    """Photo ID seen in person and matching the booking: who ticked it and when."""
    check_version(insp, version)
    insp.id_checked_by_id, insp.id_checked_at = by.id, now
    record(by, "pickup.id_checked", insp.hire, {}, {"id_checked": True}, at=now)
    commit_step(insp)


def record_condition(insp: Inspection, *, by: User, now: datetime, odometer: int, fuel_eighths: int,
                     checklist: dict[str, dict[str, str]], needs_cleaning: bool = False,
                     version: Optional[int] = None) -> None:
    """Odometer, fuel and the walk-around checklist (per panel: state and a note)."""
    check_version(insp, version)
    errors: dict[str, str] = {}
    panels = settings().counter.condition_panels
    for panel, entry in checklist.items():
        if panel not in panels or entry.get("state") not in PANEL_STATES:
            errors[f"panel_{panel}"] = "Choose ok, scratch, dent or other."
        elif entry.get("state") != "ok" and not entry.get("note", "").strip():
            errors[f"note_{panel}"] = "Describe what you see."
    if set(panels) - set(checklist):
        errors[""] = "Check every panel."
    if not 0 <= fuel_eighths <= rules.EIGHTHS_IN_TANK:
        errors["fuel_eighths"] = "Fuel is in eighths of a tank, 0 to 8."
    if insp.kind == RETURN:
        out = inspection(insp.hire, PICKUP)
        if out is not None and out.odometer_miles is not None and odometer < out.odometer_miles:
            errors["odometer"] = f"The car left with {out.odometer_miles} miles; the reading cannot be lower."
    elif odometer < insp.hire.car.odometer_miles:
        errors["odometer"] = f"The car's last reading was {insp.hire.car.odometer_miles} miles."
    if errors:
        raise CounterError(errors)
    old = {"odometer": insp.odometer_miles, "fuel": insp.fuel_eighths, "checklist": insp.checklist}
    insp.odometer_miles, insp.fuel_eighths = odometer, fuel_eighths
    insp.checklist = {p: {"state": e["state"], "note": e.get("note", "").strip()[:200]}
                      for p, e in checklist.items()}
    insp.needs_cleaning = needs_cleaning
    insp.condition_recorded_at = now
    record(by, f"{insp.kind}.condition", insp.hire, old,
           {"odometer": odometer, "fuel": fuel_eighths, "checklist": insp.checklist,
            "needs_cleaning": needs_cleaning}, at=now)
    commit_step(insp)


def _store(data: bytes, *, max_side: int, max_bytes: int) -> tuple[str, str]:
    """Clean (EXIF stripped, re-encoded) and store under the content hash; (filename, type)."""
    cfg = current_app.config
    clean, fmt, _w, _h = photo_files.process(data, max_bytes=max_bytes, max_pixels=cfg["CAR_PHOTO_MAX_PIXELS"],
                                             max_side=max_side)
    content_type, ext, _ = photo_files.FORMATS[fmt]
    filename = photo_files.write_content_addressed(upload_dir(), clean, ext)
    return filename, content_type


def upload_dir() -> Path:
    return Path(current_app.config["UPLOAD_DIR"]) / UPLOAD_SUBDIR


def add_photo(insp: Inspection, *, panel: str, data: bytes, by: User, now: datetime) -> InspectionPhoto:
    """A tablet photo of one panel: checked, EXIF stripped, stored by content hash, thumbnailed."""
    if panel not in settings().counter.condition_panels:
        raise CounterError({"panel": "Choose which part of the car the photo shows."})
    try:
        filename, content_type = _store(data, max_side=current_app.config["CAR_PHOTO_MAX_SIDE"],
                                        max_bytes=settings().counter.photo_max_bytes)
        thumb, _ = _store(data, max_side=THUMB_SIDE, max_bytes=settings().counter.photo_max_bytes)
    except photo_files.PhotoError as exc:
        raise CounterError({"photo": str(exc)})
    photo = InspectionPhoto(inspection_id=insp.id, panel=panel, filename=filename, thumb_filename=thumb,
                            content_type=content_type, taken_by_id=by.id, created_at=now)
    db.session.add(photo)
    record(by, f"{insp.kind}.photo", insp.hire, {}, {"panel": panel, "file": filename}, at=now)
    db.session.commit()
    return photo


def record_signature(insp: Inspection, *, png: bytes, by: User, now: datetime,
                     version: Optional[int] = None) -> None:
    """The customer's signature drawn on the tablet (a PNG from the canvas).

    Checked and re-encoded as car photos are (app/fleet/photos.py), within the far smaller
    bounds a signature box needs: only its pixels are kept, as a PNG.
    """
    check_version(insp, version)
    if not png:
        raise CounterError({"signature": "Ask the customer to sign in the box."})
    counter = settings().counter
    try:
        clean, fmt, _w, _h = photo_files.process(
            png, max_bytes=counter.signature_max_bytes, max_pixels=counter.signature_max_pixels,
            max_side=counter.signature_max_side)
    except photo_files.PhotoTooLarge:
        raise CounterError({"signature": "The signature is too large for the signature box: "
                                         "clear the box and sign again."})
    except photo_files.PhotoError:
        raise CounterError({"signature": NOT_A_SIGNATURE})
    if fmt != "PNG":
        raise CounterError({"signature": NOT_A_SIGNATURE})
    image = Image.open(io.BytesIO(clean))
    # Seen on white paper, a blank canvas is all one shade: not a signature.
    paper = Image.new("RGBA", image.size, (255, 255, 255, 255))
    paper.alpha_composite(image.convert("RGBA"))
    darkest, lightest = paper.convert("L").getextrema()
    if darkest == lightest:
        raise CounterError({"signature": "The signature box is empty: ask the customer to sign."})
    insp.signature_filename = photo_files.write_content_addressed(upload_dir(), clean, "png")
    insp.signed_at, insp.signature_witness_id = now, by.id
    record(by, "pickup.signed", insp.hire, {}, {"signature": insp.signature_filename}, at=now)
    commit_step(insp)


@dataclass(frozen=True)
class Step:
    key: str
    label: str
    done: bool

"""Maintenance blocks: a period a car is out of service. A block takes the car like a hire
does (an `Occupancy`), so the database's no-overlap guard refuses one that collides.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..audit import record
from ..extensions import db
from ..models import Car, MaintenanceBlock, Occupancy, User
from ..models.fleet import MAINTENANCE_KINDS
from ..models.hires import lock_car_calendar
from . import validators as v
from .errors import FleetError, MaintenanceCollision


NOTE_MAX_LENGTH = 300  # MaintenanceBlock.note


def upcoming_blocks(car: Car, *, now: datetime) -> list[MaintenanceBlock]:
    return list(db.session.scalars(
        select(MaintenanceBlock).where(MaintenanceBlock.car_id == car.id,
                                       MaintenanceBlock.ends_at > now)
        .order_by(MaintenanceBlock.starts_at)))


def _overlapping(car_id: int, starts_at: datetime, ends_at: datetime) -> list[Occupancy]:
    return list(db.session.scalars(
        select(Occupancy).where(Occupancy.car_id == car_id, Occupancy.starts_at < ends_at,
                                Occupancy.ends_at > starts_at)
        .order_by(Occupancy.starts_at)))


def add_block(car: Car, *, kind: str, starts_at: datetime, ends_at: datetime, note: str,
              by: User, now: datetime) -> MaintenanceBlock:
    """Take a car out of service for a period; refused if anything holds it then. Commits."""
    errors: dict[str, str] = {}
    if kind not in MAINTENANCE_KINDS:
        errors["kind"] = "Choose service, repair or MOT."
    if ends_at <= starts_at:
        errors["ends_at"] = "The end must be after the start."
    elif ends_at <= now:
        errors["ends_at"] = "That period is already over."
    elif ends_at - starts_at > timedelta(days=current_app.config["MAINTENANCE_MAX_DAYS"]):
        errors["ends_at"] = (f"A block can last at most {current_app.config['MAINTENANCE_MAX_DAYS']}"
                             " days; retire the car if it is gone for good.")
    note_error = v.note_error(note, max_length=NOTE_MAX_LENGTH)
    if note_error:
        errors["note"] = note_error
    if car.status == "retired":
        errors[""] = "This car is retired."
    if errors:
        raise FleetError(errors)
    lock_car_calendar(car.id)
    taken = _overlapping(car.id, starts_at, ends_at)
    if taken:
        hires = [o.hire for o in taken if o.hire is not None]
        blocks = [o.maintenance_block for o in taken if o.maintenance_block is not None]
        raise MaintenanceCollision(hires, blocks)
    block = MaintenanceBlock(car=car, kind=kind, starts_at=starts_at, ends_at=ends_at, note=note,
                             created_by_id=by.id, created_at=now)
    db.session.add(block)
    try:
        db.session.flush()
        db.session.add(Occupancy(car_id=car.id, starts_at=starts_at, ends_at=ends_at,
                                 maintenance_block_id=block.id))
        db.session.flush()
    except IntegrityError:  # the database's no-overlap guard: booked a moment ago
        db.session.rollback()
        taken = _overlapping(car.id, starts_at, ends_at)
        raise MaintenanceCollision([o.hire for o in taken if o.hire is not None],
                                   [o.maintenance_block for o in taken if o.maintenance_block])
    record(by, "maintenance.added", car, {},
           {"block": block.id, "kind": kind, "starts_at": starts_at, "ends_at": ends_at,
            "note": note})
    db.session.commit()
    return block


def remove_block(block: MaintenanceBlock, *, by: User) -> None:
    """Cancel a maintenance block: the car is free again for that period. Commits."""
    car = block.car
    record(by, "maintenance.removed", car,
           {"block": block.id, "kind": block.kind, "starts_at": block.starts_at,
            "ends_at": block.ends_at}, {})
    occupancy = db.session.scalar(select(Occupancy).where(
        Occupancy.maintenance_block_id == block.id))
    if occupancy is not None:
        db.session.delete(occupancy)
    db.session.delete(block)
    db.session.commit()

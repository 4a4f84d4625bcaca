"""Fleet rules: adding, editing and retiring cars, their photos, maintenance blocks, and
moving a confirmed hire to another car when its own car has to go in for work.

Plain functions over the session that take `by` (the member of staff) and `now`, raise
`FleetError` with messages keyed by form field, and audit every change to a car or a hire.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Optional, Sequence

from flask import current_app
from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload, selectinload

from ..audit import changes, record
from ..errors import FieldErrors
from ..extensions import db
from ..mail import queue_email
from ..models import (OCCUPYING_STATES, Branch, Car, CarClass, CarPhoto, Hire, HireState,
                      MaintenanceBlock, Occupancy, User)
from ..models.fleet import FUEL_TYPES, MAINTENANCE_KINDS, TRANSMISSIONS
from . import photos as photo_store
from . import validators as v

OCCUPYING = tuple(s.value for s in OCCUPYING_STATES)
# Hires staff may move to another car: paid for and not yet picked up. A held hire is
# mid-payment (it is confirmed or expires within minutes); an active one is on the road.
MOVABLE = (HireState.CONFIRMED.value,)
NOTE_MAX_LENGTH = 300  # MaintenanceBlock.note


class FleetError(FieldErrors):
    """Refusal with a message per field ("" key: for the whole form)."""


class RetireRefused(FleetError):
    """The car still has hires to come; they are listed so staff can move or cancel them."""

    def __init__(self, hires: Sequence[Hire]):
        super().__init__({"": f"This car has {len(hires)} hire{'s' if len(hires) != 1 else ''} "
                              "still to come. Move them to another car before retiring it."})
        self.hires = list(hires)


class MaintenanceCollision(FleetError):
    """The period overlaps hires (listed, so they can be moved) or another block."""

    def __init__(self, hires: Sequence[Hire], blocks: Sequence[MaintenanceBlock]):
        parts = []
        if hires:
            parts.append(f"{len(hires)} hire{'s' if len(hires) != 1 else ''}")
        if blocks:
            parts.append(f"{len(blocks)} other maintenance block{'s' if len(blocks) != 1 else ''}")
        super().__init__({"": f"The car is not free then: it overlaps {' and '.join(parts)}."
                              + (" Move the hires to another car first." if hires else "")})
        self.hires = list(hires)
        self.blocks = list(blocks)


# --- cars -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class CarData:
    plate: str
    vin: str
    make: str
    model: str
    year: int
    car_class_id: int
    seats: int
    doors: int
    transmission: str
    fuel_type: str
    co2_g_km: int
    odometer_miles: int
    home_branch_id: int
    daily_rate_override_pence: Optional[int] = None

    def normalised(self) -> "CarData":
        return CarData(**{**self.__dict__, "plate": v.normalise_plate(self.plate),
                          "vin": v.normalise_vin(self.vin), "make": " ".join(self.make.split()),
                          "model": " ".join(self.model.split())})


CAR_FIELDS = tuple(CarData.__dataclass_fields__)


def car_errors(data: CarData, *, car: Optional[Car] = None, today_year: int) -> dict[str, str]:
    """Every rule about a car's details, so all messages show at once."""
    cfg = current_app.config
    errors: dict[str, str] = {}
    for name, message in (("plate", v.plate_error(data.plate)), ("vin", v.vin_error(data.vin)),
                          ("make", v.name_error(data.make, "make")),
                          ("model", v.name_error(data.model, "model"))):
        if message:
            errors[name] = message
    if "plate" not in errors:
        clash = db.session.scalar(select(Car).where(Car.plate == data.plate))
        if clash is not None and clash is not car:
            errors["plate"] = f"{v.format_plate(data.plate)} is already in the fleet."
    if "vin" not in errors:
        clash = db.session.scalar(select(Car).where(Car.vin == data.vin))
        if clash is not None and clash is not car:
            errors["vin"] = f"That VIN belongs to {v.format_plate(clash.plate)} already."
    if not cfg["CAR_OLDEST_YEAR"] <= data.year <= today_year + 1:
        errors["year"] = f"Enter a year from {cfg['CAR_OLDEST_YEAR']} to {today_year + 1}."
    if db.session.get(CarClass, data.car_class_id) is None:
        errors["car_class_id"] = "Choose a class from the list."
    if db.session.get(Branch, data.home_branch_id) is None:
        errors["home_branch_id"] = "Choose a branch from the list."
    if not 1 <= data.seats <= 9:
        errors["seats"] = "Enter from 1 to 9 seats."
    if not 2 <= data.doors <= 5:
        errors["doors"] = "Enter from 2 to 5 doors."
    if data.transmission not in TRANSMISSIONS:
        errors["transmission"] = "Choose manual or automatic."
    if data.fuel_type not in FUEL_TYPES:
        errors["fuel_type"] = "Choose a fuel type from the list."
    if not 0 <= data.co2_g_km <= 500:
        errors["co2_g_km"] = "Enter CO₂ from 0 to 500 g/km."
    elif data.fuel_type == "electric" and data.co2_g_km != 0:
        errors["co2_g_km"] = "An electric car emits 0 g/km at the tailpipe."
    if not 0 <= data.odometer_miles <= cfg["CAR_MAX_ODOMETER_MILES"]:
        errors["odometer_miles"] = f"Enter from 0 to {cfg['CAR_MAX_ODOMETER_MILES']:,} miles."
    elif car is not None and data.odometer_miles < car.odometer_miles:
        errors["odometer_miles"] = (f"The odometer cannot go down: it last read "
                                    f"{car.odometer_miles:,} miles.")
    rate = data.daily_rate_override_pence
    if rate is not None and not 0 < rate <= cfg["CAR_MAX_DAILY_RATE_PENCE"]:
        errors["daily_rate_override"] = (
            f"Enter a daily rate from £0.01 to £{cfg['CAR_MAX_DAILY_RATE_PENCE'] // 100:,}, "
            "or leave it empty to use the class rate.")
    return errors


def _car_fields(car: Car) -> dict[str, Any]:
    return {name: getattr(car, name) for name in CAR_FIELDS}


def _store_photos(uploads: Sequence[bytes], existing: int) -> list[photo_store.StoredPhoto]:
    limit = current_app.config["CAR_PHOTO_MAX_PER_CAR"]
    if existing + len(uploads) > limit:
        raise FleetError({"photos": f"A car can have at most {limit} photos "
                                    f"({existing} already)."})
    stored = []
    for number, data in enumerate(uploads, start=1):
        try:
            stored.append(photo_store.store(data))
        except photo_store.PhotoError as exc:
            which = f"Photo {number}: " if len(uploads) > 1 else ""
            raise FleetError({"photos": f"{which}{exc}"})
    return stored


def _attach(car: Car, stored: Sequence[photo_store.StoredPhoto], by: User) -> list[CarPhoto]:
    added = []
    known = {p.filename for p in car.photos}
    for item in stored:
        if item.filename in known:
            continue  # the same picture twice: keep one
        known.add(item.filename)
        photo = CarPhoto(filename=item.filename, content_type=item.content_type,
                         width=item.width, height=item.height, size_bytes=item.size_bytes,
                         position=len(car.photos), uploaded_by_id=by.id,
                         alt_text=f"{car.make} {car.model}"[:150])
        car.photos.append(photo)
        added.append(photo)
    if not car.photo and car.photos:
        car.photo = car.photos[0].filename
    return added


def add_car(data: CarData, uploads: Sequence[bytes], *, by: User, now: datetime) -> Car:
    """Put a new car in the fleet, with its photos. Commits."""
    data = data.normalised()
    errors = car_errors(data, today_year=now.year)
    if errors:
        raise FleetError(errors)
    stored = _store_photos(uploads, 0)
    car = Car(**data.__dict__, status="available", created_at=now)
    db.session.add(car)
    _attach(car, stored, by)
    try:
        db.session.flush()
    except IntegrityError:  # added by someone else a moment ago
        db.session.rollback()
        raise FleetError(car_errors(data, today_year=now.year)
                         or {"": "That car was just added by someone else."})
    record(by, "car.added", car, {}, {**_car_fields(car), "photos": len(car.photos)})
    db.session.commit()
    return car


def update_car(car: Car, data: CarData, *, by: User, now: datetime) -> bool:
    """Change a car's details. Commits; False if nothing changed."""
    data = data.normalised()
    errors = car_errors(data, car=car, today_year=now.year)
    if errors:
        raise FleetError(errors)
    before = _car_fields(car)
    for name in CAR_FIELDS:
        setattr(car, name, getattr(data, name))
    old, new = changes(before, _car_fields(car))
    if not new:
        return False
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise FleetError({"": "Another car took that plate or VIN a moment ago; check them."})
    record(by, "car.updated", car, old, new)
    db.session.commit()
    return True


def add_photos(car: Car, uploads: Sequence[bytes], *, by: User) -> int:
    """Add photos to a car; the first becomes the cover if it has none. Commits."""
    if not uploads:
        raise FleetError({"photos": "Choose one or more photos to upload."})
    stored = _store_photos(uploads, len(car.photos))
    added = _attach(car, stored, by)
    if added:
        db.session.flush()
        record(by, "car.photos_added", car, {}, {"photos": [p.filename for p in added]})
    db.session.commit()
    return len(added)


def remove_photo(car: Car, photo_id: int, *, by: User) -> None:
    """Take a photo off a car (the next one becomes the cover). Commits."""
    photo = next((p for p in car.photos if p.id == photo_id), None)
    if photo is None:
        raise FleetError({"": "That photo is not one of this car's."})
    car.photos.remove(photo)
    for position, other in enumerate(car.photos):
        other.position = position
    if car.photo == photo.filename:
        car.photo = car.photos[0].filename if car.photos else ""
    record(by, "car.photo_removed", car, {"photo": photo.filename}, {"cover": car.photo})
    db.session.commit()
    photo_store.remove_if_unused(photo.filename)


def set_cover(car: Car, photo_id: int, *, by: User) -> None:
    """Make this photo the one customers see first. Commits."""
    photo = next((p for p in car.photos if p.id == photo_id), None)
    if photo is None:
        raise FleetError({"": "That photo is not one of this car's."})
    if car.photo == photo.filename:
        return
    old = car.photo
    car.photos.remove(photo)
    car.photos.insert(0, photo)
    for position, other in enumerate(car.photos):
        other.position = position
    car.photo = photo.filename
    record(by, "car.cover_photo_changed", car, {"cover": old}, {"cover": car.photo})
    db.session.commit()


def hires_to_come(car: Car, *, now: datetime) -> list[Hire]:
    """The car's hires that still hold it: booked, being paid for, or on the road."""
    return list(db.session.scalars(
        select(Hire).options(joinedload(Hire.customer))
        .where(Hire.car_id == car.id, Hire.state.in_(OCCUPYING), Hire.end_at > now)
        .order_by(Hire.start_at)))


def retire_car(car: Car, *, by: User, now: datetime) -> None:
    """Take a car out of the fleet for good; refused while it has hires to come. Commits."""
    if car.status == "retired":
        return
    pending = hires_to_come(car, now=now)
    if pending:
        raise RetireRefused(pending)
    car.status = "retired"
    car.retired_at = now
    record(by, "car.retired", car, {"status": "available"}, {"status": "retired", "at": now})
    db.session.commit()


def reinstate_car(car: Car, *, by: User) -> None:
    """Bring a retired car back into the fleet. Commits."""
    if car.status != "retired":
        return
    car.status = "available"
    car.retired_at = None
    record(by, "car.reinstated", car, {"status": "retired"}, {"status": "available"})
    db.session.commit()


# --- the fleet list --------------------------------------------------------------------------

SORTS = {
    "plate": lambda: Car.plate,
    "make": lambda: func.lower(Car.make),
    "year": lambda: Car.year,
    "class": lambda: CarClass.name,
    "branch": lambda: Branch.name,
    "odometer": lambda: Car.odometer_miles,
    "added": lambda: Car.created_at,
}
STATUS_FILTERS = ("available", "retired", "all")


@dataclass(frozen=True)
class FleetFilters:
    q: str = ""
    car_class_id: Optional[int] = None
    branch_id: Optional[int] = None
    fuel_type: str = ""
    transmission: str = ""
    status: str = "available"
    sort: str = "plate"
    descending: bool = False
    page: int = 1


@dataclass
class FleetPage:
    cars: list[Car]
    total: int
    page: int
    pages: int
    filters: FleetFilters = field(default_factory=FleetFilters)


def _fleet_query(filters: FleetFilters) -> Select:
    query = select(Car).join(Car.car_class).join(Car.home_branch)
    text = " ".join(filters.q.split())
    if text:
        compact = v.normalise_plate(text)
        words = [w.lower() for w in text.split()]
        # Plate typed any way ("ab12 cde", "AB12CDE"), or every word in the make/model/VIN.
        in_name = and_(*[or_(func.lower(Car.make).contains(w, autoescape=True),
                             func.lower(Car.model).contains(w, autoescape=True),
                             Car.vin.contains(w.upper(), autoescape=True)) for w in words])
        query = query.where(or_(Car.plate.contains(compact, autoescape=True), in_name))
    if filters.car_class_id:
        query = query.where(Car.car_class_id == filters.car_class_id)
    if filters.branch_id:
        query = query.where(Car.home_branch_id == filters.branch_id)
    if filters.fuel_type in FUEL_TYPES:
        query = query.where(Car.fuel_type == filters.fuel_type)
    if filters.transmission in TRANSMISSIONS:
        query = query.where(Car.transmission == filters.transmission)
    if filters.status in ("available", "retired"):
        query = query.where(Car.status == filters.status)
    return query


def search_cars(filters: FleetFilters) -> FleetPage:
    """One page of the fleet list, filtered and sorted."""
    size = current_app.config["FLEET_PAGE_SIZE"]
    query = _fleet_query(filters)
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    pages = max(1, -(-total // size))
    page = min(max(1, filters.page), pages)
    key = SORTS.get(filters.sort, SORTS["plate"])()
    order = [key.desc() if filters.descending else key.asc(), Car.id]
    cars = db.session.scalars(
        query.options(selectinload(Car.car_class), selectinload(Car.home_branch))
        .order_by(*order).offset((page - 1) * size).limit(size)).all()
    return FleetPage(list(cars), total, page, pages, filters)


def choices() -> tuple[list[CarClass], list[Branch]]:
    classes = db.session.scalars(select(CarClass).order_by(CarClass.daily_rate_pence)).all()
    branches = db.session.scalars(select(Branch).order_by(Branch.name)).all()
    return list(classes), list(branches)


# --- maintenance ----------------------------------------------------------------------------

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


def _hire_interval(hire: Hire) -> tuple[datetime, datetime]:
    """The time the hire keeps a car: its occupancy (with any cleaning buffer) or its dates."""
    if hire.occupancy is not None:
        return hire.occupancy.starts_at, hire.occupancy.ends_at
    return hire.start_at, hire.end_at


def free_cars_for(hire: Hire) -> list[Car]:
    """Cars the hire could move to: same class, same branch, in the fleet, free throughout."""
    starts_at, ends_at = _hire_interval(hire)
    busy = select(Occupancy.car_id).where(Occupancy.starts_at < ends_at,
                                          Occupancy.ends_at > starts_at)
    return list(db.session.scalars(
        select(Car).where(Car.car_class_id == hire.car.car_class_id,
                          Car.home_branch_id == hire.pickup_branch_id,
                          Car.status == "available", Car.id != hire.car_id,
                          Car.id.not_in(busy))
        .order_by(Car.odometer_miles, Car.plate)))


def can_move(hire: Hire) -> bool:
    return hire.state in MOVABLE


def move_hire(hire: Hire, to_car: Car, *, by: User, now: datetime) -> None:
    """Give a confirmed hire another free car of the same class and tell the customer.

    The price lines stay as they were frozen. Commits, then queues one email per move.
    """
    if not can_move(hire):
        raise FleetError({"": f"Hire {hire.reference} is {hire.state.replace('_', ' ')}; only "
                              "confirmed hires that have not started can be moved."})
    if hire.start_at <= now:
        raise FleetError({"": f"Hire {hire.reference} has already started."})
    if to_car.id == hire.car_id:
        raise FleetError({"to_car_id": "Choose a different car."})
    if to_car.id not in {c.id for c in free_cars_for(hire)}:
        raise FleetError({"to_car_id": f"{v.format_plate(to_car.plate)} is not free for that "
                                       "hire, or is not the same class at the same branch."})
    old_car = hire.car
    hire.car = to_car
    if hire.occupancy is not None:
        hire.occupancy.car = to_car
        hire.occupancy.car_id = to_car.id
    try:
        db.session.flush()
    except IntegrityError:  # the database's no-overlap guard: taken a moment ago
        db.session.rollback()
        raise FleetError({"to_car_id": f"{v.format_plate(to_car.plate)} was just taken; "
                                       "choose another car."})
    entry = record(by, "hire.car_moved", hire,
                   {"car_id": old_car.id, "plate": old_car.plate},
                   {"car_id": to_car.id, "plate": to_car.plate})
    db.session.flush()
    db.session.commit()
    _email_car_change(hire, old_car, to_car, key=f"hire:{hire.id}:car-moved:{entry.id}")


def _email_car_change(hire: Hire, old_car: Car, new_car: Car, *, key: str) -> None:
    from ..filters import local_time
    customer = hire.customer
    queue_email(
        key=key,
        to=customer.email,
        subject=f"Your ACME Rentals booking {hire.reference}: a different car",
        body=(f"Hello {customer.full_name},\n\n"
              f"Your {old_car.make} {old_car.model} needs some work, so we have given your "
              f"booking {hire.reference} ({local_time(hire.start_at)} to "
              f"{local_time(hire.end_at)}) another car of the same class: a {new_car.make} "
              f"{new_car.model}, registration {v.format_plate(new_car.plate)}.\n\n"
              f"Everything else stays the same, including the price you paid. "
              f"Reply to this email if you have any questions.\n\nACME Rentals\n"),
    )

"""Cars: adding, editing, retiring and reinstating them, and their photos. Every change is
audited; `by` is the member of staff and `now` the time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional, Sequence

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload

from ..audit import changes, record
from ..extensions import db
from ..models import OCCUPYING_STATES, Branch, Car, CarClass, CarPhoto, Hire, User
from ..models.fleet import FUEL_TYPES, TRANSMISSIONS
from . import photos as photo_store
from . import validators as v
from .errors import FleetError, RetireRefused

OCCUPYING = tuple(s.value for s in OCCUPYING_STATES)


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

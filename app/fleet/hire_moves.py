"""Moving a confirmed hire to another free car of its class when its own car has to go in
for work; the customer is emailed about the new car.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..audit import record
from ..extensions import db
from ..mail import queue_email
from ..models import Car, Hire, HireState, Occupancy, User
from ..models.hires import lock_car_calendar
from . import validators as v
from .errors import FleetError

# Hires staff may move to another car: paid for and not yet picked up. A held hire is
# mid-payment (it is confirmed or expires within minutes); an active one is on the road.
MOVABLE = (HireState.CONFIRMED.value,)


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
    lock_car_calendar(to_car.id)
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
    queue_email(key=key, to=hire.customer.email,
                subject=f"Your ACME Rentals booking {hire.reference}: a different car",
                template="fleet/emails/car_moved.txt", hire=hire, old_car=old_car,
                new_car=new_car, plate=v.format_plate(new_car.plate))

"""The fleet list: cars filtered, sorted and paged for staff, with the classes and branches
to choose from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from flask import current_app
from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import selectinload

from ..extensions import db
from ..models import Branch, Car, CarClass
from ..models.fleet import FUEL_TYPES, TRANSMISSIONS
from . import validators as v


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

"""Availability: which cars are free for a trip, in one query, and their prices.

No car is ever double-booked: this checks first so that the loser of a race gets a friendly
answer (`CarTaken` with alternatives); the database is the final guard on `occupancies`
(PostgreSQL's exclusion constraint, SQLite's triggers of migration 0010, both named
`occupancies_no_overlap`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Hashable, Mapping, Optional

from sqlalchemy import and_, bindparam, exists, func, literal, literal_column, or_, select
from sqlalchemy.orm import joinedload

from .. import refdata
from ..config import SEARCH_ANSWERS_KEPT
from ..extensions import db
from ..models import Car, CarClass, CarPhoto, Occupancy, User
from ..refdata import CarClassRef
from ..settings import settings
from ..web import fragment_cache, keep
from .eligibility import is_young_driver
from .errors import BookingError, CarTaken
from .pricing import Quote, RateTables
from .quotes import load_rate_tables, price
from .trips import Filters, Trip

ALTERNATIVES_SHOWN = 3
SEARCH_ANSWERS = "search_answers"  # the kind of `web.fragment_cache` that keeps them


def _overlaps(start: datetime, until: datetime):
    """Occupancy rows overlapping [start, until): the same half-open rule as the exclusion
    constraint, written so the btree (car_id, starts_at, ends_at) answers it."""
    return and_(Occupancy.starts_at < until, Occupancy.ends_at > start)


def _busy(start: datetime, until: datetime, exclude_hire_id: int | None = None):
    """EXISTS an occupancy (hire or maintenance) of the outer query's car in the period."""
    q = select(literal(1)).where(Occupancy.car_id == Car.id, _overlaps(start, until))
    if exclude_hire_id is not None:
        q = q.where(or_(Occupancy.hire_id.is_(None), Occupancy.hire_id != exclude_hire_id))
    if db.session.get_bind().dialect.name == "postgresql":
        # OFFSET 0 keeps NOT EXISTS a per-car probe of ix_occupancies_car_id_starts_at: a
        # branch's ~200 cars cost ~200 short index-only scans, whatever the table's size.
        # Without it the planner may choose a hash anti-join over every car's occupancies in
        # the period, which grows with the whole fleet's bookings (bench/README.md).
        q = q.offset(literal_column("0"))
    return exists(q.correlate(Car))


def _order(sort: str):
    """ORDER BY for a search's sort. Size is seats, then doors, then the class (classes are
    priced by size: the class's own day rate ranks it); ties go to the cheaper car."""
    rate = func.coalesce(Car.daily_rate_override_pence, CarClass.daily_rate_pence)
    size = (Car.seats, Car.doors, CarClass.daily_rate_pence)
    if sort == "price_desc":
        return (rate.desc(), Car.id)
    if sort == "size":
        return (*(c.desc() for c in size), rate, Car.id)
    if sort == "size_asc":
        return (*size, rate, Car.id)
    return (rate, Car.id)


def with_filters(q, filters: Filters):
    """The search's filters (class, seats, gearbox, fuel) on a query joined to the car's class."""
    if filters.car_class:
        q = q.where(CarClass.code == filters.car_class)
    if filters.min_seats:
        q = q.where(Car.seats >= filters.min_seats)
    if filters.transmission:
        q = q.where(Car.transmission == filters.transmission)
    if filters.fuel_type:
        q = q.where(Car.fuel_type == filters.fuel_type)
    return q


def available_cars_query(trip: Trip, filters: Filters = Filters(), *, limit: int | None = None,
                         exclude_car_id: int | None = None):
    """Cars at the pickup branch, free for the whole trip plus cleaning buffer, in the order
    the filters ask for (cheapest first by default).

    One statement: the cars (as plain columns: `CarView.from_row`), and the count of all
    matches (window function).
    """
    q = (select(*CAR_COLUMNS, func.count().over().label("matches"))
         .join(Car.car_class)
         .where(Car.status == "available", Car.home_branch_id == trip.pickup_branch.id,
                ~_busy(trip.start, trip.until()))
         .order_by(*_order(filters.sort)))
    q = with_filters(q, filters)
    if exclude_car_id is not None:
        q = q.where(Car.id != exclude_car_id)
    if limit is not None:
        q = q.limit(limit)
    return q


# The search's statement, built once per shape (which filters are set, the order, the limit,
# the database) with the trip and the filters' values as parameters: building the statement and
# its cache key anew for every search cost more Python than running it (issue 19). It is
# `available_cars_query`'s statement, compared in tests/test_refdata.py.
_SEARCH_STATEMENTS: dict[tuple, object] = {}


def _search_statement(filters: Filters, limit: int, dialect: str):
    key = (filters.sort, bool(filters.car_class), bool(filters.min_seats),
           bool(filters.transmission), bool(filters.fuel_type), limit, dialect)
    statement = _SEARCH_STATEMENTS.get(key)
    if statement is None:
        q = (select(*CAR_COLUMNS, func.count().over().label("matches"))
             .join(Car.car_class)
             .where(Car.status == "available", Car.home_branch_id == bindparam("branch_id"),
                    ~_busy(bindparam("start"), bindparam("until")))
             .order_by(*_order(filters.sort)))
        if filters.car_class:
            q = q.where(CarClass.code == bindparam("car_class"))
        if filters.min_seats:
            q = q.where(Car.seats >= bindparam("min_seats"))
        if filters.transmission:
            q = q.where(Car.transmission == bindparam("transmission"))
        if filters.fuel_type:
            q = q.where(Car.fuel_type == bindparam("fuel_type"))
        statement = _SEARCH_STATEMENTS[key] = q.limit(limit)
    return statement


def _available_cars(trip: Trip, filters: Filters, limit: int):
    """The rows of `available_cars_query(trip, filters, limit=limit)`."""
    params = {"branch_id": trip.pickup_branch.id, "start": trip.start, "until": trip.until()}
    for name in ("car_class", "min_seats", "transmission", "fuel_type"):
        if getattr(filters, name):
            params[name] = getattr(filters, name)
    statement = _search_statement(filters, limit, db.session.get_bind().dialect.name)
    return db.session.execute(statement, params).all()


# What the booking pages show of a car, read as plain columns: building ORM objects for a
# page of cars cost more than the rest of the query (issue 19). Its class comes from the
# reference data (app/refdata.py); its cover photo's width (for srcset) from a subquery of the
# same statement (one row at most: a car's filenames are unique), not a second query.
COVER_WIDTH = (select(CarPhoto.width)
               .where(CarPhoto.car_id == Car.id, CarPhoto.filename == Car.photo)
               .correlate(Car).scalar_subquery().label("cover_width"))
CAR_COLUMNS = (Car.id, Car.make, Car.model, Car.year, Car.seats, Car.doors, Car.transmission,
               Car.fuel_type, Car.photo, Car.status, Car.home_branch_id, Car.car_class_id,
               Car.daily_rate_override_pence, Car.plate, COVER_WIDTH)


@dataclass(frozen=True)
class CarView:
    """A car as the booking pages show and price it (the attributes of `Car` they use)."""

    id: int
    make: str
    model: str
    year: int
    seats: int
    doors: int
    transmission: str
    fuel_type: str
    photo: str
    status: str
    home_branch_id: int
    car_class_id: int
    daily_rate_override_pence: int | None
    plate: str  # an extension's swap offers name it
    cover_width: int | None  # the cover photo's, in pixels; None without one
    car_class: CarClassRef

    @classmethod
    def from_row(cls, row, reference: refdata.Reference) -> "CarView":
        # A class created after this request's snapshot was taken is read now.
        car_class = reference.car_class(row.car_class_id) or refdata.car_class_ref(
            db.session.get(CarClass, row.car_class_id))
        return cls(*(row[i] for i in range(len(CAR_COLUMNS))), car_class=car_class)


@dataclass(frozen=True)
class Offer:
    car: CarView | Car
    quote: Quote


@dataclass(frozen=True)
class SearchResult:
    offers: tuple[Offer, ...]  # a tuple: a kept answer is shared by the requests that reuse it
    matches: int
    young_driver: bool = False
    tables: RateTables | None = field(default=None, repr=False)
    # Everything the answer was worked out from (see `search`); None when it cannot be kept.
    key: Hashable | None = field(default=None, repr=False, compare=False)


def search(trip: Trip, filters: Filters = Filters(), *, customer: Optional[User] = None,
           limit: int | None = None) -> SearchResult:
    """Free cars for the trip with their full price (no extras), in the filters' order.

    The query runs every time. The answer worked out from its rows (the cars' values, their
    prices) is kept per worker under everything it depends on: the rows themselves (which
    cars are free, each car's every column, the count of matches), the trip, the young-driver
    rule's outcome and the reference data's version (rates, classes, branches). A booking, a
    cancelled hold, a repriced or renamed car, a new rate: each changes the key, so a kept
    answer is only ever reused for the very rows it was made from (issue 19)."""
    rows = _available_cars(trip, filters, limit or settings().booking.search_results_limit)
    reference = refdata.current()
    young = is_young_driver(customer, trip)
    key = None if reference.version is None else (
        tuple(rows), trip.pickup_branch.id, trip.return_branch.id, trip.start, trip.end, young,
        reference.version)  # the branches' other values are the reference data's
    if key is None:
        return _priced(rows, trip, young, reference, None)
    kept = fragment_cache(SEARCH_ANSWERS)
    result = kept.get(key)  # one lookup: the key hashes every row
    if result is None:
        result = keep(kept, key, _priced(rows, trip, young, reference, key),
                      limit=SEARCH_ANSWERS_KEPT)
    return result


def _priced(rows, trip: Trip, young: bool, reference: refdata.Reference, answer_key) -> SearchResult:
    tables = load_rate_tables()
    # Without extras, a car's price depends only on its daily rate and deposit: cars of one
    # class share one quote (frozen, so sharing is safe).
    quotes: dict[tuple[int, int], Quote] = {}
    offers = []
    for row in rows:
        car = CarView.from_row(row, reference)
        key = (car.daily_rate_override_pence or car.car_class.daily_rate_pence,
               car.car_class.deposit_pence)
        if key not in quotes:
            quotes[key] = price(car, trip, {}, young_driver=young, tables=tables)
        offers.append(Offer(car, quotes[key]))
    return SearchResult(tuple(offers), rows[0].matches if rows else 0, young, tables,
                        key=answer_key)


def alternatives(trip: Trip, car: Car | CarView, *, customer: Optional[User] = None) -> list[Offer]:
    """Up to three free cars for the same trip: the same class first, then any."""
    same = search(trip, Filters(car_class=car.car_class.code), customer=customer,
                  limit=ALTERNATIVES_SHOWN + 1).offers
    offers = [o for o in same if o.car.id != car.id][:ALTERNATIVES_SHOWN]
    if len(offers) < ALTERNATIVES_SHOWN:
        seen = {o.car.id for o in offers} | {car.id}
        more = search(trip, customer=customer, limit=ALTERNATIVES_SHOWN + len(seen)).offers
        offers += [o for o in more if o.car.id not in seen][:ALTERNATIVES_SHOWN - len(offers)]
    return offers


def is_free(car_id: int, trip: Trip, *, exclude_hire_id: int | None = None) -> bool:
    q = select(Car.id).where(Car.id == car_id, ~_busy(trip.start, trip.until(), exclude_hire_id))
    return db.session.scalar(q) is not None


def bookable_car(car_id: int, trip: Trip) -> Car:
    """The car, if it can be hired from the trip's pickup branch at all (else BookingError)."""
    car = db.session.scalar(select(Car).options(joinedload(Car.car_class)).where(Car.id == car_id))
    if car is None or car.status != "available" or car.home_branch_id != trip.pickup_branch.id:
        raise BookingError({"": f"That car cannot be picked up at {trip.pickup_branch.name}. "
                                "Please search again."})
    return car


def _offer_statement(dialect: str):
    """`offer_for`'s statement, built once per database (as the search's, above)."""
    statement = _SEARCH_STATEMENTS.get(("offer", dialect))
    if statement is None:
        statement = _SEARCH_STATEMENTS[("offer", dialect)] = (
            select(*CAR_COLUMNS, _busy(bindparam("start"), bindparam("until")).label("busy"))
            .where(Car.id == bindparam("car_id")))
    return statement


def offer_for(car_id: int, trip: Trip, extras: Mapping[str, int], *,
              customer: Optional[User] = None) -> Offer:
    """The quote for one car; CarTaken (with alternatives) when it is not free for the trip.

    One statement: the car and whether anything occupies it during the trip."""
    row = db.session.execute(_offer_statement(db.session.get_bind().dialect.name),
                             {"car_id": car_id, "start": trip.start, "until": trip.until()}).first()
    if row is None or row.status != "available" or row.home_branch_id != trip.pickup_branch.id:
        raise BookingError({"": f"That car cannot be picked up at {trip.pickup_branch.name}. "
                                "Please search again."})
    car = CarView.from_row(row, refdata.current())
    if row.busy:
        raise CarTaken("That car is not free for those dates.",
                       alternatives(trip, car, customer=customer))
    return Offer(car, price(car, trip, extras, young_driver=is_young_driver(customer, trip)))

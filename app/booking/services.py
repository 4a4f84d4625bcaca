"""Booking rules: trips, availability, quotes, holds, confirmation, cancellation, changes.

Plain functions over the session. They take what they need (`now`, the customer, the
trip) and raise `BookingError` (messages keyed by form field, "" for the whole form) or
one of its kinds: `CarTaken` (with alternatives), `PriceChanged`, `NotEligible`.

No car is ever double-booked: the service checks first so that the loser of a race gets
a friendly answer, and the database is the final guard on `occupancies` (PostgreSQL's
exclusion constraint, SQLite's triggers of migration 0010, both named
`occupancies_no_overlap`); its violation is turned into the same `CarTaken` answer.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING, Any, Mapping, Optional
from zoneinfo import ZoneInfo

import icalendar
from flask import current_app
from sqlalchemy import and_, exists, func, literal, literal_column, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import contains_eager, joinedload

from ..errors import FieldErrors
from ..extensions import db
from ..filters import money
from ..logging_setup import log
from ..models import (Branch, Car, CarClass, DurationTier, Extra, Hire, HireState,
                      HireStateChange, InvalidTransition, Occupancy, OneWayFee, Season, User)
from ..models.hires import NO_OVERLAP_CONSTRAINT, OCCUPYING_STATES
from . import pricing
from .pricing import PricingError, Quote, RateTables

if TYPE_CHECKING:
    from ..payments import MoneyBack

S = HireState
REFERENCE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read out over the phone
REFERENCE_LENGTH = 8
REFERENCE_PREFIX = "AC"
CANCELLABLE_STATES = frozenset({S.HELD, S.CONFIRMED})
UPCOMING_STATES = frozenset({S.HELD, S.CONFIRMED})
# Ended before (or instead of) the car going out: the list says when, and what came back.
ENDED_WITHOUT_HIRE = frozenset({S.CANCELLED, S.EXPIRED, S.NO_SHOW, S.REFUSED_AT_PICKUP})
ALTERNATIVES_SHOWN = 3


# --- errors --------------------------------------------------------------------------------

class BookingError(FieldErrors):
    """Refusal with a message per form field ("" key: for the whole form)."""

    @property
    def message(self) -> str:
        return "; ".join(self.errors.values())


class CarTaken(BookingError):
    """The car is not free for the trip any more; `alternatives` are free cars like it."""

    def __init__(self, message: str, alternatives: list["Offer"] | None = None):
        super().__init__(message)
        self.alternatives = alternatives or []


class PriceChanged(BookingError):
    """The price differs from the one the customer was shown; show `quote` and ask again."""

    def __init__(self, quote: Quote):
        super().__init__(f"The price is now {money(quote.total_pence)}, not what you were shown "
                         "(our rates changed). Please check it and confirm again.")
        self.quote = quote


class NotEligible(BookingError):
    """The customer may not confirm a booking yet (licence not verified, too young...)."""


TAKEN_MESSAGE = "Sorry, that car was just taken for those dates."


# --- trips: where and when -------------------------------------------------------------------

@dataclass(frozen=True)
class Trip:
    pickup_branch: Branch
    return_branch: Branch
    start: datetime  # aware UTC
    end: datetime  # aware UTC

    @property
    def tz(self) -> str:
        return self.pickup_branch.timezone

    @property
    def one_way(self) -> bool:
        return self.pickup_branch.id != self.return_branch.id

    def until(self) -> datetime:
        """The end of the car's occupancy: the return plus the cleaning buffer."""
        return self.end + timedelta(minutes=current_app.config["CLEANING_BUFFER_MINUTES"])


@dataclass(frozen=True)
class Filters:
    car_class: str = ""
    min_seats: int = 0
    transmission: str = ""
    fuel_type: str = ""


def local_to_utc(local: datetime, tz: str) -> datetime:
    """A wall-clock time at a branch as aware UTC; refuses a time the clocks skip."""
    zone = ZoneInfo(tz)
    aware = local.replace(tzinfo=zone, fold=0)
    as_utc = aware.astimezone(timezone.utc)
    if as_utc.astimezone(zone).replace(tzinfo=None) != local.replace(tzinfo=None):
        raise ValueError("that time does not exist: the clocks go forward then")
    return as_utc


def to_local(value: datetime, tz: str) -> datetime:
    """Aware UTC to the naive wall-clock time at a branch (what a form shows)."""
    return value.astimezone(ZoneInfo(tz)).replace(tzinfo=None)


def _hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


DAY_NAMES = {"mon": "Mondays", "tue": "Tuesdays", "wed": "Wednesdays", "thu": "Thursdays",
             "fri": "Fridays", "sat": "Saturdays", "sun": "Sundays"}


def opening_error(branch: Branch, local: datetime) -> str | None:
    """Why the branch cannot hand over or take back a car at this local time, if it cannot."""
    day = pricing.WEEKDAY_KEYS[local.weekday()]
    hours = (branch.opening_hours or {}).get(day)
    if not hours:
        return f"{branch.name} is closed on {DAY_NAMES[day]}."
    opens, closes = _hhmm(hours[0]), _hhmm(hours[1])
    if not opens <= local.time() <= closes:
        return f"{branch.name} is open {hours[0]}–{hours[1]} on {DAY_NAMES[day]}."
    return None


def make_trip(*, pickup_branch_id: int | None, return_branch_id: int | None,
              pickup_local: datetime | None, return_local: datetime | None,
              now: datetime) -> Trip:
    """Check the where and when of a hire; every problem is reported at once, by field."""
    cfg = current_app.config
    errors: dict[str, str] = {}
    pickup_branch = db.session.get(Branch, pickup_branch_id) if pickup_branch_id else None
    return_branch = db.session.get(Branch, return_branch_id) if return_branch_id else None
    if pickup_branch is None:
        errors["pickup_branch"] = "Choose where to pick the car up."
    if return_branch is None:
        errors["return_branch"] = "Choose where to return the car."
    if pickup_local is None:
        errors["pickup_at"] = "Enter the pickup date and time."
    if return_local is None:
        errors["return_at"] = "Enter the return date and time."
    start = end = None
    if pickup_branch is not None and pickup_local is not None:
        try:
            start = local_to_utc(pickup_local, pickup_branch.timezone)
        except ValueError:
            errors["pickup_at"] = "That time does not exist: the clocks go forward an hour then."
        else:
            earliest = now + timedelta(minutes=cfg["BOOKING_MIN_NOTICE_MINUTES"])
            if start < earliest:
                errors["pickup_at"] = (
                    "Pickup must be in the future, at least "
                    f"{_duration_words(cfg['BOOKING_MIN_NOTICE_MINUTES'])} from now.")
            elif start > now + timedelta(days=cfg["BOOKING_MAX_ADVANCE_DAYS"]):
                errors["pickup_at"] = (f"We take bookings up to {cfg['BOOKING_MAX_ADVANCE_DAYS']} "
                                       "days ahead.")
            elif (closed := opening_error(pickup_branch, pickup_local)) is not None:
                errors["pickup_at"] = closed
    if return_branch is not None and return_local is not None:
        try:
            end = local_to_utc(return_local, return_branch.timezone)
        except ValueError:
            errors["return_at"] = "That time does not exist: the clocks go forward an hour then."
        else:
            if start is not None and end <= start:
                errors["return_at"] = "Return must be after pickup."
            elif start is not None and pricing.charged_days(
                    start, end, cfg["LATE_GRACE_MINUTES"]) > cfg["MAX_HIRE_DAYS"]:
                errors["return_at"] = (f"A hire can be at most {cfg['MAX_HIRE_DAYS']} days. "
                                       "For longer, book a second hire or call us.")
            elif (closed := opening_error(return_branch, return_local)) is not None:
                errors["return_at"] = closed
    if errors:
        raise BookingError(errors)
    return Trip(pickup_branch, return_branch, start, end)  # type: ignore[arg-type]


def _duration_words(minutes: int) -> str:
    if minutes % 60 == 0:
        hours = minutes // 60
        return "an hour" if hours == 1 else f"{hours} hours"
    return f"{minutes} minutes"


def default_trip_times(branch: Branch, now: datetime, days: int = 3) -> tuple[datetime, datetime]:
    """Suggested local pickup and return: the next open day at 10:00 (or opening), `days` later."""
    zone = ZoneInfo(branch.timezone)
    day = now.astimezone(zone).date() + timedelta(days=1)
    start = _first_open(branch, day)
    end = _first_open(branch, start.date() + timedelta(days=days), not_before=start.time())
    return start, end


def _first_open(branch: Branch, day: date, not_before: time | None = None) -> datetime:
    preferred = not_before or time(10, 0)
    for offset in range(14):
        d = day + timedelta(days=offset)
        hours = (branch.opening_hours or {}).get(pricing.WEEKDAY_KEYS[d.weekday()])
        if hours:
            opens, closes = _hhmm(hours[0]), _hhmm(hours[1])
            at = min(max(preferred, opens), closes)
            return datetime.combine(d, at)
    return datetime.combine(day, preferred)


# --- rate tables and prices --------------------------------------------------------------------

def load_rate_tables() -> RateTables:
    """The named rate tables as the price engine wants them (database tables + settings)."""
    cfg = current_app.config
    tiers = [pricing.Tier(t.min_days, t.percent_off)
             for t in db.session.scalars(select(DurationTier).order_by(DurationTier.min_days))]
    seasons = [pricing.SeasonRule(s.code, s.name, s.starts_on, s.ends_on, s.percent)
               for s in db.session.scalars(select(Season).order_by(Season.starts_on, Season.code))]
    extras = [pricing.ExtraRate(e.code, e.name, e.per_day_pence, e.cap_pence, e.max_quantity, e.group)
              for e in active_extras()]
    fees = {(f.from_branch_id, f.to_branch_id): f.fee_pence
            for f in db.session.scalars(select(OneWayFee))}
    return RateTables(
        tiers=tuple(tiers), seasons=tuple(seasons), extras=tuple(extras), one_way_fees=fees,
        one_way_default_pence=cfg["ONE_WAY_DEFAULT_FEE_PENCE"],
        weekend_days=frozenset(cfg["WEEKEND_DAYS"]), weekend_percent=cfg["WEEKEND_SURCHARGE_PERCENT"],
        young_driver_per_day_pence=cfg["YOUNG_DRIVER_DAILY_PENCE"],
        young_driver_cap_pence=cfg["YOUNG_DRIVER_CAP_PENCE"],
        vat_percent=cfg["VAT_PERCENT"], grace_minutes=cfg["LATE_GRACE_MINUTES"],
    )


def active_extras() -> list[Extra]:
    return list(db.session.scalars(
        select(Extra).where(Extra.active.is_(True)).order_by(Extra.sort_order, Extra.id)))


def daily_rate_pence(car: Car) -> int:
    return car.daily_rate_override_pence or car.car_class.daily_rate_pence


def price(car: Car, trip: Trip, extras: Mapping[str, int], *, young_driver: bool,
          tables: RateTables | None = None) -> Quote:
    """The server's price for this car and trip; raises BookingError for impossible extras."""
    try:
        return pricing.quote(
            tables or load_rate_tables(), daily_rate_pence=daily_rate_pence(car),
            deposit_pence=car.car_class.deposit_pence, start=trip.start, end=trip.end, tz=trip.tz,
            pickup_branch_id=trip.pickup_branch.id, return_branch_id=trip.return_branch.id,
            extras=extras, young_driver=young_driver)
    except PricingError as exc:
        raise BookingError({f"extra_{code}": message for code, message in exc.errors.items()})


# --- who may book ----------------------------------------------------------------------------

def _age_on(born: date, on: date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def is_young_driver(user: Optional[User], trip: Trip) -> bool:
    """Does the young-driver surcharge apply to this customer on the pickup date?"""
    profile = getattr(user, "profile", None) if user is not None else None
    if profile is None or not getattr(user, "is_authenticated", True):
        return False
    on = to_local(trip.start, trip.tz).date()
    try:
        from ..accounts.licence import is_young_driver as licence_rule
    except ModuleNotFoundError as exc:
        if exc.name != "app.accounts.licence":
            raise
        return _age_on(profile.date_of_birth, on) <= current_app.config["YOUNG_DRIVER_MAX_AGE"]
    return bool(licence_rule(profile, on))


def booking_eligibility(user: User, start: datetime, end: datetime) -> tuple[bool, str]:
    """May this person confirm a hire for these times? (yes/no, and why not)."""
    try:
        from ..accounts.licence import can_confirm_booking
    except ModuleNotFoundError as exc:
        if exc.name != "app.accounts.licence":
            raise
        return _own_eligibility(user, start, end)
    return can_confirm_booking(user, start, end)


def _own_eligibility(user: User, start: datetime, end: datetime) -> tuple[bool, str]:
    """Used until the licence area provides its rule: verified licence, valid, old enough."""
    if user.role != "customer" or user.profile is None:
        return False, "Only customer accounts can book cars online."
    profile = user.profile
    if profile.licence_status != "verified":
        return False, ("We need to verify your driving licence before you can book. "
                       "Check your licence details on your profile.")
    tz = current_app.config["DEFAULT_TIMEZONE"]
    if profile.licence_expires_on < to_local(end, tz).date():
        return False, "Your driving licence expires before this hire ends. Update it on your profile."
    if _age_on(profile.date_of_birth, to_local(start, tz).date()) < current_app.config["LEGAL_DRIVING_AGE"]:
        return False, f"Drivers must be at least {current_app.config['LEGAL_DRIVING_AGE']} to hire a car."
    return True, ""


# --- availability: one query -------------------------------------------------------------------

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


def available_cars_query(trip: Trip, filters: Filters = Filters(), *, limit: int | None = None,
                         exclude_car_id: int | None = None):
    """Cars at the pickup branch, free for the whole trip plus cleaning buffer, cheapest first.

    One statement: the cars, their class, and the count of all matches (window function).
    """
    rate = func.coalesce(Car.daily_rate_override_pence, CarClass.daily_rate_pence)
    q = (select(Car, func.count().over().label("matches"))
         .join(Car.car_class)
         .options(contains_eager(Car.car_class))
         .where(Car.status == "available", Car.home_branch_id == trip.pickup_branch.id,
                ~_busy(trip.start, trip.until()))
         .order_by(rate, Car.id))
    if filters.car_class:
        q = q.where(CarClass.code == filters.car_class)
    if filters.min_seats:
        q = q.where(Car.seats >= filters.min_seats)
    if filters.transmission:
        q = q.where(Car.transmission == filters.transmission)
    if filters.fuel_type:
        q = q.where(Car.fuel_type == filters.fuel_type)
    if exclude_car_id is not None:
        q = q.where(Car.id != exclude_car_id)
    if limit is not None:
        q = q.limit(limit)
    return q


@dataclass(frozen=True)
class Offer:
    car: Car
    quote: Quote


@dataclass(frozen=True)
class SearchResult:
    offers: list[Offer]
    matches: int
    young_driver: bool = False
    tables: RateTables | None = field(default=None, repr=False)


def search(trip: Trip, filters: Filters = Filters(), *, customer: Optional[User] = None,
           limit: int | None = None) -> SearchResult:
    """Free cars for the trip with their full price (no extras), cheapest first."""
    rows = db.session.execute(available_cars_query(
        trip, filters, limit=limit or current_app.config["SEARCH_RESULTS_LIMIT"])).all()
    tables = load_rate_tables()
    young = is_young_driver(customer, trip)
    offers = [Offer(car, price(car, trip, {}, young_driver=young, tables=tables)) for car, _ in rows]
    return SearchResult(offers, rows[0].matches if rows else 0, young, tables)


def alternatives(trip: Trip, car: Car, *, customer: Optional[User] = None) -> list[Offer]:
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


def offer_for(car_id: int, trip: Trip, extras: Mapping[str, int], *,
              customer: Optional[User] = None) -> Offer:
    """The quote for one car; CarTaken (with alternatives) when it is not free for the trip."""
    car = bookable_car(car_id, trip)
    if not is_free(car.id, trip):
        raise CarTaken("That car is not free for those dates.",
                       alternatives(trip, car, customer=customer))
    return Offer(car, price(car, trip, extras, young_driver=is_young_driver(customer, trip)))


# --- holding a car -----------------------------------------------------------------------------

def new_idempotency_key() -> str:
    """One per confirm form: posting it again finds the same hire."""
    return secrets.token_urlsafe(24)


def _new_reference() -> str:
    return REFERENCE_PREFIX + "".join(secrets.choice(REFERENCE_ALPHABET)
                                      for _ in range(REFERENCE_LENGTH))


def hire_by_key(key: str) -> Hire | None:
    return db.session.scalar(select(Hire).where(Hire.idempotency_key == key))


def _violated(exc: IntegrityError) -> str:
    """The constraint an IntegrityError broke: its name on PostgreSQL; on SQLite the message,
    which names it (a trigger's RAISE starts with `occupancies_no_overlap`)."""
    diag = getattr(getattr(exc, "orig", None), "diag", None)
    name = getattr(diag, "constraint_name", None)
    return name or str(exc.orig)


def create_hold(*, customer: User, car_id: int, trip: Trip, extras: Mapping[str, int],
                idempotency_key: str, expected_total_pence: int | None, now: datetime) -> Hire:
    """Hold the car for the customer (state `held` for HOLD_MINUTES) at the server's price.

    Idempotent: the same key gives back the same hire, and so does re-posting the same
    booking after the back button. Raises NotEligible, CarTaken (with alternatives),
    PriceChanged or BookingError.
    """
    cfg = current_app.config
    existing = hire_by_key(idempotency_key)
    if existing is not None:
        return _same_customer(existing, customer)
    eligible, why = booking_eligibility(customer, trip.start, trip.end)
    if not eligible:
        raise NotEligible(why)
    car = bookable_car(car_id, trip)
    duplicate = same_booking(customer, car.id, trip)
    if duplicate is not None:  # the same booking sent again from an older page or tab
        return duplicate
    # One hold at a time per customer: tabs confirming at once would all count the same holds.
    # FOR NO KEY UPDATE (PostgreSQL; SQLite writes one at a time anyway) lets rows that only
    # refer to the customer be written meanwhile; it is released at the commit below.
    db.session.execute(select(User.id).where(User.id == customer.id)
                       .with_for_update(key_share=True))
    holds = db.session.scalar(select(func.count(Hire.id)).where(
        Hire.customer_id == customer.id, Hire.state == S.HELD.value, Hire.hold_expires_at > now))
    if holds >= cfg["MAX_HOLDS_PER_CUSTOMER"]:
        raise BookingError(f"You already have {holds} bookings waiting for payment. Pay for or "
                           "cancel one of them in My bookings first.")
    if not is_free(car.id, trip):
        raise CarTaken(TAKEN_MESSAGE, alternatives(trip, car, customer=customer))
    tables = load_rate_tables()
    quote = price(car, trip, extras, young_driver=is_young_driver(customer, trip), tables=tables)
    if expected_total_pence is not None and quote.total_pence != expected_total_pence:
        raise PriceChanged(quote)
    chosen = pricing.validate_extras(tables, extras)
    car_id = car.id
    for _attempt in range(3):
        hire = Hire(
            reference=_new_reference(), customer=customer, car=car, car_id=car.id,
            pickup_branch=trip.pickup_branch, return_branch=trip.return_branch,
            start_at=trip.start, end_at=trip.end,
            state=S.HELD.value, price_lines=quote.stored_lines(), total_pence=quote.total_pence,
            vat_pence=quote.vat_pence, deposit_pence=quote.deposit_pence,
            currency=cfg["DEFAULT_CURRENCY"], extras=dict(chosen), idempotency_key=idempotency_key,
            hold_expires_at=now + timedelta(minutes=cfg["HOLD_MINUTES"]), created_at=now,
        )
        hire.occupy(until=trip.until())
        hire.state_changes.append(HireStateChange(
            from_state=None, to_state=S.HELD.value, by_user_id=customer.id, at=now,
            reason=f"booked online; held for {cfg['HOLD_MINUTES']} minutes awaiting payment"))
        db.session.add(hire)
        try:
            db.session.commit()
        except IntegrityError as exc:
            db.session.rollback()
            violated = _violated(exc)
            if "idempotency_key" in violated:  # a double-click won the race: same hire
                return _same_customer(hire_by_key(idempotency_key), customer)
            if "reference" in violated:
                continue  # a new reference collided: try another
            if NO_OVERLAP_CONSTRAINT in violated:
                log().info("hold lost the race for a car", car_id=car_id)
                car = bookable_car(car_id, trip)
                raise CarTaken(TAKEN_MESSAGE, alternatives(trip, car, customer=customer))
            raise
        log().info("hire held", hire_id=hire.id, reference=hire.reference, car_id=hire.car_id)
        return hire
    raise BookingError("We could not create your booking. Please try again.")


def same_booking(customer: User, car_id: int, trip: Trip) -> Hire | None:
    """The customer's live booking of this car for exactly this trip, if there is one."""
    return db.session.scalar(select(Hire).where(
        Hire.customer_id == customer.id, Hire.car_id == car_id, Hire.start_at == trip.start,
        Hire.end_at == trip.end, Hire.state.in_([s.value for s in UPCOMING_STATES])))


def _same_customer(hire: Hire | None, customer: User) -> Hire:
    if hire is None or hire.customer_id != customer.id:
        raise BookingError("This booking form has already been used. Please search again.")
    return hire


def payment_url_or_none() -> str | None:
    return "payments.start" if "payments.start" in current_app.view_functions else None


def _lock(hire: Hire) -> Hire:
    """Re-read the hire under a row lock (PostgreSQL), so two jobs cannot move it at once."""
    return db.session.scalars(
        select(Hire).where(Hire.id == hire.id).with_for_update()
        .execution_options(populate_existing=True)).one()


def confirm_hire(hire: Hire, *, by: Optional[User], now: datetime) -> Hire:
    """held -> confirmed (payment arrived); queues the booking-confirmed email exactly once.

    Safe to call again: a confirmed (or later) hire is left as it is and no second email is
    queued. A hold that already expired or was cancelled raises InvalidTransition: the
    caller must give the money back.
    """
    hire = _lock(hire)
    if hire.hire_state == S.HELD:
        hire.transition(S.CONFIRMED, by=by, why="payment received", now=now)
        hire.hold_expires_at = None
        db.session.commit()
        log().info("hire confirmed", hire_id=hire.id, reference=hire.reference)
    elif hire.hire_state in (S.CONFIRMED, S.ACTIVE, S.RETURNED, S.CLOSED):
        db.session.commit()  # release the lock
    else:
        db.session.rollback()
        raise InvalidTransition(f"A {hire.state} hire cannot be confirmed")
    from . import emails
    emails.queue_confirmed(hire, now=now)
    return hire


# --- cancelling ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CancelPolicy:
    free_hours: int
    fee_pence: int
    fee_percent: int

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "CancelPolicy":
        return cls(cfg["FREE_CANCEL_HOURS"], cfg["CANCEL_FEE_PENCE"], cfg["CANCEL_FEE_PERCENT"])

    def describe(self) -> str:
        fee = f"{self.fee_percent}% of the price" if self.fee_percent > 0 else money(self.fee_pence)
        return f"free until {self.free_hours} hours before pickup, then a fee of {fee}"


def cancellation_refund_pence(hire: Hire, now: datetime, policy: CancelPolicy | None = None) -> int:
    """What a customer gets back for cancelling now, under the named policy.

    A hold was never paid: nothing to refund. Until FREE_CANCEL_HOURS before pickup:
    everything. After that: the price less the fee (CANCEL_FEE_PERCENT of it when set,
    else CANCEL_FEE_PENCE), never below zero. The deposit is a hold, released separately.
    """
    policy = policy or CancelPolicy.from_config(current_app.config)
    if hire.hire_state == S.HELD:
        return 0
    if now <= hire.start_at - timedelta(hours=policy.free_hours):
        return hire.total_pence
    fee = (pricing.percent_of(hire.total_pence, policy.fee_percent) if policy.fee_percent > 0
           else policy.fee_pence)
    return max(hire.total_pence - fee, 0)


def can_cancel(hire: Hire, now: datetime) -> bool:
    return hire.hire_state in CANCELLABLE_STATES and now < hire.start_at


def can_change(hire: Hire, now: datetime) -> bool:
    return hire.hire_state in CANCELLABLE_STATES and now < hire.start_at


def cancel_hire(hire: Hire, *, by: User, now: datetime) -> int:
    """Cancel before pickup; returns the refund payments was asked for (and accepted)."""
    hire = _lock(hire)
    if not can_cancel(hire, now):
        db.session.rollback()
        raise BookingError("This booking can no longer be cancelled online. Please call the branch.")
    policy = CancelPolicy.from_config(current_app.config)
    refund = cancellation_refund_pence(hire, now, policy)
    was_paid = hire.hire_state != S.HELD
    reason = (f"cancelled by {'the customer' if by.id == hire.customer_id else 'staff'}; "
              f"refund {money(refund)} (policy: {policy.describe()})" if was_paid
              else "hold cancelled by the customer before payment")
    hire.transition(S.CANCELLED, by=by, why=reason, now=now)
    hire.hold_expires_at = None
    db.session.commit()
    log().info("hire cancelled", hire_id=hire.id, refund_pence=refund)
    if refund > 0 and not _request_refund(hire, refund, reason, by,
                                          key=f"hire:{hire.id}:cancel-refund"):
        refund = 0  # payments could not give it back: staff follow up from the history
    if was_paid:
        from ..payments import release_deposit
        release_deposit(hire, by, reason="booking cancelled: deposit returned in full", now=now)
    from . import emails
    emails.queue_cancelled(hire, refund_pence=refund, paid=was_paid)
    return refund


def _request_refund(hire: Hire, amount_pence: int, reason: str, by: Optional[User], *,
                    key: str) -> bool:
    """Ask payments to give money back (idempotent by `key`).

    Until the payments area exists the amount is only in the hire's history. If payments
    refuses (say less was paid than the policy would refund), the hire's history says so
    for staff to follow up; the cancellation or change itself stands.
    """
    try:
        from ..payments import RefundError, request_refund
    except ModuleNotFoundError as exc:
        if exc.name != "app.payments.refunds":
            raise
        log().warning("refund recorded only: payments.refunds is not installed",
                      hire_id=hire.id, amount_pence=amount_pence)
        return True
    try:
        request_refund(hire, amount_pence, reason, by, key=key)
        return True
    except RefundError as exc:
        db.session.rollback()
        log().warning("refund refused by payments", hire_id=hire.id, amount_pence=amount_pence,
                      error=str(exc))
        hire.state_changes.append(HireStateChange(
            from_state=hire.state, to_state=hire.state, by_user_id=None,
            reason=f"refund of {money(amount_pence)} not made: {exc}"[:300]))
        db.session.commit()
        return False


# --- changing dates or extras --------------------------------------------------------------

@dataclass(frozen=True)
class ChangePreview:
    trip: Trip
    quote: Quote
    old_total_pence: int

    @property
    def difference_pence(self) -> int:
        return self.quote.total_pence - self.old_total_pence


def trip_for_change(hire: Hire, pickup_local: datetime | None, return_local: datetime | None,
                    now: datetime) -> Trip:
    return make_trip(pickup_branch_id=hire.pickup_branch_id, return_branch_id=hire.return_branch_id,
                     pickup_local=pickup_local, return_local=return_local, now=now)


def preview_change(hire: Hire, trip: Trip, extras: Mapping[str, int], *, now: datetime) -> ChangePreview:
    """Re-quote the hire for new dates or extras (today's rates); CarTaken if the car is busy."""
    if not can_change(hire, now):
        raise BookingError("This booking can no longer be changed online. Please call the branch.")
    if not is_free(hire.car_id, trip, exclude_hire_id=hire.id):
        raise CarTaken("The car is not free for those dates. Try other times, or cancel and "
                       "choose another car.")
    quote = price(hire.car, trip, extras, young_driver=is_young_driver(hire.customer, trip))
    return ChangePreview(trip, quote, hire.total_pence)


def change_hire(hire: Hire, trip: Trip, extras: Mapping[str, int], *, by: User,
                now: datetime) -> ChangePreview:
    """Move the hire to new dates or extras at a new price, if the car is still free.

    A cheaper change of a paid hire asks payments to refund the difference; a dearer one
    leaves the difference to pay (the payment step charges total minus what was paid).
    """
    hire = _lock(hire)
    eligible, why = booking_eligibility(hire.customer, trip.start, trip.end)
    if not eligible:
        db.session.rollback()
        raise NotEligible(why)
    preview = preview_change(hire, trip, extras, now=now)
    chosen = pricing.validate_extras(load_rate_tables(), extras)
    try:  # any flush of the change (an autoflush too) meets the database's no-overlap guard
        _apply_change(hire, preview, chosen, by=by, now=now)
        db.session.commit()
    except IntegrityError as exc:
        db.session.rollback()
        if NO_OVERLAP_CONSTRAINT in _violated(exc):
            raise CarTaken("The car was just taken for those dates. Try other times.")
        raise
    if hire.hire_state == S.CONFIRMED and preview.difference_pence < 0:
        _request_refund(hire, -preview.difference_pence, "booking changed to a cheaper one", by,
                        key=f"hire:{hire.id}:change-refund:{hire.version}")
    from . import emails
    emails.queue_changed(hire, now=now)
    return preview


def _apply_change(hire: Hire, preview: ChangePreview, chosen: Mapping[str, int], *, by: User,
                  now: datetime) -> None:
    """Write the new dates, price and extras on the hire and its occupancy, with the history."""
    trip, quote = preview.trip, preview.quote
    old = (to_local(hire.start_at, hire.pickup_branch.timezone),
           to_local(hire.end_at, hire.return_branch.timezone))
    hire.start_at, hire.end_at = trip.start, trip.end
    hire.price_lines = quote.stored_lines()
    hire.total_pence, hire.vat_pence, hire.deposit_pence = (quote.total_pence, quote.vat_pence,
                                                            quote.deposit_pence)
    hire.extras = dict(chosen)
    if hire.occupancy is not None:
        hire.occupancy.starts_at, hire.occupancy.ends_at = trip.start, trip.until()
    fmt = "%d %b %H:%M"
    hire.state_changes.append(HireStateChange(
        from_state=hire.state, to_state=hire.state, by_user_id=by.id, at=now,
        reason=(f"changed from {old[0]:{fmt}}–{old[1]:{fmt}} to "
                f"{to_local(trip.start, trip.tz):{fmt}}–{to_local(trip.end, trip.return_branch.timezone):{fmt}}; "
                f"price {money(preview.old_total_pence)} -> {money(quote.total_pence)}")[:300]))


# --- the scheduler's work ------------------------------------------------------------------

def expire_held_hires(now: datetime, *, batch: int = 500) -> list[int]:
    """Expire unpaid holds whose time is up, freeing their cars. Safe to run twice or at once."""
    q = (select(Hire).where(Hire.state == S.HELD.value, Hire.hold_expires_at <= now)
         .order_by(Hire.id).limit(batch).with_for_update(skip_locked=True))
    from ..payments import payment_keeps_hold
    expired = []
    for hire in db.session.scalars(q):
        if payment_keeps_hold(hire, now):
            continue  # a crypto payment is on its way or with staff: the car stays held
        hire.transition(S.EXPIRED, by=None, now=now,
                        why=f"not paid within {current_app.config['HOLD_MINUTES']} minutes")
        expired.append(hire.id)
    db.session.commit()
    from . import emails
    for hire_id in expired:
        emails.queue_expired(db.session.get(Hire, hire_id))
    if expired:
        log().info("holds expired", count=len(expired))
    return expired


def queue_due_reminders(now: datetime) -> list[str]:
    """Pickup reminders for tomorrow's hires and return-due reminders; each email once."""
    cfg = current_app.config
    from . import emails
    keys = []
    pickups = db.session.scalars(select(Hire).where(
        Hire.state == S.CONFIRMED.value, Hire.start_at > now,
        Hire.start_at <= now + timedelta(hours=cfg["PICKUP_REMINDER_HOURS"])).order_by(Hire.id))
    for hire in list(pickups):
        keys.append(emails.queue_pickup_reminder(hire).idempotency_key)
    returns = db.session.scalars(select(Hire).where(
        Hire.state == S.ACTIVE.value, Hire.end_at > now,
        Hire.end_at <= now + timedelta(hours=cfg["RETURN_REMINDER_HOURS"])).order_by(Hire.id))
    for hire in list(returns):
        keys.append(emails.queue_return_reminder(hire).idempotency_key)
    return keys


# --- the customer's bookings ------------------------------------------------------------------

@dataclass(frozen=True)
class Ending:
    """A hire that ended without the car going out: when, and the money (paid, refunded)."""

    at: Optional[datetime]
    money: "MoneyBack"


@dataclass(frozen=True)
class MyBookings:
    upcoming: list[Hire]
    active: list[Hire]
    past: list[Hire]
    endings: dict[int, Ending] = field(default_factory=dict)  # by hire id, for ENDED_WITHOUT_HIRE
    under_review: frozenset[int] = frozenset()  # held hires whose payment staff are reviewing


def _endings(hires: list[Hire]) -> dict[int, Ending]:
    """When each hire ended without going out, and what was paid and refunded (from payments)."""
    ended = [h.id for h in hires if h.hire_state in ENDED_WITHOUT_HIRE]
    if not ended:
        return {}
    at = dict(db.session.execute(
        select(HireStateChange.hire_id, func.max(HireStateChange.at))
        .where(HireStateChange.hire_id.in_(ended),
               HireStateChange.to_state.in_([s.value for s in ENDED_WITHOUT_HIRE]),
               HireStateChange.from_state != HireStateChange.to_state)  # not a later note
        .group_by(HireStateChange.hire_id)).all())
    from ..payments import money_back
    money = money_back(ended)
    return {hire_id: Ending(at.get(hire_id), money[hire_id]) for hire_id in ended}


def customer_bookings(customer: User, *, past_limit: int = 50) -> MyBookings:
    """Upcoming (held, confirmed), active (picked up) and past hires of one customer; for
    past ones that never went out, when they ended and what was refunded."""
    base = (select(Hire).where(Hire.customer_id == customer.id)
            .options(joinedload(Hire.car).joinedload(Car.car_class),
                     joinedload(Hire.pickup_branch), joinedload(Hire.return_branch)))
    upcoming = list(db.session.scalars(base.where(
        Hire.state.in_([s.value for s in UPCOMING_STATES])).order_by(Hire.start_at)))
    active = list(db.session.scalars(base.where(Hire.state == S.ACTIVE.value).order_by(Hire.end_at)))
    past = list(db.session.scalars(base.where(
        Hire.state.not_in([s.value for s in (*UPCOMING_STATES, S.ACTIVE)]))
        .order_by(Hire.start_at.desc()).limit(past_limit)))
    return MyBookings(upcoming, active, past, _endings(past),
                      frozenset(payments_under_review(upcoming)))


def payments_under_review(hires: list[Hire]) -> set[int]:
    """The held hires among `hires` whose payment staff are reviewing: nothing to pay meanwhile."""
    from ..payments import hires_under_review
    return hires_under_review(h.id for h in hires if h.hire_state == S.HELD)


def customer_hire(customer: User, reference: str) -> Hire | None:
    """One of the customer's own hires by reference (None for anyone else's)."""
    return db.session.scalar(select(Hire).where(Hire.reference == reference.upper(),
                                                Hire.customer_id == customer.id))


def occupying(hire: Hire) -> bool:
    return hire.hire_state in OCCUPYING_STATES


# --- calendar entry -----------------------------------------------------------------------------

def hire_ics(hire: Hire, *, now: datetime) -> str:
    """The hire as an iCalendar event (pickup to return), made with the icalendar library."""
    cal = icalendar.Calendar()
    cal.add("prodid", "-//ACME Rentals//Bookings//EN")
    cal.add("version", "2.0")
    cal.add("method", "PUBLISH")
    event = icalendar.Event()
    event.add("uid", f"{hire.reference}@acme-rentals.example")
    event.add("sequence", hire.version)  # a changed booking replaces the earlier entry
    event.add("dtstamp", now.astimezone(timezone.utc))
    event.add("dtstart", hire.start_at.astimezone(timezone.utc))
    event.add("dtend", hire.end_at.astimezone(timezone.utc))
    car = hire.car
    event.add("summary", f"Car hire {hire.reference}: {car.make} {car.model}")
    branch = hire.pickup_branch
    event.add("location", f"ACME Rentals {branch.name}, {branch.address_line1}, {branch.town} "
                          f"{branch.postcode}")
    event.add("description", f"Pick up at {branch.name}, return to {hire.return_branch.name}. "
                             f"Booking reference {hire.reference}. Bring your driving licence.")
    event.add("status", "CONFIRMED")
    cal.add_component(event)
    return cal.to_ical().decode("utf-8")

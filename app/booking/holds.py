"""Holding a car: `create_hold` puts a car on hold for a customer at the server's price
(idempotent by the confirm form's key). Confirming the paid hold is the lifecycle's
(app/booking/lifecycle.py); `confirm_hire` is re-exported here for the callers that knew it here.

A lost race for the car meets the database's no-overlap guard and is answered as `CarTaken`.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Mapping

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..logging_setup import log
from ..models import Hire, HireState, HireStateChange, User
from ..models.hires import NO_OVERLAP_CONSTRAINT, lock_car_calendar
from ..settings import settings
from . import pricing
from .availability import alternatives, bookable_car, is_free
from .eligibility import booking_eligibility, is_young_driver
from .lifecycle import confirm_hire  # noqa: F401  (re-exported: its old home)
from .errors import TAKEN_MESSAGE, BookingError, CarTaken, NotEligible, PriceChanged, violated_constraint
from .my_bookings import UPCOMING_STATES
from .quotes import load_rate_tables, price
from .trips import Trip

S = HireState
REFERENCE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read out over the phone
REFERENCE_LENGTH = 8
REFERENCE_PREFIX = "AC"


def new_idempotency_key() -> str:
    """One per confirm form: posting it again finds the same hire."""
    return secrets.token_urlsafe(24)


def _new_reference() -> str:
    return REFERENCE_PREFIX + "".join(secrets.choice(REFERENCE_ALPHABET)
                                      for _ in range(REFERENCE_LENGTH))


def hire_by_key(key: str) -> Hire | None:
    return db.session.scalar(select(Hire).where(Hire.idempotency_key == key))


def create_hold(*, customer: User, car_id: int, trip: Trip, extras: Mapping[str, int],
                idempotency_key: str, expected_total_pence: int | None, now: datetime) -> Hire:
    """Hold the car for the customer (state `held` for HOLD_MINUTES) at the server's price.

    Idempotent: the same key gives back the same hire, and so does re-posting the same
    booking after the back button. Raises NotEligible, CarTaken (with alternatives),
    PriceChanged or BookingError.
    """
    cfg = settings()
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
    if holds >= cfg.booking.max_holds_per_customer:
        raise BookingError(f"You already have {holds} bookings waiting for payment. Pay for or "
                           "cancel one of them in My bookings first.")
    lock_car_calendar(car.id)  # racers for this car queue here; the loser sees it taken below
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
            pickup_branch_id=trip.pickup_branch.id, return_branch_id=trip.return_branch.id,
            start_at=trip.start, end_at=trip.end,
            state=S.HELD.value, price_lines=quote.stored_lines(), total_pence=quote.total_pence,
            vat_pence=quote.vat_pence, deposit_pence=quote.deposit_pence,
            currency=cfg.money.default_currency, extras=dict(chosen), idempotency_key=idempotency_key,
            hold_expires_at=now + timedelta(minutes=cfg.booking.hold_minutes), created_at=now,
        )
        hire.occupy(until=trip.until())
        hire.state_changes.append(HireStateChange(
            from_state=None, to_state=S.HELD.value, by_user_id=customer.id, at=now,
            reason=f"booked online; held for {cfg.booking.hold_minutes} minutes awaiting payment"))
        db.session.add(hire)
        try:
            db.session().commit_and_keep()  # the redirect reads the hire: not loaded again
        except IntegrityError as exc:
            db.session.rollback()
            violated = violated_constraint(exc)
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

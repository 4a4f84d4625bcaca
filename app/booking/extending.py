"""Extending a hire (issue 18): a later return for a confirmed or active hire, if the car is
free for the extra time (the database's no-overlap guard has the last word), priced with the
same rules, the difference charged to the saved card or left to pay.

A car already with the customer (an active hire) cannot be swapped from afar, as at any
rental counter: when it is booked after them, they are told until when they can keep it
(and can extend up to then), and that for longer they bring it back to the branch by then
and take another car of the class there, which staff at the counter arrange (a return, then
a new hire); whether one is free for the extra time now is said too.

The extra time costs what the whole extended hire costs at today's rates less what the
original one costs at today's rates (never less than nothing): the customer keeps the price
they were given for the time they booked. When the car is not free, the customer is told
until when it is, and (before pickup) offered the same-class cars at the branch that are
free for the whole extended hire.

Two extensions of one hire at once (two tabs, or the customer and the counter): the hire's
row is locked and the form carries the end it was built on, so the second is refused,
never added on top of the first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Optional

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from .. import audit, events
from ..extensions import db
from ..settings import settings
from ..filters import money
from ..logging_setup import log
from ..models import Car, Hire, HireState, HireStateChange, Occupancy, Payment, User
from ..models.hires import NO_OVERLAP_CONSTRAINT, lock_car_calendar
from ..payments import EXTENSION, PaymentError, charge_saved_card, saved_card_of
from . import emails, pricing
from .availability import Offer, bookable_car, is_free, search
from .errors import BookingError, CarTaken, violated_constraint
from .eligibility import is_young_driver
from .lifecycle import lock_hire
from .quotes import price
from .trips import Filters, Trip, local_to_utc, opening_error, to_local

S = HireState
EXTENDABLE_STATES = frozenset({S.CONFIRMED, S.ACTIVE})
END_FORMAT = "%Y-%m-%dT%H:%M:%S%z"  # the end a form was built on (expected_end)


@dataclass(frozen=True)
class ExtensionPreview:
    new_end: datetime
    extra_pence: int
    extra_vat_pence: int
    car_id: int
    free: bool = True
    free_until: Optional[datetime] = None  # not free: the latest return the car allows
    swaps: list[Offer] = field(default_factory=list)  # not free: same-class cars that are
    car_out: bool = False  # not free and the car is already with the customer: no swap online
    free_at_branch: int = 0  # car out: same-class cars at the return branch free for the extra time

    @property
    def new_total_pence(self) -> int:
        return self._old_total + self.extra_pence

    _old_total: int = 0


@dataclass(frozen=True)
class Extended:
    hire: Hire
    extra_pence: int
    payment: Optional[Payment]  # the saved-card charge under way, if there was a card
    to_pay_pence: int  # left to pay (no saved card): the payment page asks for it


def can_extend(hire: Hire, now: datetime) -> bool:
    return hire.hire_state in EXTENDABLE_STATES and now < hire.end_at


def end_token(hire: Hire) -> str:
    return hire.end_at.strftime(END_FORMAT)


def _new_end(hire: Hire, return_local: datetime) -> datetime:
    """The new return as UTC; every rule on it as a message beside the field."""
    branch = hire.return_branch
    try:
        new_end = local_to_utc(return_local, branch.timezone)
    except ValueError:
        raise BookingError({"return_at": "That time does not exist: the clocks go forward an hour then."})
    if new_end <= hire.end_at:
        raise BookingError({"return_at": "Choose a return later than the one booked "
                                         f"({to_local(hire.end_at, branch.timezone):%d %b %H:%M})."})
    max_days = settings().booking.max_hire_days
    if pricing.charged_days(hire.start_at, new_end, settings().money.late_grace_minutes) > max_days:
        raise BookingError({"return_at": f"A hire can be at most {max_days} days."})
    closed = opening_error(branch, return_local)
    if closed:
        raise BookingError({"return_at": closed})
    return new_end


def _trip(hire: Hire, end: datetime) -> Trip:
    return Trip(hire.pickup_branch, hire.return_branch, hire.start_at, end)


def _next_busy(car_id: int, hire: Hire) -> Optional[datetime]:
    """When the car is next taken after this hire (another hire or maintenance)."""
    return db.session.scalar(
        select(Occupancy.starts_at).where(
            Occupancy.car_id == car_id, Occupancy.starts_at >= hire.end_at,
            (Occupancy.hire_id.is_(None)) | (Occupancy.hire_id != hire.id))
        .order_by(Occupancy.starts_at).limit(1))


def preview_extension(hire: Hire, return_local: datetime, *, now: datetime,
                      swap_car_id: Optional[int] = None) -> ExtensionPreview:
    """The price of the extra time and whether the car (or the chosen swap) is free for it."""
    if not can_extend(hire, now):
        raise BookingError("Only a confirmed booking, or a car on hire, can be extended before it ends.")
    new_end = _new_end(hire, return_local)
    trip = _trip(hire, new_end)
    car = hire.car
    if swap_car_id is not None and swap_car_id != hire.car_id:
        if hire.hire_state != S.CONFIRMED:
            raise BookingError(f"The car is already with you, so it cannot be swapped from here: bring "
                               f"it back to {hire.return_branch.name} and the counter will hand you "
                               f"another {hire.car.car_class.name} car for the extra time.")
        car = bookable_car(swap_car_id, trip)
        if car.car_class_id != hire.car.car_class_id:
            raise BookingError("Choose a car of the same class.")
    young = is_young_driver(hire.customer, trip)
    extras = dict(hire.extras or {})
    new_quote = price(car, trip, extras, young_driver=young)
    old_quote = price(hire.car, _trip(hire, hire.end_at), extras, young_driver=young)
    extra = max(new_quote.total_pence - old_quote.total_pence, 0)
    extra_vat = max(new_quote.vat_pence - old_quote.vat_pence, 0) if extra else 0
    if is_free(car.id, trip, exclude_hire_id=hire.id):
        return ExtensionPreview(new_end, extra, extra_vat, car.id, _old_total=hire.total_pence)
    busy = _next_busy(car.id, hire)
    free_until = busy - (trip.until() - trip.end) if busy is not None else None
    swaps, free_at_branch = [], 0
    same_class = Filters(car_class=hire.car.car_class.code)
    if hire.hire_state == S.CONFIRMED:
        swaps = [o for o in search(trip, same_class, customer=hire.customer, limit=4).offers
                 if o.car.id != car.id][:3]
    else:  # the car is out: another one could only be taken at the branch, for the extra time
        extra_time = Trip(hire.return_branch, hire.return_branch, hire.end_at, new_end)
        free_at_branch = len([o for o in search(extra_time, same_class, customer=hire.customer, limit=4).offers
                              if o.car.id != car.id])
    return ExtensionPreview(new_end, extra, extra_vat, car.id, free=False,
                            free_until=free_until if free_until and free_until > hire.end_at else None,
                            swaps=swaps, car_out=hire.hire_state == S.ACTIVE,
                            free_at_branch=free_at_branch, _old_total=hire.total_pence)


def not_free_message(hire: Hire, preview: ExtensionPreview) -> str:
    tz = hire.return_branch.timezone
    until = (f"{to_local(preview.free_until, tz):%a %d %b %H:%M}" if preview.free_until is not None
             else None)
    if preview.car_out:
        branch, car_class = hire.return_branch.name, hire.car.car_class.name
        kept = (f"The car you have is booked after you: you can keep it until {until} at the latest."
                if until else "The car you have is booked straight after you: it cannot be kept longer.")
        there = (f"another {car_class} car is free there for that time now"
                 if preview.free_at_branch else
                 f"no other {car_class} car is free there for that time at the moment, so call the branch first")
        return (f"{kept} It cannot be swapped from here, as it is already with you. To keep a car longer, "
                f"bring it back to {branch} by {until or 'its booked return'} and the counter will hand "
                f"you another {car_class} car for the extra time ({there}).")
    if until is not None:
        return f"The car is booked after you: it is free only until {until}."
    return "The car is not free for that time."


def longest_extension(hire: Hire, preview: ExtensionPreview) -> Optional[datetime]:
    """Not free: the latest local return the car allows, if later than the booked one (a whole
    quarter hour, so the form accepts it), for a "extend until then" link."""
    if preview.free_until is None:
        return None
    until = to_local(preview.free_until, hire.return_branch.timezone).replace(second=0, microsecond=0)
    until -= timedelta(minutes=until.minute % 15)
    return until if local_to_utc(until, hire.return_branch.timezone) > hire.end_at else None


def extend_hire(hire: Hire, return_local: datetime, *, by: User, now: datetime,
                expected_extra: Optional[int], expected_end: str,
                swap_car_id: Optional[int] = None) -> Extended:
    """Extend the hire to `return_local`, as the confirm step showed it; then take the money.

    Refused (BookingError) when the hire changed since the page was built, the price differs
    from the one shown, or the car is not free (CarTaken, whoever got there first).
    """
    hire = lock_hire(hire)
    if expected_end != end_token(hire):
        db.session.rollback()
        raise BookingError("This booking was changed a moment ago (now it ends "
                           f"{to_local(hire.end_at, hire.return_branch.timezone):%a %d %b %H:%M}). "
                           "Check the new end and extend again if you still need to.")
    lock_car_calendar(swap_car_id or hire.car_id)
    preview = preview_extension(hire, return_local, now=now, swap_car_id=swap_car_id)
    if not preview.free:
        db.session.rollback()
        raise CarTaken(not_free_message(hire, preview))
    if expected_extra is None or expected_extra != preview.extra_pence:
        db.session.rollback()
        raise BookingError({"": f"The extension now costs {money(preview.extra_pence)}, not what "
                                 "you were shown. Please check it and confirm again."})
    old_end, old_car = hire.end_at, hire.car
    try:  # any flush (an autoflush too) meets the no-overlap guard and the version check
        _apply(hire, preview, by=by, now=now)
        db.session.commit()
    except IntegrityError as exc:
        db.session.rollback()
        if NO_OVERLAP_CONSTRAINT in violated_constraint(exc):
            raise CarTaken("The car was just taken for that time.")
        raise
    except StaleDataError:  # SQLite has no row lock: the version check catches the other writer
        db.session.rollback()
        raise BookingError("This booking was changed a moment ago. Check its new end and extend "
                           "again if you still need to.")
    log().info("hire extended", hire_id=hire.id, extra_pence=preview.extra_pence)
    events.hire_extended.send(hire, old_end=old_end, new_end=hire.end_at,
                              extra_pence=preview.extra_pence, by=by, now=now,
                              old_car_id=old_car.id)
    emails.queue_changed(hire, now=now)
    return _take_money(hire, preview.extra_pence, by=by, now=now)


def _apply(hire: Hire, preview: ExtensionPreview, *, by: User, now: datetime) -> None:
    tz = hire.return_branch.timezone
    old = {"end_at": hire.end_at, "total_pence": hire.total_pence, "car_id": hire.car_id}
    trip = _trip(hire, preview.new_end)
    if preview.car_id != hire.car_id:
        hire.car_id = preview.car_id
        hire.car = db.session.get(Car, preview.car_id)
        if hire.occupancy is not None:
            hire.occupancy.car_id = preview.car_id
    hire.end_at = preview.new_end
    if hire.occupancy is not None:
        hire.occupancy.ends_at = trip.until()
    label = f"Extension to {to_local(preview.new_end, tz):%a %d %b %H:%M} (incl. VAT)"
    hire.price_lines = [*hire.price_lines,
                        {"code": "extension", "label": label, "amount_pence": preview.extra_pence}]
    hire.total_pence += preview.extra_pence
    hire.vat_pence += preview.extra_vat_pence
    hire.state_changes.append(HireStateChange(
        from_state=hire.state, to_state=hire.state, by_user_id=by.id, at=now,
        reason=(f"extended from {to_local(old['end_at'], tz):%d %b %H:%M} to "
                f"{to_local(preview.new_end, tz):%d %b %H:%M} for {money(preview.extra_pence)}"
                + (f"; car swapped to {hire.car.plate}" if old["car_id"] != hire.car_id else ""))[:300]))
    audit.record(by, "hire.extended", hire, old, {"end_at": hire.end_at, "total_pence": hire.total_pence,
                                                   "car_id": hire.car_id}, at=now)


def _take_money(hire: Hire, extra: int, *, by: User, now: datetime) -> Extended:
    """The saved card is charged (a job calls Stripe); without one, it is left to pay."""
    if extra <= 0:
        return Extended(hire, extra, None, 0)
    if saved_card_of(hire) is not None:
        try:
            payment = charge_saved_card(hire, extra, f"extension to {hire.end_at:%Y-%m-%d %H:%M} UTC", by,
                                        now=now, key=f"hire:{hire.id}:extension:{hire.version}",
                                        charge_purpose=EXTENSION)
            return Extended(hire, extra, payment, 0)
        except PaymentError as exc:
            log().warning("extension not charged to the saved card", hire_id=hire.id, error=exc.message)
    return Extended(hire, extra, None, extra)

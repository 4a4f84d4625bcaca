"""Changing a booking's dates or extras: re-quote at today's rates, check the car is still
free (the database's no-overlap guard has the last word), write the change with its history,
and refund the difference of a cheaper change."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Mapping

from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..filters import money
from ..models import Hire, HireState, HireStateChange, User
from ..models.hires import NO_OVERLAP_CONSTRAINT, lock_car_calendar
from . import emails, pricing
from .availability import is_free
from .eligibility import booking_eligibility, is_young_driver
from .errors import BookingError, CarTaken, NotEligible, violated_constraint
from .lifecycle import lock_hire, request_refund_or_note
from .pricing import Quote
from .quotes import load_rate_tables, price
from .trips import Trip, make_trip, to_local

S = HireState


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
    if not hire.can_change(now):
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
    hire = lock_hire(hire)
    eligible, why = booking_eligibility(hire.customer, trip.start, trip.end)
    if not eligible:
        db.session.rollback()
        raise NotEligible(why)
    lock_car_calendar(hire.car_id)
    preview = preview_change(hire, trip, extras, now=now)
    chosen = pricing.validate_extras(load_rate_tables(), extras)
    try:  # any flush of the change (an autoflush too) meets the database's no-overlap guard
        _apply_change(hire, preview, chosen, by=by, now=now)
        db.session.commit()
    except IntegrityError as exc:
        db.session.rollback()
        if NO_OVERLAP_CONSTRAINT in violated_constraint(exc):
            raise CarTaken("The car was just taken for those dates. Try other times.")
        raise
    if hire.hire_state == S.CONFIRMED and preview.difference_pence < 0:
        request_refund_or_note(hire, -preview.difference_pence, "booking changed to a cheaper one",
                               by, key=f"hire:{hire.id}:change-refund:{hire.version}")
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

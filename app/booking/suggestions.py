"""When a search finds no free car: say why, and where or when there are cars.

Why: the branch has no car that matches the filters at all (then the filters are the
problem), or every car that matches is booked for those dates. What else: the nearest
dates before and after, same times and length, within SEARCH_NEAREST_DATES_DAYS, that have
a free car (each a check of the branch's opening hours and the booking window, then one
count); and the other branches with a free car for the same dates. Each suggestion is a
search the customer can open in one click.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, select

from .. import refdata
from ..extensions import db
from ..filters import local_time
from ..models import Car
from ..refdata import BranchRef
from .availability import available_cars_query, with_filters
from .errors import BookingError
from .trips import SORTS, Filters, Trip, make_trip, to_local

LOCAL_FORMAT = "%Y-%m-%dT%H:%M"


@dataclass(frozen=True)
class Suggestion:
    """Another search that has free cars: what to show and the search's URL arguments."""
    label: str
    cars: int
    args: dict[str, str]


@dataclass(frozen=True)
class NothingFree:
    reason: str  # "filters": no car matches them at the branch; "booked": all are booked
    message: str
    nearest_dates: list[Suggestion] = field(default_factory=list)
    other_branches: list[Suggestion] = field(default_factory=list)
    without_filters: dict[str, str] | None = None  # the same search with no filters


def filter_args(filters: Filters) -> dict[str, str]:
    """URL arguments that reproduce the filters and the order."""
    args = {"car_class": filters.car_class, "seats": str(filters.min_seats or ""),
            "transmission": filters.transmission, "fuel": filters.fuel_type}
    args = {k: v for k, v in args.items() if v}
    if filters.sort != SORTS[0][0]:
        args["sort"] = filters.sort
    return args


def search_args(trip: Trip, filters: Filters) -> dict[str, str]:
    """URL arguments for the search page that ask this trip with these filters."""
    return {"pickup_branch": str(trip.pickup_branch.id), "return_branch": str(trip.return_branch.id),
            "pickup_at": to_local(trip.start, trip.pickup_branch.timezone).strftime(LOCAL_FORMAT),
            "return_at": to_local(trip.end, trip.return_branch.timezone).strftime(LOCAL_FORMAT),
            **filter_args(filters)}


def free_cars(trip: Trip, filters: Filters) -> int:
    """How many cars are free for the trip with these filters (one statement)."""
    row = db.session.execute(available_cars_query(trip, filters, limit=1)).first()
    return row.matches if row else 0


def cars_matching(branch: BranchRef, filters: Filters) -> int:
    """Cars at the branch that match the filters, booked or not."""
    q = (select(func.count(Car.id)).join(Car.car_class)
         .where(Car.status == "available", Car.home_branch_id == branch.id))
    q = with_filters(q, filters)
    return db.session.scalar(q) or 0


def _moved(trip: Trip, *, days: int = 0, pickup: BranchRef | None = None,
           to: BranchRef | None = None, now: datetime) -> Trip | None:
    """The same trip some days earlier or later, or from another branch; None when that
    trip cannot be booked (closed, in the past, beyond the booking window)."""
    shift = timedelta(days=days)
    try:
        return make_trip(
            pickup_branch_id=(pickup or trip.pickup_branch).id,
            return_branch_id=(to or trip.return_branch).id,
            pickup_local=to_local(trip.start, trip.pickup_branch.timezone) + shift,
            return_local=to_local(trip.end, trip.return_branch.timezone) + shift, now=now)
    except BookingError:
        return None


def _dates_label(trip: Trip) -> str:
    start = local_time(trip.start, trip.pickup_branch.timezone, "%a %d %b %H:%M")
    end = local_time(trip.end, trip.return_branch.timezone, "%a %d %b %H:%M")
    return f"{start} to {end}"


def nearest_dates(trip: Trip, filters: Filters, *, now: datetime) -> list[Suggestion]:
    """The nearest earlier and the nearest later dates (same times, same length) with a
    free car, looking at most SEARCH_NEAREST_DATES_DAYS days either way; nearest first."""
    found: dict[int, Suggestion] = {}  # -1: earlier, +1: later
    for days in range(1, current_app.config["SEARCH_NEAREST_DATES_DAYS"] + 1):
        for direction in (-1, 1):
            if direction in found:
                continue
            moved = _moved(trip, days=direction * days, now=now)
            if moved is None:
                continue
            cars = free_cars(moved, filters)
            if cars:
                found[direction] = Suggestion(_dates_label(moved), cars, search_args(moved, filters))
        if len(found) == 2:
            break
    return list(found.values())


def other_branches(trip: Trip, filters: Filters, *, now: datetime) -> list[Suggestion]:
    """Other branches with a free car for the same dates (a round trip stays a round trip)."""
    suggestions = []
    for branch in refdata.current().branches:  # by name (app/refdata.py: no query)
        if branch.id == trip.pickup_branch.id:
            continue
        to = branch if not trip.one_way or trip.return_branch.id == branch.id else trip.return_branch
        moved = _moved(trip, pickup=branch, to=to, now=now)
        if moved is None:
            continue
        cars = free_cars(moved, filters)
        if cars:
            suggestions.append(Suggestion(branch.name, cars, search_args(moved, filters)))
    return suggestions


def nothing_free(trip: Trip, filters: Filters, *, now: datetime) -> NothingFree:
    """Why a search found no free car, and the searches nearby that do."""
    branch = trip.pickup_branch.name
    matching = cars_matching(trip.pickup_branch, filters)
    without = None
    if filters.narrowed():
        without = search_args(trip, Filters(sort=filters.sort))
    if matching == 0:
        if filters.narrowed():
            reason, message = "filters", f"No car at {branch} matches these filters."
        else:
            reason, message = "filters", f"{branch} has no cars to hire at the moment."
    else:
        which = "that match these filters " if filters.narrowed() else ""
        cars = "The only car" if matching == 1 else f"All {matching} cars"
        verb = "is" if matching == 1 else "are"
        reason, message = "booked", f"{cars} at {branch} {which}{verb} booked for these dates."
    return NothingFree(reason, message,
                       nearest_dates(trip, filters, now=now) if matching else [],
                       other_branches(trip, filters, now=now), without)

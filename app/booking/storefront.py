"""The storefront's facts: what the home page and the car pages tell a customer before they
book, read from the rate tables and settings (never typed into a template).

- `car_classes_on_offer`: each class with cars to hire, its picture and its "from" price a day;
- `included_terms`: mileage, cover, deposit, fuel, cancellation... in plain words;
- `branch_hours`: a branch's opening hours, days with the same hours run together;
- `extra_terms`: an extra's price and how it is charged, shown next to it before it is picked;
- `default_search_args`: the first search a visitor sees (next open day, three days).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from flask import current_app
from sqlalchemy import func, select

from ..extensions import db
from ..filters import money
from ..models import Branch, Car, CarClass, DurationTier, Extra
from ..settings import settings
from . import pricing
from .cancellation import CancelPolicy
from .quotes import active_extras
from .trips import DAY_NAMES, default_trip_times

# The class pictures (static/img/classes/<code>.svg); a class without one shows the generic car.
CLASS_PICTURE_DIR = "img/classes"
GENERIC_PICTURE = "car.svg"
EXAMPLE_MODELS_SHOWN = 3


@dataclass(frozen=True)
class ClassOffer:
    """A car class as the home page shows it."""
    car_class: CarClass
    picture: str  # a path under static/
    from_per_day_pence: int  # the cheapest car of the class for one day, VAT included
    cars: int
    min_seats: int
    max_seats: int
    examples: tuple[str, ...]  # "Fiat 500", ...


@lru_cache(maxsize=64)
def _picture_exists(static_folder: str, name: str) -> bool:
    return (Path(static_folder) / CLASS_PICTURE_DIR / name).is_file()


def class_picture(code: str) -> str:
    """The static path of a class's illustration (the generic car when it has none)."""
    name = f"{code}.svg"
    if not _picture_exists(current_app.static_folder or "", name):
        name = GENERIC_PICTURE
    return f"{CLASS_PICTURE_DIR}/{name}"


def with_vat(pence: int, vat_percent: int) -> int:
    """A price before VAT with VAT added, rounded as the price engine rounds it."""
    return pence + pricing.percent_of(pence, vat_percent)


def car_classes_on_offer(*, vat_percent: int | None = None) -> list[ClassOffer]:
    """The classes that have cars to hire, cheapest first, each with its "from" price a day.

    "From" is the cheapest car of the class (a car may have its own rate) for one day, VAT
    included, before weekend or season adjustments and longer-hire discounts.
    """
    vat = settings().money.vat_percent if vat_percent is None else vat_percent
    rate = func.coalesce(Car.daily_rate_override_pence, CarClass.daily_rate_pence)
    rows = db.session.execute(
        select(CarClass, func.min(rate), func.count(Car.id), func.min(Car.seats), func.max(Car.seats))
        .join(Car, Car.car_class_id == CarClass.id)
        .where(Car.status == "available")
        .group_by(CarClass.id)
        .order_by(func.min(rate), CarClass.name)).all()
    examples: dict[int, list[str]] = {}
    for class_id, make, model in db.session.execute(
            select(Car.car_class_id, Car.make, Car.model).where(Car.status == "available")
            .order_by(Car.car_class_id, Car.id)):
        names = examples.setdefault(class_id, [])
        name = f"{make} {model}"
        if name not in names and len(names) < EXAMPLE_MODELS_SHOWN:
            names.append(name)
    return [ClassOffer(cls, class_picture(cls.code), with_vat(cheapest, vat), count, low, high,
                       tuple(examples.get(cls.id, ())))
            for cls, cheapest, count, low, high in rows]


@dataclass(frozen=True)
class Term:
    """One thing included (or charged), in plain words."""
    key: str
    title: str
    text: str


def _range(values: Iterable[int], fmt) -> str:
    values = sorted(set(values))
    if not values:
        return ""
    return fmt(values[0]) if len(values) == 1 else f"{fmt(values[0])} to {fmt(values[-1])}"


def included_terms(offers: list[ClassOffer]) -> list[Term]:
    """What every hire includes and what it may cost on top, from the settings and tables."""
    s = settings()
    money_rules, licence_rules = s.money, s.licence
    classes = [o.car_class for o in offers]
    terms: list[Term] = []
    vat = money_rules.vat_percent

    miles = _range((c.mileage_allowance_per_day for c in classes), lambda m: f"{m}")
    if miles:
        terms.append(Term("mileage", "Mileage",
                          f"{miles} miles a day included, added up over the whole hire"
                          f"{' (by class)' if ' to ' in miles else ''}; beyond that "
                          f"{money(money_rules.excess_mileage_pence_per_mile)} a mile."))

    covers = [e for e in active_extras() if e.group == "cover"]
    cover_text = "Basic cover is included in every price."
    if covers:
        options = "; ".join(f"{e.name}: {extra_terms(e, vat_percent=vat)}"
                            + (f" ({e.description.rstrip('.')})" if e.description else "")
                            for e in covers)
        cover_text += f" To pay less if the car is damaged or stolen, add one when you book: {options}."
    terms.append(Term("cover", "Cover", cover_text))

    deposits = _range((c.deposit_pence for c in classes), money)
    if deposits:
        terms.append(Term("deposit", "Deposit",
                          f"{deposits}{' by class' if ' to ' in deposits else ''}, refundable. "
                          f"Paying by card, it is held on your card (not taken) from "
                          f"{_days(money_rules.deposit_hold_lead_days)} before pickup and released "
                          "when the car comes back, less any charges for the return."))

    terms.append(Term("cancellation", "Cancellation",
                      CancelPolicy.from_settings(money_rules).describe().capitalize() + "."))
    terms.append(Term("fuel", "Fuel",
                      "Bring the car back with as much fuel as it had at pickup; otherwise "
                      f"{money(money_rules.fuel_price_per_eighth_pence)} for each eighth of a tank "
                      f"plus a {money(money_rules.refuelling_fee_pence)} refuelling fee."))
    tiers = list(db.session.scalars(select(DurationTier).where(DurationTier.percent_off > 0)
                                    .order_by(DurationTier.min_days)))
    if tiers:
        terms.append(Term("longer", "Longer hires",
                          "; ".join(f"{t.percent_off}% off the rental for {t.min_days} days or more"
                                    for t in tiers) + "."))
    terms.append(Term("drivers", "Drivers",
                      f"Aged {licence_rules.legal_driving_age} or over with a full driving licence; drivers "
                      f"aged {licence_rules.young_driver_max_age} or under pay "
                      f"{money(with_vat(money_rules.young_driver_daily_pence, vat))} a day "
                      f"(at most {money(with_vat(money_rules.young_driver_cap_pence, vat))} a hire)."))
    terms.append(Term("prices", "Prices",
                      f"Include VAT at {vat}%. Returning the car to another branch adds a "
                      "one-way fee, shown in the price before you book."))
    return terms


def _days(n: int) -> str:
    return "a day" if n == 1 else f"{n} days"


def branch_hours(branch: Branch) -> list[tuple[str, str]]:
    """A branch's week as [("Monday to Friday", "08:00–18:00"), ("Sunday", "closed")]."""
    hours = branch.opening_hours or {}
    rows: list[tuple[list[str], str]] = []
    for key in pricing.WEEKDAY_KEYS:
        span = hours.get(key)
        text = f"{span[0]}–{span[1]}" if span else "closed"
        if rows and rows[-1][1] == text:
            rows[-1][0].append(key)
        else:
            rows.append(([key], text))
    named = lambda key: DAY_NAMES[key][:-1]  # noqa: E731  ("Mondays" -> "Monday")
    return [(named(days[0]) if len(days) == 1 else f"{named(days[0])} to {named(days[-1])}", text)
            for days, text in rows]


def extra_terms(extra: Extra | pricing.ExtraRate, *, vat_percent: int | None = None) -> str:
    """How an extra is charged, before it is picked: "£6.00 a day, at most £36.00 a hire".

    The amounts are before VAT, as the price breakdown beside them lists them, unless
    `vat_percent` is given (the home page, where every price includes VAT).
    """
    def shown(pence: int) -> str:
        return money(pence if vat_percent is None else with_vat(pence, vat_percent))

    if extra.per_day_pence == 0:
        return "free"
    each = " each" if extra.max_quantity > 1 else ""
    text = f"{shown(extra.per_day_pence)} a day{each}"
    if extra.cap_pence is not None:
        text += f", at most {shown(extra.cap_pence)}{each} a hire"
    return text + (" + VAT" if vat_percent is None else "")


def default_search_args(branches: list[Branch], now: datetime) -> dict[str, str]:
    """A first search: the first branch, the next open day at 10:00, three days."""
    if not branches:
        return {}
    branch = branches[0]
    start, end = default_trip_times(branch, now)
    return {"pickup_branch": str(branch.id), "return_branch": str(branch.id),
            "pickup_at": start.strftime("%Y-%m-%dT%H:%M"),
            "return_at": end.strftime("%Y-%m-%dT%H:%M")}

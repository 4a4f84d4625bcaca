"""The server's price for a car and a trip: the named rate tables from the reference data
(app/refdata.py: read once per worker, checked once per request) and settings, handed to the
pure price engine (`pricing.py`)."""

from __future__ import annotations

from typing import Mapping

from .. import refdata
from ..models import Car
from ..refdata import ExtraRef
from ..settings import MoneySettings, settings
from . import pricing
from .errors import BookingError
from .pricing import PricingError, Quote, RateTables
from .trips import Trip


def load_rate_tables() -> RateTables:
    """The named rate tables as the price engine wants them (reference data + settings),
    built once per reference-data snapshot and money settings (app/refdata.py)."""
    reference = refdata.current()
    money = settings().money  # the same object until the config changes (app/settings.py)
    return reference.derived(("booking.rate_tables", money), lambda: _rate_tables(reference, money))


def _rate_tables(reference: refdata.Reference, money: MoneySettings) -> RateTables:
    return RateTables(
        tiers=tuple(pricing.Tier(t.min_days, t.percent_off) for t in reference.tiers),
        seasons=tuple(pricing.SeasonRule(s.code, s.name, s.starts_on, s.ends_on, s.percent)
                      for s in reference.seasons),
        extras=tuple(pricing.ExtraRate(e.code, e.name, e.per_day_pence, e.cap_pence,
                                       e.max_quantity, e.group) for e in reference.extras),
        one_way_fees=dict(reference.one_way_fees),
        one_way_default_pence=money.one_way_default_fee_pence,
        weekend_days=frozenset(money.weekend_days), weekend_percent=money.weekend_surcharge_percent,
        young_driver_per_day_pence=money.young_driver_daily_pence,
        young_driver_cap_pence=money.young_driver_cap_pence,
        vat_percent=money.vat_percent, grace_minutes=money.late_grace_minutes,
    )


def active_extras() -> list[ExtraRef]:
    """The extras customers can choose, in the order they see them (reference data)."""
    return list(refdata.current().extras)


def daily_rate_pence(car: Car) -> int:  # or availability.CarView
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

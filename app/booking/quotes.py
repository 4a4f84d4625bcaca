"""The server's price for a car and a trip: the named rate tables read from the database
and settings, handed to the pure price engine (`pricing.py`)."""

from __future__ import annotations

from typing import Mapping


from sqlalchemy import select

from ..extensions import db
from ..models import Car, DurationTier, Extra, OneWayFee, Season
from ..settings import settings
from . import pricing
from .errors import BookingError
from .pricing import PricingError, Quote, RateTables
from .trips import Trip


def load_rate_tables() -> RateTables:
    """The named rate tables as the price engine wants them (database tables + settings)."""
    cfg = settings()
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
        one_way_default_pence=cfg.money.one_way_default_fee_pence,
        weekend_days=frozenset(cfg.money.weekend_days), weekend_percent=cfg.money.weekend_surcharge_percent,
        young_driver_per_day_pence=cfg.money.young_driver_daily_pence,
        young_driver_cap_pence=cfg.money.young_driver_cap_pence,
        vat_percent=cfg.money.vat_percent, grace_minutes=cfg.money.late_grace_minutes,
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

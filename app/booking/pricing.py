"""The price engine: pure functions over named rate tables. No database, no Flask.

Everything is integer pence. A hire is charged by 24-hour periods counted on the real
(UTC) clock, so the night the clocks go forward is 23 hours and the night they go back
is 25 hours; `grace_minutes` past a whole period cost nothing. Weekend and season rules
apply per charged period, by the branch's local date at the start of that period.

Order of the lines (each one rounded half-up to whole pence):
rental (days x daily rate) -> duration-tier discount (on the rental) -> weekend and
season adjustments (per period, on the daily rate) -> extras (per day, capped per
rental) -> young-driver surcharge (per day, capped) -> one-way fee -> VAT on the sum.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Mapping, Sequence
from zoneinfo import ZoneInfo

from ..errors import FieldErrors

MINUTES_PER_PERIOD = 24 * 60
WEEKDAY_KEYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class PricingError(FieldErrors):
    """The request cannot be priced (unknown extra, too many of one, two cover levels...)."""


@dataclass(frozen=True)
class Tier:
    """Hires of at least `min_days` periods get `percent_off` the rental."""
    min_days: int
    percent_off: int


@dataclass(frozen=True)
class SeasonRule:
    """Periods starting on a local date within [starts_on, ends_on] cost `percent` more (or less)."""
    code: str
    name: str
    starts_on: date
    ends_on: date
    percent: int


@dataclass(frozen=True)
class ExtraRate:
    """An optional extra: per day, capped per unit per rental; one of a `group` at most."""
    code: str
    name: str
    per_day_pence: int
    cap_pence: int | None = None
    max_quantity: int = 1
    group: str = ""


@dataclass(frozen=True)
class RateTables:
    tiers: Sequence[Tier] = ()
    seasons: Sequence[SeasonRule] = ()
    extras: Sequence[ExtraRate] = ()
    one_way_fees: Mapping[tuple[int, int], int] = field(default_factory=dict)
    one_way_default_pence: int = 0
    weekend_days: frozenset[str] = frozenset({"sat", "sun"})
    weekend_percent: int = 0
    young_driver_per_day_pence: int = 0
    young_driver_cap_pence: int | None = None
    vat_percent: int = 20
    grace_minutes: int = 0

    def extra(self, code: str) -> ExtraRate | None:
        return next((e for e in self.extras if e.code == code), None)


@dataclass(frozen=True)
class PriceLine:
    code: str
    label: str
    amount_pence: int

    def as_dict(self) -> dict:
        return {"code": self.code, "label": self.label, "amount_pence": self.amount_pence}


@dataclass(frozen=True)
class Quote:
    days: int
    daily_rate_pence: int
    lines: tuple[PriceLine, ...]  # before VAT
    subtotal_pence: int
    vat_pence: int
    total_pence: int
    deposit_pence: int
    vat_percent: int

    @property
    def vat_line(self) -> PriceLine:
        return PriceLine("vat", f"VAT {self.vat_percent}%", self.vat_pence)

    def stored_lines(self) -> list[dict]:
        """What a hire freezes: every line including VAT; they add up to the total."""
        return [line.as_dict() for line in (*self.lines, self.vat_line)]


def percent_of(amount_pence: int, percent: int) -> int:
    """`percent`% of an amount, rounded half away from zero, in integer arithmetic."""
    product = amount_pence * percent
    sign = -1 if product < 0 else 1
    return sign * ((abs(product) + 50) // 100)


def charged_days(start: datetime, end: datetime, grace_minutes: int) -> int:
    """Whole 24-hour periods between two aware times, with a grace period; at least one."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("charged_days needs aware datetimes")
    minutes = (end - start) / timedelta(minutes=1)
    if minutes <= 0:
        raise ValueError("end must be after start")
    billable = max(minutes - grace_minutes, 0)
    days = int(-(-billable // MINUTES_PER_PERIOD))  # ceiling division
    return max(days, 1)


def period_dates(start: datetime, days: int, tz: str) -> list[date]:
    """The branch's local date at the start of each charged 24-hour period."""
    zone = ZoneInfo(tz)
    return [(start + timedelta(days=i)).astimezone(zone).date() for i in range(days)]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _money(pence: int) -> str:
    pounds, p = divmod(abs(pence), 100)
    return f"£{pounds:,}.{p:02d}"


def validate_extras(tables: RateTables, extras: Mapping[str, int]) -> dict[str, int]:
    """The chosen extras with zero quantities dropped; refuses unknown or impossible choices."""
    chosen: dict[str, int] = {}
    errors: dict[str, str] = {}
    groups: dict[str, str] = {}
    for code, quantity in extras.items():
        rate = tables.extra(code)
        if rate is None:
            errors[code] = "That extra is not available."
            continue
        if not isinstance(quantity, int) or quantity < 0:
            errors[code] = f"Choose how many {rate.name.lower()} you need."
            continue
        if quantity == 0:
            continue
        if quantity > rate.max_quantity:
            errors[code] = f"At most {rate.max_quantity} × {rate.name.lower()} per hire."
            continue
        if rate.group:
            if rate.group in groups:
                errors[code] = f"Choose one {rate.group} option, not {groups[rate.group]} and {rate.name}."
                continue
            groups[rate.group] = rate.name
        chosen[code] = quantity
    if errors:
        raise PricingError(errors)
    return chosen


def quote(tables: RateTables, *, daily_rate_pence: int, deposit_pence: int, start: datetime,
          end: datetime, tz: str, pickup_branch_id: int, return_branch_id: int,
          extras: Mapping[str, int] | None = None, young_driver: bool = False) -> Quote:
    """Price one hire of one car. Pure: the same inputs always give the same quote."""
    if daily_rate_pence <= 0:
        raise ValueError("daily rate must be positive")
    days = charged_days(start, end, tables.grace_minutes)
    chosen = validate_extras(tables, extras or {})
    lines: list[PriceLine] = []

    rental = days * daily_rate_pence
    lines.append(PriceLine("rental", f"Rental: {_plural(days, 'day')} × {_money(daily_rate_pence)}",
                           rental))

    tier = max((t for t in tables.tiers if days >= t.min_days and t.percent_off),
               key=lambda t: t.min_days, default=None)
    if tier is not None:
        lines.append(PriceLine("tier", f"{tier.min_days}+ day rate: {tier.percent_off}% off",
                               -percent_of(rental, tier.percent_off)))

    dates = period_dates(start, days, tz)
    if tables.weekend_percent:
        weekend_days = sum(1 for d in dates if WEEKDAY_KEYS[d.weekday()] in tables.weekend_days)
        if weekend_days:
            per_day = percent_of(daily_rate_pence, tables.weekend_percent)
            lines.append(PriceLine(
                "weekend", f"Weekend: {_plural(weekend_days, 'day')} × {tables.weekend_percent:+d}%",
                weekend_days * per_day))
    seasons = sorted(tables.seasons, key=lambda s: (s.starts_on, s.code))
    season_days: dict[str, int] = {}
    for d in dates:
        season = next((s for s in seasons if s.starts_on <= d <= s.ends_on and s.percent), None)
        if season is not None:
            season_days[season.code] = season_days.get(season.code, 0) + 1
    for season in seasons:
        n = season_days.get(season.code)
        if n:
            lines.append(PriceLine(
                f"season:{season.code}", f"{season.name}: {_plural(n, 'day')} × {season.percent:+d}%",
                n * percent_of(daily_rate_pence, season.percent)))

    for rate in tables.extras:  # table order, so the breakdown reads the same every time
        quantity = chosen.get(rate.code)
        if not quantity:
            continue
        per_unit = days * rate.per_day_pence
        capped = rate.cap_pence is not None and per_unit > rate.cap_pence
        if capped:
            per_unit = rate.cap_pence  # type: ignore[assignment]
        how = (f"capped at {_money(per_unit)}" + (" each" if quantity > 1 else "")) if capped \
            else f"{_plural(days, 'day')} × {_money(rate.per_day_pence)}"
        name = f"{rate.name} × {quantity}" if quantity > 1 else rate.name
        lines.append(PriceLine(f"extra:{rate.code}", f"{name}: {how}", quantity * per_unit))

    if young_driver and tables.young_driver_per_day_pence:
        amount = days * tables.young_driver_per_day_pence
        capped = tables.young_driver_cap_pence is not None and amount > tables.young_driver_cap_pence
        if capped:
            amount = tables.young_driver_cap_pence  # type: ignore[assignment]
        how = f"capped at {_money(amount)}" if capped else \
            f"{_plural(days, 'day')} × {_money(tables.young_driver_per_day_pence)}"
        lines.append(PriceLine("young_driver", f"Young-driver surcharge: {how}", amount))

    if pickup_branch_id != return_branch_id:
        fee = tables.one_way_fees.get((pickup_branch_id, return_branch_id),
                                      tables.one_way_default_pence)
        if fee:
            lines.append(PriceLine("one_way", "One-way fee (return to another branch)", fee))

    subtotal = sum(line.amount_pence for line in lines)
    if subtotal < 0:  # only a misconfigured table could do this; never pay the customer to drive
        raise ValueError("rate tables produced a negative price")
    vat = percent_of(subtotal, tables.vat_percent)
    return Quote(days=days, daily_rate_pence=daily_rate_pence, lines=tuple(lines),
                 subtotal_pence=subtotal, vat_pence=vat, total_pence=subtotal + vat,
                 deposit_pence=deposit_pence, vat_percent=tables.vat_percent)

"""What a customer owes when a car comes back: pure rules over recorded facts.

Nothing here reads the request or the database: the counter service gathers the facts
(times, odometer, fuel, staff-entered damage, waivers) and these functions turn them into
itemised lines in integer pence. The tablet never sends an amount except a damage charge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta

from ..filters import money

DAY = timedelta(hours=24)
EIGHTHS_IN_TANK = 8


@dataclass(frozen=True)
class Rates:
    """The named settings the rules use (`settings().money`, app/settings.py: same names)."""

    late_grace_minutes: int
    late_fee_per_hour_pence: int
    fuel_price_per_eighth_pence: int
    refuelling_fee_pence: int
    excess_mileage_pence_per_mile: int
    cleaning_fee_pence: int
    max_damage_charge_pence: int
    unused_day_refund_percent: int

    @classmethod
    def from_settings(cls, money) -> "Rates":
        """From the money settings (`settings().money`), whose fields carry the same names."""
        return cls(**{f.name: getattr(money, f.name) for f in fields(cls)})


@dataclass(frozen=True)
class Damage:
    panel: str
    amount_pence: int
    reason: str


@dataclass(frozen=True)
class ReturnFacts:
    start_at: datetime
    end_at: datetime
    returned_at: datetime
    day_rate_pence: int
    miles_allowed_per_day: int
    odometer_out: int
    odometer_in: int
    fuel_out_eighths: int
    fuel_in_eighths: int
    needs_cleaning: bool = False
    damages: tuple[Damage, ...] = ()
    waivers: dict[str, str] = field(default_factory=dict)  # charge code -> reason


@dataclass(frozen=True)
class Line:
    code: str
    label: str
    amount_pence: int
    waived_reason: str = ""

    @property
    def owed_pence(self) -> int:
        return 0 if self.waived_reason else self.amount_pence


class ChargeError(ValueError):
    """Facts that cannot be right (odometer going backwards, fuel over a full tank...)."""


def check_facts(facts: ReturnFacts, rates: Rates) -> None:
    if facts.odometer_in < facts.odometer_out:
        raise ChargeError("The odometer reading in is lower than the reading out.")
    for eighths in (facts.fuel_out_eighths, facts.fuel_in_eighths):
        if not 0 <= eighths <= EIGHTHS_IN_TANK:
            raise ChargeError("Fuel is recorded in eighths of a tank, from 0 to 8.")
    for damage in facts.damages:
        if damage.amount_pence <= 0:
            raise ChargeError("A damage charge must be more than zero.")
        if damage.amount_pence > rates.max_damage_charge_pence:
            raise ChargeError("That damage charge is above the most a counter can charge.")
        if not damage.reason.strip():
            raise ChargeError("Say what the damage is.")
    for code, reason in facts.waivers.items():
        if not reason.strip():
            raise ChargeError(f"Give a reason for waiving the {code} charge.")


def late_fee_pence(end_at: datetime, returned_at: datetime, *, day_rate_pence: int, rates: Rates) -> int:
    """Per started hour after the end once the grace has passed; each 24 h at most a day rate."""
    late = returned_at - end_at
    if late <= timedelta(minutes=rates.late_grace_minutes):
        return 0
    whole_days, rest = divmod(late, DAY)
    started_hours = math.ceil(rest / timedelta(hours=1))
    return whole_days * day_rate_pence + min(started_hours * rates.late_fee_per_hour_pence, day_rate_pence)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def lateness(late: timedelta) -> str:
    """How late, as staff and customers read it: "2 h 58 min", "1 day 3 h"."""
    minutes = int(late.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = ([_plural(days, "day")] if days else []) + ([f"{hours} h"] if hours else []) \
        + ([f"{minutes} min"] if minutes or not (days or hours) else [])
    return " ".join(parts)


def late_label(end_at: datetime, returned_at: datetime, *, day_rate_pence: int, rates: Rates) -> str:
    """The late-return line, with how late and how the fee adds up (the rule of `late_fee_pence`):
    "Late return: 2 h 58 min late (3 started hours × £15.00)"."""
    late = returned_at - end_at
    whole_days, rest = divmod(late, DAY)
    started_hours = math.ceil(rest / timedelta(hours=1))
    parts = [f"{_plural(whole_days, 'day')} × {money(day_rate_pence)}"] if whole_days else []
    if started_hours:
        hours = f"{_plural(started_hours, 'started hour')} × {money(rates.late_fee_per_hour_pence)}"
        if started_hours * rates.late_fee_per_hour_pence > day_rate_pence:
            hours += f", capped at the day rate {money(day_rate_pence)}"
        parts.append(hours)
    return f"Late return: {lateness(late)} late ({' + '.join(parts)})"


def hire_days(start_at: datetime, end_at: datetime) -> int:
    return max(1, math.ceil((end_at - start_at) / DAY))


def unused_days(start_at: datetime, end_at: datetime, returned_at: datetime) -> int:
    """Whole 24-hour periods of the hire the customer paid for but did not use: counted from
    the return, or from the hire's start for a car handed over early and back before it."""
    if returned_at >= end_at:
        return 0
    return int((end_at - max(returned_at, start_at)) // DAY)


def compute_charges(facts: ReturnFacts, rates: Rates) -> list[Line]:
    """Every line the customer may owe (or get back, as a negative line), in a fixed order."""
    check_facts(facts, rates)
    lines: list[Line] = []

    def add(code: str, label: str, amount: int) -> None:
        if amount:
            lines.append(Line(code, label, amount, facts.waivers.get(code, "")))

    late_fee = late_fee_pence(facts.end_at, facts.returned_at, day_rate_pence=facts.day_rate_pence, rates=rates)
    if late_fee:
        add("late", late_label(facts.end_at, facts.returned_at, day_rate_pence=facts.day_rate_pence, rates=rates),
            late_fee)

    short = max(0, facts.fuel_out_eighths - facts.fuel_in_eighths)
    if short:
        add("fuel", f"Fuel: {short}/8 of a tank short", short * rates.fuel_price_per_eighth_pence)
        add("refuelling", "Refuelling service", rates.refuelling_fee_pence)

    allowed = facts.miles_allowed_per_day * hire_days(facts.start_at, facts.end_at)
    driven = facts.odometer_in - facts.odometer_out
    excess = max(0, driven - allowed)
    add("mileage", f"{excess} miles over the {allowed}-mile allowance",
        excess * rates.excess_mileage_pence_per_mile)

    if facts.needs_cleaning:
        add("cleaning", "Cleaning", rates.cleaning_fee_pence)

    for i, damage in enumerate(facts.damages, start=1):
        add(f"damage{i}", f"Damage ({damage.panel}): {damage.reason}", damage.amount_pence)

    unused = unused_days(facts.start_at, facts.end_at, facts.returned_at)
    if unused:
        refund = unused * facts.day_rate_pence * rates.unused_day_refund_percent // 100
        add("unused", f"Early return: {unused} unused day(s)", -refund)
    return lines


def total_owed_pence(lines: list[Line]) -> int:
    return sum(line.owed_pence for line in lines)


@dataclass(frozen=True)
class Settlement:
    capture_from_hold_pence: int  # taken from the deposit hold
    release_pence: int  # the rest of the hold, let go
    charge_card_pence: int  # owed beyond the hold, charged to the saved card
    refund_pence: int  # owed to the customer (early return)


def settle(total_pence: int, deposit_held_pence: int) -> Settlement:
    """Split what is owed between the deposit hold, the saved card and a refund."""
    if total_pence <= 0:
        return Settlement(0, deposit_held_pence, 0, -total_pence)
    captured = min(total_pence, deposit_held_pence)
    return Settlement(captured, deposit_held_pence - captured, total_pence - captured, 0)



# Where the money goes, worded for the customer's receipt and for the counter's confirmation.
SETTLEMENT_LABELS = {
    "customer": ("Taken from your deposit", "Deposit released",
                 "Deposit returned in ETH (we email you to confirm the address)",
                 "Charged to your card", "Refunded to you"),
    "staff": ("Taken from the deposit", "Deposit released", "Deposit returned in ETH",
              "Charged to the saved card", "Refunded to the customer"),
}


def settlement_lines(settlement: Settlement, *, paid_in_eth: bool, reader: str) -> list[tuple[str, int]]:
    """(label, pence) for each movement of money the settlement makes, worded for `reader`
    ("customer" or "staff"); movements of nothing are left out."""
    taken, released, returned_eth, charged, refunded = SETTLEMENT_LABELS[reader]
    lines = [(taken, settlement.capture_from_hold_pence),
             (returned_eth if paid_in_eth else released, settlement.release_pence),
             (charged, settlement.charge_card_pence), (refunded, settlement.refund_pence)]
    return [(label, amount) for label, amount in lines if amount]

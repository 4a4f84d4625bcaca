"""Prices: the car classes' rates and the booking engine's rate tables. Admins only; every
change is audited. (Staff accounts: staff.py.)

Plain functions over the session that take `by` (the admin), and raise `AdminError` (also
staff.py's refusal) with messages keyed by form field; `branches` lists the branches for
the admin forms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..audit import changes, record
from ..errors import FieldErrors
from ..extensions import db
from ..models import Branch, CarClass, User



class AdminError(FieldErrors):
    """Refusal with a message per field ("" key: for the whole form)."""


def branches() -> list[Branch]:
    return list(db.session.scalars(select(Branch).order_by(Branch.name)))


# --- prices ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClassRates:
    daily_rate_pence: int
    deposit_pence: int
    mileage_allowance_per_day: int


def car_classes() -> list[CarClass]:
    return list(db.session.scalars(select(CarClass).order_by(CarClass.daily_rate_pence,
                                                             CarClass.name)))


def _class_rates(cls: CarClass) -> dict[str, int]:
    return {"daily_rate_pence": cls.daily_rate_pence, "deposit_pence": cls.deposit_pence,
            "mileage_allowance_per_day": cls.mileage_allowance_per_day}


def update_class_rates(cls: CarClass, rates: ClassRates, *, by: User) -> bool:
    """New rates for a class, for quotes made from now on. Commits; False if nothing changed.

    Hires keep the price lines frozen when they were made, so no existing booking changes.
    """
    errors: dict[str, str] = {}
    if rates.daily_rate_pence <= 0:
        errors["daily_rate"] = "The daily rate must be more than £0."
    elif rates.daily_rate_pence > current_app.config["CAR_MAX_DAILY_RATE_PENCE"]:
        errors["daily_rate"] = "That daily rate is too high; check the amount."
    if rates.deposit_pence < 0:
        errors["deposit"] = "The deposit cannot be negative."
    if not 0 <= rates.mileage_allowance_per_day <= 10_000:
        errors["mileage_allowance_per_day"] = "Enter between 0 and 10,000 miles a day."
    if errors:
        raise AdminError(errors)
    before = _class_rates(cls)
    cls.daily_rate_pence = rates.daily_rate_pence
    cls.deposit_pence = rates.deposit_pence
    cls.mileage_allowance_per_day = rates.mileage_allowance_per_day
    old, new = changes(before, _class_rates(cls))
    if not new:
        return False
    record(by, "price.class_rates_changed", cls, old, {**new, "class": cls.code})
    db.session.commit()
    return True


# --- the booking engine's rate tables (app/models/pricing.py) -------------------------------
# Each change is audited with its before and after, and applies to quotes made from now on.

def rate_tables() -> dict[str, list]:
    from ..models import DurationTier, Extra, OneWayFee, Season
    return {
        "tiers": list(db.session.scalars(select(DurationTier).order_by(DurationTier.min_days))),
        "seasons": list(db.session.scalars(select(Season).order_by(Season.starts_on))),
        "extras": list(db.session.scalars(select(Extra).order_by(Extra.sort_order, Extra.name))),
        "one_way_fees": list(db.session.scalars(select(OneWayFee).order_by(OneWayFee.id))),
    }


def _fields(obj: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return {n: getattr(obj, n) for n in names}


TIER_FIELDS = ("min_days", "percent_off")
SEASON_FIELDS = ("code", "name", "starts_on", "ends_on", "percent")
EXTRA_FIELDS = ("code", "name", "description", "per_day_pence", "cap_pence", "max_quantity",
                "group", "sort_order", "active")
ONE_WAY_FIELDS = ("from_branch_id", "to_branch_id", "fee_pence")


def save_rate_row(kind: str, obj: Any, values: dict[str, Any], *, by: User) -> Any:
    """Create (obj None) or change one row of a rate table after checking it. Commits."""
    from ..models import DurationTier, Extra, OneWayFee, Season
    model, names, check = {
        "tier": (DurationTier, TIER_FIELDS, _tier_errors),
        "season": (Season, SEASON_FIELDS, _season_errors),
        "extra": (Extra, EXTRA_FIELDS, _extra_errors),
        "one_way_fee": (OneWayFee, ONE_WAY_FIELDS, _one_way_errors),
    }[kind]
    errors = check(values, obj)
    if errors:
        raise AdminError(errors)
    before = _fields(obj, names) if obj is not None else {}
    if obj is None:
        obj = model(**values)
        db.session.add(obj)
    else:
        for name, value in values.items():
            setattr(obj, name, value)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise AdminError({"": "That clashes with another row (a code or a pair already used)."})
    old, new = changes(before, _fields(obj, names))
    if new:
        record(by, f"price.{kind}_{'changed' if before else 'added'}", obj, old, new)
    db.session.commit()
    return obj


def delete_rate_row(kind: str, obj: Any, *, by: User) -> None:
    """Remove a tier, season or one-way fee (extras are switched off instead). Commits."""
    names = {"tier": TIER_FIELDS, "season": SEASON_FIELDS, "one_way_fee": ONE_WAY_FIELDS}[kind]
    record(by, f"price.{kind}_removed", obj, _fields(obj, names), {})
    db.session.delete(obj)
    db.session.commit()


def _unique(model: Any, column: Any, value: Any, obj: Any) -> bool:
    clash = db.session.scalar(select(model).where(column == value))
    return clash is None or clash is obj


def _tier_errors(values: dict, obj: Any) -> dict[str, str]:
    from ..models import DurationTier
    if not _unique(DurationTier, DurationTier.min_days, values["min_days"], obj):
        return {"min_days": f"There is already a tier from {values['min_days']} days."}
    return {}


def _season_errors(values: dict, obj: Any) -> dict[str, str]:
    from ..models import Season
    errors = {}
    if values["ends_on"] < values["starts_on"]:
        errors["ends_on"] = "The last day is before the first day."
    if not _unique(Season, Season.code, values["code"], obj):
        errors["code"] = "Another season has that code."
    return errors


def _extra_errors(values: dict, obj: Any) -> dict[str, str]:
    from ..models import Extra
    errors = {}
    if not _unique(Extra, Extra.code, values["code"], obj):
        errors["code"] = "Another extra has that code."
    cap = values.get("cap_pence")
    if cap is not None and cap < values["per_day_pence"]:
        errors["cap"] = "The cap must be at least the price of one day (or leave it empty)."
    return errors


def _one_way_errors(values: dict, obj: Any) -> dict[str, str]:
    from ..models import OneWayFee
    errors = {}
    for name in ("from_branch_id", "to_branch_id"):
        if db.session.get(Branch, values[name]) is None:
            errors[name] = "Choose a branch."
    if not errors and values["from_branch_id"] == values["to_branch_id"]:
        errors["to_branch_id"] = "Choose a different branch to return to."
    if not errors:
        clash = db.session.scalar(select(OneWayFee).where(
            OneWayFee.from_branch_id == values["from_branch_id"],
            OneWayFee.to_branch_id == values["to_branch_id"]))
        if clash is not None and clash is not obj:
            errors["to_branch_id"] = "There is already a fee for that pair; change it instead."
    return errors

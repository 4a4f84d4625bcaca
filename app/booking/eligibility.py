"""Who may book: the licence area's rules (verified licence, valid for the whole hire, old
enough) and the young-driver surcharge; a plain rule of our own while that area is absent."""

from __future__ import annotations

from datetime import date, datetime
from typing import Optional

from flask import current_app

from ..models import User
from .trips import Trip, to_local


def _age_on(born: date, on: date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def is_young_driver(user: Optional[User], trip: Trip) -> bool:
    """Does the young-driver surcharge apply to this customer on the pickup date?"""
    profile = getattr(user, "profile", None) if user is not None else None
    if profile is None or not getattr(user, "is_authenticated", True):
        return False
    on = to_local(trip.start, trip.tz).date()
    try:
        from ..accounts.licence import is_young_driver as licence_rule
    except ModuleNotFoundError as exc:
        if exc.name != "app.accounts.licence":
            raise
        return _age_on(profile.date_of_birth, on) <= current_app.config["YOUNG_DRIVER_MAX_AGE"]
    return bool(licence_rule(profile, on))


def booking_eligibility(user: User, start: datetime, end: datetime) -> tuple[bool, str]:
    """May this person confirm a hire for these times? (yes/no, and why not)."""
    try:
        from ..accounts.licence import can_confirm_booking
    except ModuleNotFoundError as exc:
        if exc.name != "app.accounts.licence":
            raise
        return _own_eligibility(user, start, end)
    return can_confirm_booking(user, start, end)


def _own_eligibility(user: User, start: datetime, end: datetime) -> tuple[bool, str]:
    """Used until the licence area provides its rule: verified licence, valid, old enough."""
    if user.role != "customer" or user.profile is None:
        return False, "Only customer accounts can book cars online."
    profile = user.profile
    if profile.licence_status != "verified":
        return False, ("We need to verify your driving licence before you can book. "
                       "Check your licence details on your profile.")
    tz = current_app.config["DEFAULT_TIMEZONE"]
    if profile.licence_expires_on < to_local(end, tz).date():
        return False, "Your driving licence expires before this hire ends. Update it on your profile."
    if _age_on(profile.date_of_birth, to_local(start, tz).date()) < current_app.config["LEGAL_DRIVING_AGE"]:
        return False, f"Drivers must be at least {current_app.config['LEGAL_DRIVING_AGE']} to hire a car."

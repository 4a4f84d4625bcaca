"""Who may book: the licence package's rules (app/licence: verified licence, valid for the
whole hire, old enough) and the young-driver surcharge."""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from ..licence import can_confirm_booking
from ..licence import is_young_driver as licence_rule
from ..models import User
from .trips import Trip, to_local


def is_young_driver(user: Optional[User], trip: Trip) -> bool:
    """Does the young-driver surcharge apply to this customer on the pickup date?"""
    profile = getattr(user, "profile", None) if user is not None else None
    if profile is None or not getattr(user, "is_authenticated", True):
        return False
    on = to_local(trip.start, trip.tz).date()
    return bool(licence_rule(profile, on))


def booking_eligibility(user: User, start: datetime, end: datetime) -> tuple[bool, str]:
    """May this person confirm a hire for these times? (yes/no, and why not)."""
    return can_confirm_booking(user, start, end)

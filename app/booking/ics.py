"""A hire as a calendar entry (iCalendar), attached to the booking's emails."""

from __future__ import annotations

from datetime import datetime, timezone

import icalendar

from ..models import Hire


def hire_ics(hire: Hire, *, now: datetime) -> str:
    """The hire as an iCalendar event (pickup to return), made with the icalendar library."""
    cal = icalendar.Calendar()
    cal.add("prodid", "-//ACME Rentals//Bookings//EN")
    cal.add("version", "2.0")
    cal.add("method", "PUBLISH")
    event = icalendar.Event()
    event.add("uid", f"{hire.reference}@acme-rentals.example")
    event.add("sequence", hire.version)  # a changed booking replaces the earlier entry
    event.add("dtstamp", now.astimezone(timezone.utc))
    event.add("dtstart", hire.start_at.astimezone(timezone.utc))
    event.add("dtend", hire.end_at.astimezone(timezone.utc))
    car = hire.car
    event.add("summary", f"Car hire {hire.reference}: {car.make} {car.model}")
    branch = hire.pickup_branch
    event.add("location", f"ACME Rentals {branch.name}, {branch.address_line1}, {branch.town} "
                          f"{branch.postcode}")
    event.add("description", f"Pick up at {branch.name}, return to {hire.return_branch.name}. "
                             f"Booking reference {hire.reference}. Bring your driving licence.")
    event.add("status", "CONFIRMED")
    cal.add_component(event)
    return cal.to_ical().decode("utf-8")

"""Booking: availability search, quotes, holds, changes, cancellation, the customer's bookings.

Services are plain functions over the session; they take what they need (`now`, the
customer, the trip) and raise `BookingError` or one of its kinds. One module per job:

- `errors.py`        BookingError, CarTaken, PriceChanged, NotEligible; which constraint broke
- `trips.py`         where and when: branch-local times, opening hours, the booking window
- `pricing.py`       the pure price engine (rate tables in, a Quote out)
- `quotes.py`        the server's price: rate tables from the database and settings
- `eligibility.py`   who may book (licence, age) and the young-driver surcharge
- `availability.py`  which cars are free for a trip (one query), search, alternatives
- `lifecycle.py`     the hire lifecycle: confirms a paid hold when a payment provider reports
                     the rental paid (app/events.py), and the hire row lock; payments never
                     imports booking, so the dependency runs one way (booking -> payments)
- `holds.py`         holding a car (`create_hold`) at the server's price
- `changes.py`       new dates or extras at a new price
- `cancellation.py`  cancelling, the refund due under the policy, asking payments to refund
- `no_show.py`       a confirmed hire nobody collected
- `scheduled.py`     the scheduler's share: expire unpaid holds, queue reminders
- `my_bookings.py`   the customer's own bookings and how the ones that never went out ended
- `emails.py`, `ics.py`  the booking's emails and their calendar attachment
- `routes.py`, `forms.py`  the pages (thin), `links.py` their repeated links, `seed.py` demo rate tables

Hire states move only through `Hire.transition` (app/models/hires.py). No car is ever
double-booked: availability checks first for a friendly answer, and the database's
`occupancies_no_overlap` guard has the last word (turned into `CarTaken`).
"""

from flask import Blueprint

bp = Blueprint("booking", __name__)

from . import lifecycle, links, routes  # noqa: E402,F401  (the lifecycle subscribes to events; the views)

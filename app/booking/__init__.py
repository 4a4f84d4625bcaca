"""Booking: availability search, quotes, holds, changes, cancellation, the customer's bookings.

Services are plain functions over the session; they take what they need (`now`, the
customer, the trip) and raise `BookingError` or one of its kinds. One module per job:

- `errors.py`        BookingError, CarTaken, PriceChanged, NotEligible; which constraint broke
- `trips.py`         where and when: branch-local times, opening hours, the booking window
- `pricing.py`       the pure price engine (rate tables in, a Quote out)
- `quotes.py`        the server's price: rate tables from the database and settings
- `eligibility.py`   who may book (licence, age) and the young-driver surcharge
- `availability.py`  which cars are free for a trip (one query, in the order asked), search,
                     alternatives
- `suggestions.py`   when nothing is free: why, the nearest dates and other branches with cars
- `storefront.py`    what the home page and car pages tell a customer before booking: the
                     classes' "from" prices, what every hire includes, extras' prices, pictures
- `lifecycle.py`     the hire lifecycle: every move of a hire outside the counter and what
                     follows it: confirm a paid hold (a payment provider reports the rental
                     paid through app/events.py), cancel, expire, no-show; and the hire row
                     lock. Payments never imports booking, so the dependency runs one way
                     (booking -> payments); the counter calls its interface (`__all__`)
- `holds.py`         holding a car (`create_hold`) at the server's price
- `changes.py`       new dates or extras at a new price
- `cancellation.py`  the cancellation policy: the refund due when cancelling now
- `no_show.py`       the no-show policy: what it costs, and when staff may mark one
- `scheduled.py`     the scheduler's reminders (expiry and no-shows: lifecycle.py)
- `my_bookings.py`   the customer's own bookings and how the ones that never went out ended
- `emails.py`, `ics.py`  the booking's emails and their calendar attachment
- `checkin.py`       online check-in: details, terms, licence photo, additional drivers (issue 18)
- `extending.py`     a later return for a confirmed or active hire, the extra time charged
- `routes.py`, `forms.py`  the pages (thin), `links.py` their repeated links,
  `fragments.py` the pieces of the search and car pages rendered once per worker,
  `seed.py` demo rate tables;
  `checkin_routes.py`, `checkin_forms.py` those of check-in and extensions

Hire states move only through `Hire.transition` (app/models/hires.py). No car is ever
double-booked: availability checks first for a friendly answer, and the database's
`occupancies_no_overlap` guard has the last word (turned into `CarTaken`).
"""

from flask import Blueprint

bp = Blueprint("booking", __name__)

from . import checkin_routes, fragments, lifecycle, links, routes  # noqa: E402,F401  (the lifecycle subscribes to events; the views)

"""The counter: pickups and returns. Staff and admins only.

Services are plain functions over the session taking `by` (the staff member) and `now`.
Each step is committed when done, so a dropped tablet connection loses nothing and
reopening the hire continues at the first unfinished step; every step writes an audit
record. Money moves only through the payments area; a no-show is marked through the hire
lifecycle's interface (app/booking/lifecycle.py), the one part of booking the counter calls.

- `errors.py`          CounterError, AlreadyProcessed (another tablet finished the step first)
- `counter_board.py`   today's and tomorrow's pickups and returns at a branch (a hire by its reference
                       and who may see it: app/hire_access.py); `board_rows.py` its rows' HTML, kept
                       per worker by the values they show
- `inspections.py`     the record of a pickup or return, step by step: ID, condition, photos, signature
- `pickup.py`          the steps of a pickup and a return, hand-over or refusal
- `car_return.py`      taking a car back: charges, damage, waivers, settlement, receipt, closing
- `charges.py`         the named charge rules (pure); `previews.py` the money shown before settling
- `offline.py`         the offline counter: what a tablet syncs, the steps it sends later
- `routes.py`, `licence_routes.py` (the licence re-check: app/licence does the work),
  `offline_routes.py`, `forms.py`  the pages (thin)
"""

from flask import Blueprint

from ..security import guard_blueprint

bp = Blueprint("counter", __name__)
guard_blueprint(bp, "staff", "admin")

from . import board_rows, licence_routes, offline_routes, routes  # noqa: E402,F401

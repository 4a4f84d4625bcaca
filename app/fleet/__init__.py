"""Fleet: cars, their photos, maintenance blocks, moving hires between cars. Staff and admins only.

Services are plain functions over the session that take `by` (the member of staff) and
`now`, raise `FleetError` (messages keyed by form field) and audit every change:

- `errors.py`       FleetError and its kinds (RetireRefused, MaintenanceCollision)
- `car_records.py`  adding, editing, retiring and reinstating cars; their photos
- `fleet_list.py`   the filtered, sorted, paged list of cars
- `maintenance.py`  maintenance blocks (they take the car like a hire does)
- `hire_moves.py`   moving a confirmed hire to another free car, emailing the customer
- `photos.py`       storing uploaded photos; `validators.py` plate, VIN and field checks
- `routes.py`, `forms.py`  the pages (thin)
"""

from flask import Blueprint

from ..security import guard_blueprint

bp = Blueprint("fleet", __name__)
guard_blueprint(bp, "staff", "admin")

from . import routes  # noqa: E402,F401

"""The admin area (/admin). Admins only (the blueprint's guard); every change is audited.

- `staff.py`, `staff_routes.py`   staff accounts, the one place they are managed: invite
                                  (joiners), deactivate (leavers), role and branch, a
                                  fresh invitation, a two-factor reset
- `services.py`                   prices: class rates and the booking engine's rate tables;
                                  AdminError, the area's refusal
- `audit_log.py`                  the audit log, filtered, and its CSV
- `reports/`, `charts.py`         reports (from precomputed facts) and their charts
- `routes.py`, `forms.py`         the other pages (thin)
"""

from flask import Blueprint

from ..security import guard_blueprint

bp = Blueprint("admin", __name__)
guard_blueprint(bp, "admin")

from . import routes, staff_routes  # noqa: E402,F401

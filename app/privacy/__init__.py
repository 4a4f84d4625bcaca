"""The customer's own data under UK GDPR (issue 18).

- `collect.py`    everything held about a customer, as JSON-ready data (profile, licence
                  checks, bookings, payments, emails sent, audit entries about them)
- `exports.py`    "Download my data": a ZIP built by a job, kept DATA_EXPORT_HOURS behind
                  the customer's sign-in, then deleted by the tick
- `erasure.py`    "Delete my account": refused while a hire is open or money unsettled;
                  otherwise personal data erased or pseudonymised, accounting records kept
- `retention.py`  licence numbers, licence photos and signatures deleted
                  PERSONAL_DATA_RETENTION_DAYS after the last hire ended (the tick; audited),
                  and the admins' list of what falls due
- `routes.py`, `forms.py`  the customer's page (/account/data) and the admins' list

It sits with the other areas (it reads hires and payments: `from ..payments import ...`);
the paperwork area adds its documents and hears of erasures through app/events.py.
"""

from flask import Blueprint

bp = Blueprint("privacy", __name__)

from . import routes  # noqa: E402,F401

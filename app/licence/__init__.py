"""Driving-licence checking (issue 3): one package for the rules, the checks and their job.

- `rules.py`     the rental rules (`refusal_for`) and what the rest of the portal asks:
                 may this customer book (`can_confirm_booking`), the young-driver band
                 (`is_young_driver`), may the counter hand over (`pickup_licence_ok`);
- `checks.py`    starting a check (`start_customer_check`, the counter's `recheck_for_hire`),
                 recording the service's answer, giving up a stale check; `LicenceError`;
- `status.py`    what the self-polling status fragment shows (`status_for_customer`,
                 `status_for_hire`);
- `drivers.py`   additional drivers' licences (issue 18): the same checks and job, and
                 `online_licences_ok` for a hire checked in online;
- `jobs.py`      the `check_licence` task, which asks the service through the client in
                 app/integrations/licence.py (timeouts, bounded retries, idempotency key).

The pages stay in their areas and use only the names below: the customer's licence page and
sign-up in app/accounts/routes.py, the counter's re-check in app/counter/licence_routes.py.
Dependencies: accounts, booking and the counter -> licence -> queueing, integrations, models.
"""

from .checks import (  # noqa: F401  (the package's public names)
    CHECK_JOB_ID,
    CHECK_TASK,
    LicenceError,
    check_code_error,
    give_up_if_stale,
    recheck_for_hire,
    record_answer,
    record_failure,
    start_customer_check,
)
from .rules import (  # noqa: F401
    REASONS,
    UNAVAILABLE_MESSAGE,
    age_on,
    can_confirm_booking,
    is_young_driver,
    latest_check,
    latest_check_for_hire,
    licence_valid_until,
    local_today,
    normalise_licence,
    pickup_licence_ok,
    refusal_for,
)
from .status import LicenceStatusView, status_for_customer, status_for_hire  # noqa: F401
from .drivers import online_licences_ok  # noqa: F401
from . import drivers  # noqa: F401  (additional drivers' checks, issue 18)

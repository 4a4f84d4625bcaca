"""Admin reports: fleet utilisation, revenue, and what went wrong, per week or month.

Reports read `ReportFact` rows: one car's figures for one week or month, rolled up in SQL
from hires, payments and the counter's return inspections by `refresh`. A report over
years of a 2,000,000-hire history so adds up a few thousand rows and answers in well under
a second (bench/reports.py measures it); rolling up happens off the request: the periods
around today every REPORT_REFRESH_MINUTES (a job the reports page asks for when its
figures are older), and the whole history nightly (`flask admin refresh-reports`). A range
is checked (at most REPORT_MAX_RANGE_DAYS) before any job is queued for it; the jobs go to
their own queue (REPORTS_QUEUE_NAME), which workers take only when no customer's job waits,
and each attempt is stopped after REPORT_JOB_TIMEOUT_SECONDS.

Definitions (also shown on the page):
- Utilisation: the hours cars were booked (hires confirmed, active, returned or closed) as
  a share of the hours they were in the fleet (from being added until retired), per period.
  A hire spanning two periods counts in each for the part within it.
- Revenue: money taken for hires starting in the period, by payment method and by car
  class: succeeded charges and captures, less succeeded refunds.
- Bookings, cancellations and no-shows: hires starting in the period, by final state.
- Late returns and damage charges: hires due back in the period, from the charges the
  counter froze at their return (a "late" line however it was settled; damage lines not
  waived).
Classes and branches are the cars' current ones.

Layout (one module per job, dependencies one way: periods <- rollups <- refresh, tables):
- `periods.py`    weeks and months in the business's time zone; range checks (`ReportError`)
- `rollups.py`    the SQL roll-ups per car and period (dialect-neutral: PostgreSQL and SQLite)
- `refresh.py`    writing the rolled-up figures for a range (`refresh`), the nightly history
- `freshness.py`  which figures a report needs refreshed, and queueing that job
- `tables.py`     the report built from the rolled-up figures (`build`), and its CSV export
- here            the refresh job itself: RQ stores it by its dotted path,
                  `app.admin.reports.refresh_task`, so it stays at this address
"""

from __future__ import annotations

from datetime import date

from ...queueing import task
from ...models import utcnow
from .refresh import refresh as refresh_figures  # the module keeps the name `refresh`


@task
def refresh_task(date_from: str, date_to: str) -> None:
    """Background job: roll up the figures for the periods touching these ISO dates."""
    refresh_figures(date.fromisoformat(date_from), date.fromisoformat(date_to), now=utcnow())

"""The licence check's job lives in app/licence/jobs.py. This name stays for jobs queued in
Redis before the move (RQ stores "app.jobs.licence.check_licence"): remove it one release on.
"""

from ..licence.jobs import JOB_ID, check_licence  # noqa: F401  (re-exported)

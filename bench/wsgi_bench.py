"""The portal plus a bare Flask endpoint, in the same Gunicorn workers (benchmark baseline).

`/__bench/bare` is the smallest thing Flask can serve ("ok", no database, no templates, no
extensions): the throughput benchmark divides the portal's requests per second by its own,
measured by the same Gunicorn config in the same run. Never deployed: only the benchmarks
serve this module (BENCH_WSGI_APP).
"""

from flask import Flask
from flask_login import current_user
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from app.security import allow
from bench.common import FLOOR_PATH
from wsgi import app as portal

bare = Flask("bare")


@bare.get("/bare")
def hello():
    return "ok", 200, {"Content-Type": "text/plain", "X-Bench-Bare": "1"}


@allow("public")
def floor():
    """The portal's own request with no page: its WSGI wrappers, every before/after-request
    hook (session, CSRF, security headers, limiter, metrics, request id) and, for a signed-in
    customer, the loading of the user, then "ok". What any page of the portal costs at least:
    `throughput.py` prints its ratio beside the pages' (issue 19)."""
    return f"ok, signed in: {current_user.is_authenticated}", 200, {"Content-Type": "text/plain"}


portal.add_url_rule(FLOOR_PATH, "bench_floor", floor)
application = DispatcherMiddleware(portal, {"/__bench": bare})

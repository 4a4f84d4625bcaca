"""The portal plus a bare Flask endpoint, in the same Gunicorn workers (benchmark baseline).

`/__bench/bare` is the smallest thing Flask can serve ("ok", no database, no templates, no
extensions): the throughput benchmark divides the portal's requests per second by its own,
measured by the same Gunicorn config in the same run. Never deployed: only the benchmarks
serve this module (BENCH_WSGI_APP).
"""

from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from wsgi import app as portal

bare = Flask("bare")


@bare.get("/bare")
def hello():
    return "ok", 200, {"Content-Type": "text/plain", "X-Bench-Bare": "1"}


application = DispatcherMiddleware(portal, {"/__bench": bare})

"""The portal served over real HTTP by a threaded werkzeug server, as `flask run` serves it.

Used by the browser tests and by the tests that race several clients against a running
server (a race must be shown through real concurrent requests, not only the test client).

- `serve(**overrides)`: start one on 127.0.0.1:<free port> in a background thread, on the
  same test database as the `app` fixture, with jobs run in-process off the request as on
  the embedded default (override JOBS_MODE for others). `.url` has no trailing slash;
  `.app` is the served Flask app; `.stop()` waits for its in-process jobs.
- `make_live_server(**overrides)`: the fixture form; every server stops at teardown.
- `live_server`: one with the defaults.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from app import create_app
from app import queueing as jobs
from app.extensions import db
from tests.conftest import make_test_config

LIVE_SERVER_DEFAULTS = {"JOBS_MODE": "thread"}


@dataclass
class LiveServer:
    url: str
    app: Flask
    _server: BaseWSGIServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        wait_for_in_process_jobs()
        with self.app.app_context():
            db.engine.dispose()


def wait_for_in_process_jobs() -> None:
    """Let jobs started by the served pages finish before the tables are emptied.

    JOBS_MODE="thread" runs them on a module-level pool; shutting it down waits for
    them, and `enqueue` builds a fresh pool on next use.
    """
    pool, jobs._executor = jobs._executor, None
    if pool is not None:
        pool.shutdown(wait=True)


def _closed_before_sending(wsgi_app):
    """Each response read whole and closed before werkzeug sends it.

    When a browser drops a connection (Chromium cancels a favicon or an image it no longer
    needs), werkzeug's dev server can fail while draining the request in the `finally` of
    `run_wsgi` and never close the response: a static file stays open and the garbage
    collector reports it later as a ResourceWarning in whichever test runs then. The portal
    streams nothing, so reading the body first changes nothing the browser sees.
    """
    def app(environ, start_response):
        result = wsgi_app(environ, start_response)
        try:
            return [b"".join(result)]
        finally:
            if hasattr(result, "close"):
                result.close()
    return app


def serve(**overrides) -> LiveServer:
    served = create_app(make_test_config(**{**LIVE_SERVER_DEFAULTS, **overrides}))
    server = make_server("127.0.0.1", 0, _closed_before_sending(served), threaded=True)
    # Request threads are joined by server_close(), so that no request still holds a database
    # connection when stop() closes the pool (one left over is closed by the garbage
    # collector later, in whichever test is running then, as a ResourceWarning).
    server.daemon_threads = False
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    return LiveServer(url=f"http://127.0.0.1:{server.server_port}", app=served,
                      _server=server, _thread=thread)


@pytest.fixture
def make_live_server(app):
    """Factory: serve the portal with these config overrides; every server stops at teardown."""
    servers: list[LiveServer] = []

    def start(**config_overrides) -> LiveServer:
        server = serve(**config_overrides)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def live_server(make_live_server) -> LiveServer:
    return make_live_server()

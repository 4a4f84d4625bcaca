"""Structured logs, each line carrying the request id."""

from __future__ import annotations

import logging
import sys
import uuid

import structlog
from flask import Flask, g, request

REQUEST_ID_HEADER = "X-Request-ID"


def configure_logging(app: Flask) -> None:
    level = getattr(logging, app.config["LOG_LEVEL"].upper(), logging.INFO)
    renderer = (structlog.processors.JSONRenderer() if app.config["LOG_JSON"]
                else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # Resolve stderr at each use, so redirected streams (tests, daemons) are honoured.
        logger_factory=lambda *args: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )


def bind_request_id() -> None:
    """before_request (app/request_hooks.py): the request's id, bound to every log line."""
    # Nginx passes its own id on; otherwise we make one.
    rid = request_id(request.headers.get(REQUEST_ID_HEADER, ""))
    g.request_id = rid
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=rid, path=request.path,
                                           method=request.method)


def send_request_id(response):
    """after_request (app/request_hooks.py): the id goes back in X-Request-ID."""
    response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
    return response


def request_id(incoming: str) -> str:
    """The id of a request: Nginx's when it sent a sane one, else a new one."""
    return incoming if incoming.isalnum() and len(incoming) <= 40 else uuid.uuid4().hex


def log():
    return structlog.get_logger("acme")

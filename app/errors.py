"""One place answers every error: a page, an htmx fragment, or JSON, as the client wants."""

from __future__ import annotations

from flask import Flask, g, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException, InternalServerError, ServiceUnavailable

from .extensions import db, htmx
from .logging_setup import log

MESSAGES = {
    400: ("Bad request", "Something in that request was not right. Please go back and try again."),
    403: ("Not allowed", "You do not have access to that page."),
    404: ("Not found", "We could not find that page."),
    405: ("Not allowed", "That action is not possible here."),
    409: ("Conflict", "Someone else changed this at the same time. Please reload and try again."),
    413: ("Too large", "That upload is too large."),
    422: ("Please check your input", "Some of what you entered needs correcting."),
    429: ("Slow down", "Too many attempts. Please wait a minute and try again."),
    500: ("Something went wrong", "We are sorry: something went wrong on our side. It has been logged."),
    503: ("Temporarily unavailable", "Part of the service is down for a moment. Please try again shortly."),
}

VALUE_OUT_OF_RANGE = ("A number or date in that request is larger than anything stored here, or "
                      "some text holds a character that cannot be. Please go back and check it.")


class FieldErrors(Exception):
    """A service's refusal, with a message per form field ("" for the form as a whole).

    Each area raises its own subclass (AccountError, FleetError...); routes put the messages
    beside their fields with `web.add_errors` and answer 422 (or 409 for a clash).
    """

    def __init__(self, errors: dict[str, str] | str):
        if isinstance(errors, str):
            errors = {"": errors}
        super().__init__("; ".join(errors.values()))
        self.errors = errors


def wants_json() -> bool:
    if request.is_json:
        return True
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]


def error_response(code: int, detail: str | None = None):
    title, message = MESSAGES.get(code, MESSAGES[500])
    message = detail or message
    request_id = g.get("request_id", "")
    if wants_json():
        return jsonify(error=title, message=message, status=code, request_id=request_id), code
    template = "errors/_error.html" if htmx and not htmx.boosted else "errors/error.html"
    return render_template(template, code=code, title=title, message=message,
                           request_id=request_id), code


def end_session(exc: BaseException | None) -> None:
    """teardown_appcontext (app/request_hooks.py): close the request's session before
    Flask-SQLAlchemy does (teardowns run in reverse): when PostgreSQL restarted meanwhile, the
    rollback of closing fails on the dead connection; the answer is already made, so drop the
    connection instead of failing it."""
    try:
        db.session.remove()
    except DBAPIError as e:
        log().warning("database connection lost by the end of the request",
                      error=str(e).splitlines()[0])
        db.session().invalidate()  # the scoped proxy does not offer it
        db.session.remove()


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(e: CSRFError):
        return error_response(400, "Your form expired or was not sent from this site. "
                                   "Please reload the page and try again.")

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        if e.code and e.code >= 500:
            db.session.rollback()
        if isinstance(e, InternalServerError) and e.original_exception is not None:
            return unexpected_error(e.original_exception)
        if e.code == 429:
            return error_response(429)
        detail = e.description if e.code in (400, 409, 422) and e.description and \
            e.description != type(e).description else None
        return error_response(e.code or 500, detail)

    @app.errorhandler(OperationalError)
    def database_down(e: OperationalError):
        db.session.rollback()
        log().error("database unavailable", error=str(e).splitlines()[0])
        # The page shows who is signed in; (re)loading that user needs the database, which is
        # down (the rollback above expired a loaded one): answer this page as to a visitor.
        # Flask-Login keeps the request's user in g; the session cookie is left as it is.
        g._login_user = app.login_manager.anonymous_user()  # type: ignore[attr-defined]
        return error_response(ServiceUnavailable.code)

    @app.errorhandler(DataError)
    @app.errorhandler(OverflowError)
    def value_out_of_range(e: Exception):
        """A safety net, not the fix: a value the database cannot take (PostgreSQL's DataError:
        a number beyond its column, a NUL in text; SQLite's driver overflows on a number too
        large for its INTEGER) came from the request, which the forms and routes should have
        refused beside its field. The request is bad, not the server: 400."""
        db.session.rollback()
        log().warning("value out of the database's range", error_type=type(e).__name__,
                      error=str(e).splitlines()[0] if str(e) else "")
        return error_response(400, VALUE_OUT_OF_RANGE)

    @app.errorhandler(RedisConnectionError)
    @app.errorhandler(RedisTimeoutError)
    def queue_down(e: Exception):
        """Redis (the job queue) unreachable: what was committed waits for the scheduler's
        tick to queue its job again (app/jobs/recovery.py); the person may simply retry."""
        db.session.rollback()
        log().error("redis unavailable", error=str(e).splitlines()[0] if str(e) else type(e).__name__)
        return error_response(ServiceUnavailable.code)

    @app.errorhandler(Exception)
    def unexpected_error(e: Exception):
        db.session.rollback()
        log().exception("unhandled exception", error_type=type(e).__name__)
        return error_response(500)

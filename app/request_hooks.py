"""What runs on every request, in order: the one place that registers it (issue 16).

`create_app` calls `install(app)` once, after the database and before the blueprints. The
hooks' bodies live in their areas; the sequence is here, and nothing else in `app/` adds a
per-request hook (tests/test_request_hooks.py checks it).

A request goes through, outermost first:

WSGI middleware
 1. the public page cache (app/pagecache.py): a repeated anonymous GET of a cached public
    page is answered here, without Flask (installed last, so it wraps everything).
 2. ProxyFix, when TRUSTED_PROXY_COUNT is set: the client's address and scheme from Nginx.

Before the view (Flask runs these in the order registered below; one that answers stops the
request, and the after hooks still run):
 1. the metrics timer (prometheus-flask-exporter, app/metrics.py): first, so a request
    refused by any hook below is still counted by route and status.
 2. the request id (app/logging_setup.py): bound to every log line and error page.
 3. the CSRF check of a form POST (Flask-WTF).
 4. the rate limits of the route (Flask-Limiter).
 5. Talisman: the https redirect (FORCE_HTTPS) and the CSP nonce.
 6. a NUL in the address is refused (app/security.py, `refuse_nul_bytes`).
 7. access control: who may use the endpoint (app/security.py, `enforce_access`). The
    signed-in user is loaded here, on the first use of `current_user`, by Flask-Login from
    app/accounts/sessions.py (`load`: the device's session row, in one query with the
    reference data's version, app/refdata.py).
 8. a staff member whose password has expired is sent to renew it
    (app/accounts/twofactor_routes.py, `staff_password_in_date`).
 9. development only: the scheduler's ticker is started (app/jobs/booking.py).
The view. Its reference data (branches, classes, rate tables: app/refdata.py) is the worker's
copy, checked once per request against the database's version (`init_refdata` below gives
each app its copy; the version comes with the signed-in user, or with one small query).
Its templates get the context processors below (CSRF token, htmx, current_user,
`app_env`, `staff_nav` from app/navigation.py) and the filters of app/filters.py.

After the view (Flask runs these in reverse order of registration; listed as they run):
 1. signed-in pages get `Cache-Control: no-store` (issue 9).
 2. `Vary: HX-Request` (a fragment and a page share a URL).
 3. the metrics timer stops: duration and count by route and status.
 4. Talisman's security headers (CSP, HSTS in production, frame and referrer policies).
 5. Flask-Login's remember-me cookie.
 6. Flask-Limiter's rate limit headers.
 7. the `X-Request-ID` header (app/logging_setup.py).
Teardown: the rate limiter's and the exporter's per-request state; the database session is
closed (app/errors.py, `end_session`, before Flask-SQLAlchemy's own teardown).
The database session itself (app/transactions.py): on PostgreSQL a request reads in
autocommit, and its first write or row lock begins the transaction the session then commits or
rolls back (after a commit, the next write begins the next one).
Errors anywhere above are answered by app/errors.py's handlers (page, fragment or JSON).
"""

from __future__ import annotations

from flask import Flask, session
from flask_login import current_user
from werkzeug.middleware.proxy_fix import ProxyFix

from .accounts.sessions import load as load_session
from .accounts.twofactor_routes import staff_password_in_date
from .errors import end_session
from .extensions import csrf, htmx, limiter, login_manager, talisman
from .jobs.booking import start_dev_ticker
from .logging_setup import bind_request_id, send_request_id
from .metrics import init_metrics
from .navigation import staff_navigation
from .pagecache import init_page_cache
from .production import is_production_like
from .refdata import init_refdata
from .security import answer_signed_out, enforce_access, refuse_nul_bytes

CSP = {
    "default-src": "'self'",
    "img-src": ["'self'", "data:", "blob:"],
    "style-src": "'self'",
    "script-src": "'self'",
    "connect-src": "'self'",
    "frame-ancestors": "'none'",
    "form-action": "'self'",
    "base-uri": "'self'",
    "object-src": "'none'",
}


def install(app: Flask) -> None:
    """Register every per-request hook of `app`, in the order of the docstring above.

    The extensions register their hooks in `init_app`, so they are initialised here, at
    their place in the sequence. Flask keeps three lists (before, after, teardown): the
    registrations below are in the order that gives each list the order described above.
    """
    app.before_request(bind_request_id)             # before 2
    app.after_request(send_request_id)              # after 7 (registered first, runs last)
    csrf.init_app(app)                              # before 3; template: csrf_token
    htmx.init_app(app)                              # template: htmx
    limiter.init_app(app)                           # before 4, after 6, teardown
    login_manager.init_app(app)                     # after 5; template: current_user
    login_manager.login_view = "accounts.sign_in"
    login_manager.login_message = "Please sign in to continue."
    login_manager.login_message_category = "info"
    login_manager.unauthorized_handler(answer_signed_out)  # pages: to sign in; background: 401
    login_manager.user_loader(load_session)         # before 7 (on the first current_user)
    init_refdata(app)                               # the view's reference data: per worker
    talisman.init_app(                              # before 5, after 4
        app,
        force_https=app.config["FORCE_HTTPS"],
        strict_transport_security=is_production_like(app.config["ENV_NAME"]),
        session_cookie_secure=app.config["SESSION_COOKIE_SECURE"],
        content_security_policy=CSP,
        frame_options="DENY",
        referrer_policy="strict-origin-when-cross-origin",
        permissions_policy={"geolocation": "()", "microphone": "()", "camera": "(self)"},
    )
    app.before_request(refuse_nul_bytes)            # before 6
    app.before_request(enforce_access)              # before 7
    app.before_request(staff_password_in_date)      # before 8
    app.teardown_appcontext(end_session)            # teardown: after SQLAlchemy's in the
    #                                                 list, so it runs before it
    init_metrics(app)                               # before 1 (moved first), after 3, teardown

    @app.before_request
    def _start_dev_ticker() -> None:                # before 9
        """Development: the scheduler's tick (holds, reminders, no-shows...) from the
        in-process job pool, started on the first request (app/jobs/booking.py)."""
        start_dev_ticker(app)

    app.after_request(vary_on_htmx)                 # after 2
    app.after_request(keep_personal_pages_out_of_caches)  # after 1

    @app.context_processor
    def inject_globals():
        return {"current_user": current_user, "app_env": app.config["ENV_NAME"]}

    app.context_processor(staff_navigation)         # template: staff_nav

    if app.config["TRUSTED_PROXY_COUNT"]:           # WSGI 2
        proxies = app.config["TRUSTED_PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies,  # type: ignore[method-assign]
                                x_host=proxies)
    init_page_cache(app)                            # WSGI 1: outermost


def vary_on_htmx(response):
    response.vary.add("HX-Request")
    return response


def keep_personal_pages_out_of_caches(response):
    # Signed-in pages carry personal data (issue 9): never stored by a browser or proxy
    # cache. The session is checked, not current_user, so no database query happens here.
    if "_user_id" in session and "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
    return response

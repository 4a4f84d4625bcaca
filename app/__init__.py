"""ACME Rentals portal: the application factory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask, render_template, session
from flask_login import current_user
from sqlalchemy import event

from .config import BASE_DIR, LOCAL_ENVS, Config, _normalise_db_url
from .extensions import csrf, db, htmx, limiter, login_manager, migrate, talisman

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


def create_app(config: type | dict[str, Any] | None = None) -> Flask:
    app = Flask(
        __name__,
        template_folder=str(BASE_DIR / "templates"),
        static_folder=str(BASE_DIR / "static"),
        instance_path=str(BASE_DIR / "instance"),
    )
    app.config.from_object(Config)
    app.config.from_prefixed_env()
    if isinstance(config, dict):
        app.config.update(config)
    elif config is not None:
        app.config.from_object(config)
    _finish_config(app)

    if app.config["TRUSTED_PROXY_COUNT"]:
        from werkzeug.middleware.proxy_fix import ProxyFix
        proxies = app.config["TRUSTED_PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)

    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    Path(app.config["UPLOAD_DIR"]).mkdir(parents=True, exist_ok=True)

    from .logging_setup import configure_logging
    configure_logging(app)

    db.init_app(app)
    _tune_sqlite(app)
    migrate.init_app(app, db, directory=str(BASE_DIR / "migrations"), render_as_batch=True)
    csrf.init_app(app)
    htmx.init_app(app)
    limiter.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "accounts.sign_in"
    login_manager.login_message = "Please sign in to continue."
    login_manager.login_message_category = "info"
    talisman.init_app(
        app,
        force_https=app.config["FORCE_HTTPS"],
        strict_transport_security=app.config["ENV_NAME"] == "production",
        session_cookie_secure=app.config["SESSION_COOKIE_SECURE"],
        content_security_policy=CSP,
        frame_options="DENY",
        referrer_policy="strict-origin-when-cross-origin",
        permissions_policy={"geolocation": "()", "microphone": "()", "camera": "(self)"},
    )

    from . import models  # noqa: F401  (register the models with SQLAlchemy)
    from .accounts.sessions import load as load_session
    login_manager.user_loader(load_session)

    from .security import enforce_access, refuse_nul_bytes
    app.before_request(refuse_nul_bytes)
    app.before_request(enforce_access)

    from .errors import register_error_handlers
    register_error_handlers(app)

    from .web import BoundedIntConverter
    app.url_map.converters["int"] = BoundedIntConverter  # before any route is added
    _register_blueprints(app)

    from .metrics import init_metrics
    init_metrics(app)

    from .cli import register_cli
    register_cli(app)

    from .jobs.booking import start_dev_ticker

    @app.before_request
    def _start_dev_ticker() -> None:
        """Development: the scheduler's tick (holds, reminders, no-shows...) from the
        in-process job pool, started on the first request (app/jobs/booking.py)."""
        start_dev_ticker(app)

    @app.after_request
    def vary_on_htmx(response):
        response.vary.add("HX-Request")
        return response

    @app.after_request
    def keep_personal_pages_out_of_caches(response):
        # Signed-in pages carry personal data (issue 9): never stored by a browser or proxy
        # cache. The session is checked, not current_user, so no database query happens here.
        if "_user_id" in session and "Cache-Control" not in response.headers:
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.context_processor
    def inject_globals():
        return {"current_user": current_user, "app_env": app.config["ENV_NAME"]}

    from .filters import register_filters
    register_filters(app)
    from .web import row_url
    app.add_template_global(row_url, "row_url")

    from .navigation import init_navigation
    init_navigation(app)

    from .refdata import init_refdata
    init_refdata(app)

    from .pagecache import init_page_cache
    init_page_cache(app)
    return app


def _finish_config(app: Flask) -> None:
    """Derive settings that depend on others; refuse an unsafe production start."""
    cfg = app.config
    cfg["SQLALCHEMY_DATABASE_URI"] = _normalise_db_url(cfg["SQLALCHEMY_DATABASE_URI"])
    if not cfg["JOBS_MODE"]:
        cfg["JOBS_MODE"] = "rq" if cfg["REDIS_URL"] else "thread"
    cfg["RATELIMIT_STORAGE_URI"] = cfg.get("RATELIMIT_STORAGE_URI") or (
        cfg["REDIS_URL"] or "memory://")
    if cfg["ENV_NAME"] not in LOCAL_ENVS:
        # Fail closed: anything not explicitly development or test is treated as production.
        cfg["SESSION_COOKIE_SECURE"] = True
        cfg["REMEMBER_COOKIE_SECURE"] = True
        if (cfg["SECRET_KEY"] in ("", cfg["INSECURE_DEV_SECRET"])
                or len(cfg["SECRET_KEY"]) < cfg["SECRET_KEY_MIN_LENGTH"]):
            raise RuntimeError(
                f"Refusing to start in ACME_ENV={cfg['ENV_NAME']!r} without a real SECRET_KEY "
                f"(at least {cfg['SECRET_KEY_MIN_LENGTH']} characters, from the environment). "
                "For a local run set ACME_ENV=development.")
        if cfg["PASSWORD_HASH_MEMORY_KIB"] < 19 * 1024 or cfg["PASSWORD_HASH_TIME_COST"] < 2:
            raise RuntimeError("Refusing to start with the tests' cheap password hashing "
                               "(PASSWORD_HASH_*): OWASP asks for at least 19 MiB, 2 passes.")
    if cfg["ENV_NAME"] == "production":
        if cfg["MAIL_BACKEND"] == "outbox":
            raise RuntimeError("The development mail outbox cannot be used in production; "
                               "set MAIL_BACKEND=smtp.")
    if cfg["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        cfg["SQLALCHEMY_ENGINE_OPTIONS"] = {}


def _tune_sqlite(app: Flask) -> None:
    """Let the embedded default (SQLite) serve a threaded `flask run` without "database is
    locked".

    WAL: readers (pages, reports, a backup) never hold up a write, nor a write a reader.
    Busy timeout: a write waits for another connection's write to commit. The driver begins
    a transaction only at its first write (pysqlite's implicit BEGIN), so a transaction takes
    the write lock as its first step and the busy timeout covers it; reads before it see the
    latest data. Overlapping occupancies are refused by the triggers of migration 0010.
    """
    with app.app_context():
        engine = db.engine
    if engine.dialect.name != "sqlite":
        return
    busy_ms = int(app.config["SQLITE_BUSY_TIMEOUT_SECONDS"] * 1000)

    @event.listens_for(engine, "connect")
    def configure(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()


def _register_blueprints(app: Flask) -> None:
    from .accounts import bp as accounts_bp
    from .admin import bp as admin_bp
    from .booking import bp as booking_bp
    from .fleet import bp as fleet_bp
    from .fleet.photos import media_bp
    from .main import bp as main_bp
    from .payments import bp as payments_bp
    from .counter import bp as counter_bp

    app.register_blueprint(main_bp)
    app.register_blueprint(accounts_bp, url_prefix="/account")
    app.register_blueprint(booking_bp, url_prefix="/book")
    app.register_blueprint(payments_bp, url_prefix="/pay")
    app.register_blueprint(counter_bp, url_prefix="/counter")
    app.register_blueprint(fleet_bp, url_prefix="/fleet")
    app.register_blueprint(admin_bp, url_prefix="/admin")
    app.register_blueprint(media_bp, url_prefix="/media")  # car photos: public

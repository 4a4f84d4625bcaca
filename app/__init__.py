"""ACME Rentals portal: the application factory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import event

from .config import BASE_DIR, Config, _normalise_db_url
from .extensions import db, migrate
from .settings import Portal, init_settings


def create_app(config: type | dict[str, Any] | None = None) -> Flask:
    app = Portal(
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
    init_settings(app)  # typed, per domain: app/settings.py

    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    Path(app.config["UPLOAD_DIR"]).mkdir(parents=True, exist_ok=True)

    from .logging_setup import configure_logging
    configure_logging(app)

    db.init_app(app)
    _tune_sqlite(app)
    migrate.init_app(app, db, directory=str(BASE_DIR / "migrations"), render_as_batch=True)
    from . import models  # noqa: F401  (register the models with SQLAlchemy)

    from .web import BoundedIntConverter
    app.url_map.converters["int"] = BoundedIntConverter  # before any route is added

    from .request_hooks import install as install_request_hooks
    install_request_hooks(app)  # what runs on every request, in order: app/request_hooks.py

    from .errors import register_error_handlers
    register_error_handlers(app)

    _register_blueprints(app)

    from .cli import register_cli
    register_cli(app)

    from .filters import register_filters
    register_filters(app)
    from .web import fixed_url, row_url
    app.add_template_global(row_url, "row_url")  # the rows of long lists (app/web.py)
    app.add_template_global(fixed_url, "fixed_url")  # every page's links (app/web.py)
    return app


def _finish_config(app: Flask) -> None:
    """Derive settings that depend on others; refuse an unsafe production start."""
    from .production import check_production, is_production_like  # web3: not at `import app`
    cfg = app.config
    cfg["SQLALCHEMY_DATABASE_URI"] = _normalise_db_url(cfg["SQLALCHEMY_DATABASE_URI"])
    if not cfg["JOBS_MODE"]:
        cfg["JOBS_MODE"] = "rq" if cfg["REDIS_URL"] else "thread"
    cfg["RATELIMIT_STORAGE_URI"] = cfg.get("RATELIMIT_STORAGE_URI") or (
        cfg["REDIS_URL"] or "memory://")
    if is_production_like(cfg["ENV_NAME"]):
        cfg["SESSION_COOKIE_SECURE"] = True
        cfg["REMEMBER_COOKIE_SECURE"] = True
    check_production(cfg)  # every production check: app/production.py
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
    from .paperwork import bp as paperwork_bp
    from .privacy import bp as privacy_bp

    app.register_blueprint(main_bp)
    app.register_blueprint(accounts_bp, url_prefix="/account")
    app.register_blueprint(booking_bp, url_prefix="/book")
    app.register_blueprint(payments_bp, url_prefix="/pay")
    app.register_blueprint(counter_bp, url_prefix="/counter")
    app.register_blueprint(fleet_bp, url_prefix="/fleet")
    app.register_blueprint(admin_bp, url_prefix="/admin")
    app.register_blueprint(paperwork_bp, url_prefix="/paperwork")
    app.register_blueprint(media_bp, url_prefix="/media")  # car photos: public
    app.register_blueprint(privacy_bp)  # /account/data (customers), /admin/privacy (admins)

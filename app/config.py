"""Every tunable of the portal, as a named setting.

Defaults live here; `create_app` then applies `FLASK_`-prefixed environment variables
(`app.config.from_prefixed_env()`), e.g. ``FLASK_LEGAL_DRIVING_AGE=21`` or
``FLASK_SQLALCHEMY_DATABASE_URI=postgresql+psycopg://...``. A few well-known plain names
(``DATABASE_URL``, ``REDIS_URL``, ``SECRET_KEY``) are honoured too because every host
and tool already speaks them.
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def _normalise_db_url(url: str) -> str:
    """Use the psycopg 3 driver for plain postgres URLs."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


class Config:
    # --- environment -------------------------------------------------------------
    ENV_NAME = os.environ.get("ACME_ENV", "development")  # development | test | production
    SECRET_KEY = os.environ.get("SECRET_KEY", "dev-only-not-secret")
    INSECURE_DEV_SECRET = "dev-only-not-secret"

    # --- storage -----------------------------------------------------------------
    SQLALCHEMY_DATABASE_URI = _normalise_db_url(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'instance' / 'acme.sqlite3'}")
    )
    SQLALCHEMY_ENGINE_OPTIONS: dict = {"pool_pre_ping": True}
    REDIS_URL = os.environ.get("REDIS_URL", "")  # empty: jobs in-process, limiter in memory
    UPLOAD_DIR = os.environ.get("UPLOAD_DIR", str(BASE_DIR / "instance" / "uploads"))
    MAX_CONTENT_LENGTH = 16 * 1024 * 1024  # bytes; larger requests get 413

    # --- background jobs ---------------------------------------------------------
    # "rq" when REDIS_URL is set; otherwise "thread" (in-process, off the request) or
    # "sync" (in-process, inline; used by tests so results are deterministic).
    JOBS_MODE = os.environ.get("JOBS_MODE", "")
    JOBS_QUEUE_NAME = "acme"
    JOB_MAX_RETRIES = 3
    JOB_RETRY_INTERVALS_SECONDS = [5, 30, 120]
    JOB_TIMEOUT_SECONDS = 120

    # --- business rules ------------------------------------------------------------
    LEGAL_DRIVING_AGE = 18
    DEFAULT_TIMEZONE = "Europe/London"
    DEFAULT_CURRENCY = "GBP"

    # --- accounts and security -----------------------------------------------------
    PASSWORD_MIN_LENGTH = 12
    PASSWORD_MIN_ZXCVBN_SCORE = 3  # 0..4, zxcvbn's scale
    PASSWORD_RESET_MAX_AGE_SECONDS = 60 * 60
    SIGNIN_RATE_LIMIT = "5 per minute"
    PASSWORD_RESET_RATE_LIMIT = "5 per hour"
    RATELIMIT_HEADERS_ENABLED = True
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = False  # set True outside development in create_app
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    WTF_CSRF_TIME_LIMIT = None  # token lives as long as the session
    FORCE_HTTPS = False  # Nginx terminates TLS; Talisman only sets headers

    # --- mail ----------------------------------------------------------------------
    MAIL_BACKEND = os.environ.get("MAIL_BACKEND", "outbox")  # outbox (dev only) | smtp
    MAIL_SENDER = "ACME Rentals <no-reply@acme-rentals.example>"
    SMTP_HOST = os.environ.get("SMTP_HOST", "127.0.0.1")
    SMTP_PORT = int(os.environ.get("SMTP_PORT", "25"))
    SMTP_USERNAME = os.environ.get("SMTP_USERNAME", "")
    SMTP_PASSWORD = os.environ.get("SMTP_PASSWORD", "")
    SMTP_STARTTLS = False
    SMTP_TIMEOUT_SECONDS = 10
    PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL", "http://127.0.0.1:5000")

    # --- logging -------------------------------------------------------------------
    LOG_LEVEL = "INFO"
    LOG_JSON = False


class TestConfig(Config):
    ENV_NAME = "test"
    TESTING = True
    SECRET_KEY = "test-secret-key-not-for-production"
    JOBS_MODE = "sync"
    MAIL_BACKEND = "outbox"
    WTF_CSRF_ENABLED = True
    SIGNIN_RATE_LIMIT = "5 per minute"

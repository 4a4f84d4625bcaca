"""Fixtures in the style of Flask's tutorial: app, client, runner, and an auth helper.

The suite runs against SQLite by default, and against PostgreSQL and Redis when
TEST_DATABASE_URL / TEST_REDIS_URL are set (the README's test command does both passes).
Tests marked `postgres` need PostgreSQL; the SQLite pass deselects them, it never skips.
The schema is built once per run by the real migrations; every test then starts from
empty tables.
"""

from __future__ import annotations

import contextvars
import os
import re
from contextlib import contextmanager

import pytest
from flask import Flask, has_app_context
from flask.testing import FlaskClient
from flask_migrate import upgrade
from jinja2 import BytecodeCache
from sqlalchemy import event, text
from werkzeug.routing import Rule

from app import create_app
from app.config import Config, TestConfig, _normalise_db_url
from app.extensions import db, limiter
from app.security import allow

from . import factories

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "")
class _TemplateCache(BytecodeCache):
    """Compiled templates shared by every app of the run (in memory)."""

    def __init__(self):
        self.compiled: dict[str, bytes] = {}

    def load_bytecode(self, bucket):
        if bucket.key in self.compiled:
            bucket.bytecode_from_string(self.compiled[bucket.key])

    def dump_bytecode(self, bucket):
        self.compiled[bucket.key] = bucket.bytecode_to_string()


PASSWORD_HASHING = ("PASSWORD_HASH_TIME_COST", "PASSWORD_HASH_MEMORY_KIB", "PASSWORD_HASH_PARALLELISM")
CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|"X-CSRFToken": "([^"]+)"')


# --- what every test app would otherwise redo ---------------------------------------------
# Each test builds its own app (a fresh app per test, as in Flask's tutorial). Two parts of
# that are the same for every app and cost more than the test itself: werkzeug compiling a
# URL builder for each of ~95 rules, and Jinja compiling each template an app renders. Both
# are kept for the run: the builders by what they are built from, the templates in Jinja's
# own bytecode cache (keyed by the source's checksum, so an edited template is compiled anew).
_builders: dict = {}
_compile_builder = Rule._compile_builder


def _shared_compile_builder(self, append_unknown=True):
    key = (self.rule, tuple(self._trace), tuple(sorted((self.defaults or {}).items(), key=repr)),
           tuple((k, type(v), vars(v).get("regex")) for k, v in sorted(self._converters.items())),
           append_unknown)
    if key not in _builders:
        _builders[key] = _compile_builder(self, append_unknown)
    return _builders[key]


Rule._compile_builder = _shared_compile_builder
Flask.jinja_options = {**Flask.jinja_options, "bytecode_cache": _TemplateCache()}


def pytest_collection_modifyitems(config, items):
    if not TEST_DATABASE_URL:
        return
    # Fail loudly (never skip) if the PostgreSQL pass cannot reach its services.
    for item in items:
        item.add_marker(pytest.mark.usefixtures("_services_reachable"))


def make_test_config(**overrides) -> dict:
    cfg = {k: getattr(TestConfig, k) for k in dir(TestConfig) if k.isupper()}
    cfg.update(ENV_NAME="test", TESTING=True, JOBS_MODE="sync", MAIL_BACKEND="outbox",
               REDIS_URL=TEST_REDIS_URL, RATELIMIT_STORAGE_URI="",
               SQLALCHEMY_DATABASE_URI=_database_url())
    if overrides.get("ENV_NAME", "test") not in ("test", "development"):
        # A production-like app is built with production's password hashing (it refuses the
        # tests' cheap one) unless the test says otherwise.
        cfg.update({k: getattr(Config, k) for k in PASSWORD_HASHING})
    cfg.update(overrides)
    return cfg


_sqlite_path: str | None = None


def _database_url() -> str:
    if TEST_DATABASE_URL:
        return _normalise_db_url(TEST_DATABASE_URL)
    return f"sqlite:///{_sqlite_path}"


@pytest.fixture(scope="session")
def _schema(tmp_path_factory):
    """Build the schema once with the real migrations."""
    global _sqlite_path
    if not TEST_DATABASE_URL:
        _sqlite_path = str(tmp_path_factory.mktemp("db") / "test.sqlite3")
    app = create_app(make_test_config())
    with app.app_context():
        if TEST_DATABASE_URL:
            with db.engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
                # A throw-away test database: a commit need not wait for the disk (what a
                # crash of this machine would lose is nothing the tests keep). Every later
                # connection, the servers' and workers' included, gets it.
                name = conn.execute(text("SELECT current_database()")).scalar_one()
                conn.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit TO off'))
        upgrade(revision="heads")
        db.engine.dispose()
    return _database_url()


@pytest.fixture(scope="session")
def _services_reachable(_schema):
    import redis
    app = create_app(make_test_config())
    with app.app_context():
        db.session.execute(text("SELECT 1"))
        assert db.engine.dialect.name == "postgresql", "TEST_DATABASE_URL must be PostgreSQL"
        db.session.remove()
        db.engine.dispose()
    if TEST_REDIS_URL:
        connection = redis.Redis.from_url(TEST_REDIS_URL, socket_timeout=5)
        assert connection.ping()
        connection.close()


def _empty_tables() -> None:
    """Every table empty and every id counting from 1 again, as after the migrations.

    PostgreSQL: TRUNCATE costs per table named (new files for each), a tenth of a second and
    more for all ~45 when most tests fill a handful: so only the tables holding rows are
    truncated, and the sequences used since their last restart are restarted."""
    tables = [t.name for t in db.metadata.sorted_tables]
    if db.engine.dialect.name == "postgresql":
        holding_rows = " UNION ALL ".join(
            f"SELECT '{name}' FROM (SELECT 1 FROM {name} LIMIT 1) AS {name}_row" for name in tables)
        filled = db.session.scalars(text(holding_rows)).all()
        used = db.session.scalars(text(
            "SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename) FROM pg_sequences "
            "WHERE last_value IS NOT NULL")).all()
        if filled:
            db.session.execute(text(f"TRUNCATE {', '.join(filled)} RESTART IDENTITY CASCADE"))
        for sequence in used:
            db.session.execute(text(f"ALTER SEQUENCE {sequence} RESTART"))
    else:
        for name in reversed(tables):
            db.session.execute(text(f"DELETE FROM {name}"))
    db.session.commit()


class IsolatedClient(FlaskClient):
    """Each request gets its own app context (own `g`, own DB session), as in production.

    Without this, Flask reuses the test's pushed app context for the request, so `g` and
    the session would leak between requests and clients.
    """

    def open(self, *args, **kwargs):
        response = contextvars.Context().run(super().open, *args, **kwargs)
        if has_app_context():
            db.session.expire_all()  # see what the request committed
        return response


@pytest.fixture
def app(_schema):
    app = create_app(make_test_config())
    app.test_client_class = IsolatedClient
    with app.app_context():
        limiter.reset()  # rate-limit counts in Redis outlive an app; start each test afresh
        yield app
        db.session.remove()
        _empty_tables()
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def make_app(_schema):
    """Build an app with extra settings (the `app` fixture's tables are shared)."""
    built_apps = []

    def build(**overrides):
        built = create_app(make_test_config(**overrides))
        built.test_client_class = IsolatedClient
        built_apps.append(built)
        return built
    yield build
    for built in built_apps:  # close their connection pools: no leaked connections
        with built.app_context():
            db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def add_public_route(app, rule: str, view) -> None:
    """A test's own view on `app` (before its first request), open to anyone, GET and POST."""
    app.add_url_rule(rule, view.__name__, allow("public")(view), methods=["GET", "POST"])


@contextmanager
def statements_sent(app, record=lambda cursor, statement: statement):
    """What `app` sends to the database meanwhile: `record(cursor, statement)` of each statement
    (by default the statement), in a list filled as they go."""
    with app.app_context():
        engine = db.engine
    seen: list = []

    def listen(conn, cursor, statement, *args):
        seen.append(record(cursor, statement))

    event.listen(engine, "before_cursor_execute", listen)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", listen)


def csrf_token(client, url: str = "/") -> str:
    html = client.get(url).get_data(as_text=True)
    match = CSRF_RE.search(html)
    assert match, f"no CSRF token on {url}"
    return match.group(1) or match.group(2)


def post_form(client, url: str, data: dict, *, token_from: str | None = None, **kwargs):
    """POST like a browser: with the CSRF token the page carries."""
    payload = {"csrf_token": csrf_token(client, token_from or url), **data}
    return client.post(url, data=payload, **kwargs)


class AuthActions:
    def __init__(self, client):
        self._client = client

    def sign_in(self, email: str, password: str = factories.PASSWORD):
        return post_form(self._client, "/account/sign-in", {"email": email, "password": password})

    def sign_in_as(self, role: str, **user_fields):
        user = factories.make_user(role, **user_fields)
        if user.is_staff:  # staff and admins sign in with a second factor (issue 8)
            factories.enrol_two_factor(user)
        response = self.sign_in(user.email)
        assert response.status_code == 303, response.get_data(as_text=True)
        if user.is_staff:
            response = self.give_two_factor_code(user)
            assert response.status_code == 303, response.get_data(as_text=True)
        return user

    def give_two_factor_code(self, user):
        """The second sign-in step for staff: the code their authenticator app shows now."""
        return post_form(self._client, "/account/two-factor",
                         {"code": factories.two_factor_code(user)})

    def sign_out(self):
        return post_form(self._client, "/account/sign-out", {}, token_from="/")


@pytest.fixture
def auth(client):
    return AuthActions(client)

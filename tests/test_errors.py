"""Every error answers as the client wants: a friendly page, an htmx fragment, or JSON."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from app.extensions import db
from app.models import User
from tests.conftest import IsolatedClient, add_public_route


def test_404_page_fragment_and_json(client):
    page = client.get("/no-such-page")
    assert page.status_code == 404
    assert "<html" in page.get_data(as_text=True) and "We could not find that page." in page.get_data(as_text=True)
    fragment = client.get("/no-such-page", headers={"HX-Request": "true"})
    assert fragment.status_code == 404
    assert "<html" not in fragment.get_data(as_text=True)
    assert 'data-status="404"' in fragment.get_data(as_text=True)
    as_json = client.get("/no-such-page", headers={"Accept": "application/json"})
    assert as_json.status_code == 404 and as_json.json["status"] == 404
    assert as_json.json["request_id"] == as_json.headers["X-Request-ID"]


def test_405(client):
    response = client.get("/account/sign-out")
    assert response.status_code == 405
    assert "That action is not possible here." in response.get_data(as_text=True)


def test_413_on_oversized_body(make_app):
    app = make_app(MAX_CONTENT_LENGTH=1024, WTF_CSRF_ENABLED=False)
    response = app.test_client().post("/account/sign-in", data={"email": "x" * 5000})
    assert response.status_code == 413
    assert "too large" in response.get_data(as_text=True)


def test_unexpected_error_is_logged_with_request_id_rolled_back_and_friendly(app, capfd):
    def explode():
        db.session.add(User(email="ghost@example.com", full_name="Ghost", password_hash="x"))
        db.session.flush()
        raise RuntimeError("boom: secret internals")
    add_public_route(app, "/explode", explode)

    response = app.test_client().get("/explode", headers={"X-Request-ID": "req42abc"})
    body = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "something went wrong on our side" in body and "req42abc" in body
    assert "secret internals" not in body and "Traceback" not in body
    logged = capfd.readouterr().err
    assert "unhandled exception" in logged and "req42abc" in logged and "RuntimeError" in logged
    assert db.session.scalar(select(User).where(User.email == "ghost@example.com")) is None


def test_database_down_gives_friendly_503(make_app, app):
    broken = make_app(SQLALCHEMY_DATABASE_URI="postgresql+psycopg://nobody@127.0.0.1:1/none")

    def query():
        db.session.execute(text("SELECT 1"))
        return "ok"
    add_public_route(broken, "/query", query)
    response = broken.test_client().get("/query")
    assert response.status_code == 503
    assert "Temporarily unavailable" in response.get_data(as_text=True)


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
def test_database_down_for_a_signed_in_user_is_still_the_friendly_503(make_app, app, htmx):
    """Loading the signed-in user needs the database too: the error page must not."""
    broken = make_app(SQLALCHEMY_DATABASE_URI="postgresql+psycopg://nobody@127.0.0.1:1/none")
    client = broken.test_client()
    with broken.test_request_context("/"):
        from flask import session
        session["_user_id"], session["_fresh"] = "1:token", True
        cookie = broken.session_interface.get_signing_serializer(broken).dumps(dict(session))
    client.set_cookie(broken.config["SESSION_COOKIE_NAME"], cookie)
    response = client.get("/book/mine", headers={"HX-Request": "true"} if htmx else {})
    body = response.get_data(as_text=True)
    assert response.status_code == 503
    assert "Temporarily unavailable" in body and "Traceback" not in body


class _PostgresThatCanGoDown:
    """A TCP relay to the test database whose `down()` drops every connection and refuses
    new ones: PostgreSQL stopping, as seen from the app."""

    def __init__(self, url: str):
        import socket
        import threading
        from sqlalchemy.engine import make_url
        self.target = make_url(url)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = self.target.set(host="127.0.0.1", port=self.listener.getsockname()[1])
        self.sockets: list = []
        self.is_down = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import socket
        import threading
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.is_down:
                client.close()
                return
            upstream = socket.create_connection((self.target.host, self.target.port or 5432))
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass

    def down(self):
        import socket
        self.is_down = True
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        except OSError:
            pass
        self.listener.close()
        for sock in self.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


@pytest.mark.postgres
def test_database_going_down_after_the_user_was_loaded_is_still_the_friendly_503(make_app, app):
    """The handler's rollback expires the signed-in user: the page must not reload it."""
    from flask_login import current_user

    from app.extensions import db as database
    from tests.conftest import AuthActions, _database_url
    postgres = _PostgresThatCanGoDown(_database_url())
    relayed = make_app(SQLALCHEMY_DATABASE_URI=postgres.url.render_as_string(hide_password=False))

    def goes_down_midway():
        assert current_user.is_authenticated  # the user is loaded
        postgres.down()
        database.session.execute(text("SELECT 1"))
        return "unreachable"
    add_public_route(relayed, "/goes-down-midway", goes_down_midway)
    client = relayed.test_client()
    with relayed.app_context():
        AuthActions(client).sign_in_as("customer")
    response = client.get("/goes-down-midway")
    body = response.get_data(as_text=True)
    assert response.status_code == 503
    assert "Temporarily unavailable" in body and "Traceback" not in body


@pytest.mark.postgres
def test_a_database_restart_at_the_end_of_a_request_does_not_turn_its_answer_into_an_error(app):
    """PostgreSQL restarting kills the request's connection: closing the session afterwards
    (a rollback on a dead connection) must not fail the answer already made."""
    def killed_at_the_end():
        pid = db.session.execute(text("SELECT pg_backend_pid()")).scalar()  # a transaction is open
        with db.engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        return "answered"
    add_public_route(app, "/killed-at-the-end", killed_at_the_end)
    response = app.test_client().get("/killed-at-the-end")
    assert response.status_code == 200 and response.get_data(as_text=True) == "answered"
    # The next request gets a working connection.
    assert db.session.execute(text("SELECT 1")).scalar() == 1


def test_healthz_reports_each_dependency(make_app, app):
    ok = app.test_client().get("/healthz")
    assert ok.status_code == 200 and ok.json["checks"]["database"] == "ok"

    no_db = make_app(SQLALCHEMY_DATABASE_URI="postgresql+psycopg://nobody@127.0.0.1:1/none")
    r = no_db.test_client().get("/healthz")
    assert r.status_code == 503 and r.json["checks"]["database"].startswith("down")

    no_redis = make_app(REDIS_URL="redis://127.0.0.1:1/0")
    r = no_redis.test_client().get("/healthz")
    assert r.status_code == 503 and r.json["checks"]["redis"].startswith("down")
    assert r.json["checks"]["database"] == "ok"


@pytest.mark.postgres
def test_healthz_sees_redis_when_configured(app):
    r = app.test_client().get("/healthz")
    assert r.status_code == 200 and r.json["checks"]["redis"] == "ok"


def test_production_refuses_weak_secret(make_app):
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        make_app(ENV_NAME="production", SECRET_KEY="dev-only-not-secret", MAIL_BACKEND="smtp")
    with pytest.raises(RuntimeError, match="outbox"):
        make_app(ENV_NAME="production", SECRET_KEY="x" * 40, MAIL_BACKEND="outbox")


def test_dev_outbox_only_in_development(make_app, app):
    assert app.test_client().get("/dev/outbox").status_code == 404  # test env
    dev = make_app(ENV_NAME="development")
    dev.test_client_class = IsolatedClient
    assert dev.test_client().get("/dev/outbox").status_code == 200

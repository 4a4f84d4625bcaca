"""Every error answers as the client wants: a friendly page, an htmx fragment, or JSON."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from app.extensions import db
from app.models import User
from app.security import allow
from tests.conftest import IsolatedClient


def _add_route(app, rule, view):
    app.add_url_rule(rule, view.__name__, allow("public")(view), methods=["GET", "POST"])


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
    _add_route(app, "/explode", explode)

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
    _add_route(broken, "/query", query)
    response = broken.test_client().get("/query")
    assert response.status_code == 503
    assert "Temporarily unavailable" in response.get_data(as_text=True)


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

"""Security headers on every kind of answer, a CSP the pages actually live within, cookie flags."""

from __future__ import annotations

from html.parser import HTMLParser
from http.cookies import SimpleCookie

import pytest

from app import create_app
from tests import factories
from tests.conftest import make_test_config, post_form

REFERRER_POLICIES = {"no-referrer", "same-origin", "strict-origin", "strict-origin-when-cross-origin"}


def csp(response) -> dict[str, list[str]]:
    header = response.headers.get("Content-Security-Policy", "")
    directives = {}
    for part in filter(None, (p.strip() for p in header.split(";"))):
        name, *values = part.split()
        directives[name] = values
    return directives


def assert_secure_headers(response) -> None:
    policy = csp(response)
    script_src = policy.get("script-src", policy.get("default-src"))
    assert script_src is not None, "no script policy"
    assert "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in script_src
    assert "*" not in script_src and "data:" not in script_src
    assert policy["default-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] in (["'self'"], ["'none'"])
    assert policy["frame-ancestors"] == ["'none'"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] in REFERRER_POLICIES


def set_cookies(response) -> dict[str, dict]:
    """name -> its attributes, from every Set-Cookie header."""
    cookies = {}
    for header in response.headers.getlist("Set-Cookie"):
        jar = SimpleCookie()
        jar.load(header)
        for name, morsel in jar.items():
            lowered = header.lower()
            cookies[name] = {"httponly": "httponly" in lowered, "secure": "; secure" in lowered,
                             "samesite": morsel["samesite"]}
    return cookies


class _InlineCode(HTMLParser):
    """Collects what a CSP without 'unsafe-inline' would block: inline scripts and handlers."""

    def __init__(self):
        super().__init__()
        self.problems: list[str] = []
        self._in_inline_script = False

    def handle_starttag(self, tag, attrs):
        names = dict(attrs)
        for name, _value in attrs:
            if name.startswith("on"):
                self.problems.append(f"<{tag} {name}=...>")
        if tag == "script" and not names.get("src"):
            self.problems.append("<script> without src")
        if "style" in names:
            self.problems.append(f"<{tag} style=...>")
        if tag == "a" and (names.get("href") or "").strip().lower().startswith("javascript:"):
            self.problems.append("javascript: link")


def inline_code(html: str) -> list[str]:
    parser = _InlineCode()
    parser.feed(html)
    return parser.problems


PUBLIC_PAGES = ["/", "/account/sign-in", "/account/sign-up", "/account/forgot-password",
                "/account/reset/not-a-token", "/book/"]


@pytest.mark.parametrize("url", PUBLIC_PAGES)
def test_public_pages_send_security_headers_and_need_no_inline_code(client, url):
    response = client.get(url)
    assert response.status_code < 500
    assert_secure_headers(response)
    assert inline_code(response.get_data(as_text=True)) == []


def test_signed_in_pages_need_no_inline_code(app, client, auth):
    auth.sign_in_as("customer")
    for url in ("/account/profile", "/account/password"):
        response = client.get(url)
        assert response.status_code == 200
        assert_secure_headers(response)
        assert inline_code(response.get_data(as_text=True)) == [], url


@pytest.mark.parametrize("request_kwargs", [
    {"path": "/no-such-page"},
    {"path": "/no-such-page", "headers": {"HX-Request": "true"}},
    {"path": "/no-such-page", "headers": {"Accept": "application/json"}},
    {"path": "/healthz"},
    {"path": "/account/sign-up", "method": "POST"},  # no CSRF token: 400
], ids=["404-page", "404-fragment", "404-json", "json", "csrf-400"])
def test_errors_and_json_carry_the_headers_too(client, request_kwargs):
    response = client.open(**request_kwargs)
    assert_secure_headers(response)


def test_htmx_fragment_carries_the_headers_and_varies_on_hx_request(client):
    response = post_form(client, "/account/sign-in", {"email": "", "password": ""},
                         headers={"HX-Request": "true"})
    assert response.status_code == 422
    assert_secure_headers(response)
    assert "HX-Request" in response.headers["Vary"]


def test_session_cookie_is_httponly_and_samesite_lax(client):
    cookies = set_cookies(client.get("/account/sign-in"))
    assert cookies["session"]["httponly"] and cookies["session"]["samesite"] == "Lax"


def test_remember_cookie_is_httponly_and_samesite_lax(app, client):
    user = factories.make_user()
    response = post_form(client, "/account/sign-in", {"email": user.email,
                                                      "password": factories.PASSWORD,
                                                      "remember": "y"})
    assert response.status_code == 303
    cookie = set_cookies(response)["remember_token"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"


@pytest.mark.parametrize("env_name", ["staging", "production"])
def test_cookies_are_secure_outside_development(app, make_app, env_name):
    site = make_app(ENV_NAME=env_name, SECRET_KEY="s" * 48, MAIL_BACKEND="smtp")
    with site.app_context():
        user = factories.make_user()
        client = site.test_client()
        url = "https://localhost/account/sign-in"
        first = client.get(url)
        assert set_cookies(first)["session"] == {"httponly": True, "secure": True,
                                                 "samesite": "Lax"}
        # Over HTTPS, Flask-WTF also wants the Referer a browser sends for a same-origin form.
        response = post_form(client, url, {"email": user.email, "password": factories.PASSWORD,
                                           "remember": "y"}, headers={"Referer": url})
        assert response.status_code == 303
        cookies = set_cookies(response)
        assert cookies["remember_token"] == {"httponly": True, "secure": True, "samesite": "Lax"}
        assert cookies["session"]["secure"]


def test_development_cookies_work_over_plain_http(client):
    assert not set_cookies(client.get("/account/sign-in"))["session"]["secure"]


def test_production_asks_browsers_to_stay_on_https(app, make_app):
    site = make_app(ENV_NAME="production", SECRET_KEY="s" * 48, MAIL_BACKEND="smtp")
    with site.app_context():
        response = site.test_client().get("https://localhost/")
        assert "max-age=" in response.headers["Strict-Transport-Security"]
        assert_secure_headers(response)


@pytest.mark.parametrize("overrides, complaint", [
    ({"SECRET_KEY": "dev-only-not-secret", "MAIL_BACKEND": "smtp"}, "SECRET_KEY"),
    ({"SECRET_KEY": "short", "MAIL_BACKEND": "smtp"}, "SECRET_KEY"),
    ({"SECRET_KEY": "s" * 48, "MAIL_BACKEND": "outbox"}, "outbox"),
])
def test_production_refuses_to_start_unsafely(_schema, overrides, complaint):
    with pytest.raises(RuntimeError, match=complaint):
        create_app(make_test_config(ENV_NAME="production", **overrides))

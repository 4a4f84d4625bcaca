"""Security headers and cookie flags on every kind of response the portal sends.

Checked as production runs: ENV_NAME=production behind Nginx's TLS (the requests are https),
so HSTS and Secure cookies are expected. One response of each kind: a public page, a form
page, an htmx fragment, a JSON error, an HTML error, a static file, a staff page, a customer
page, a redirect, and the metrics text.
"""

from __future__ import annotations

import re
from http.cookies import SimpleCookie

import pytest
from flask.testing import FlaskClient

from tests import factories

HTTPS = "https://localhost"
CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|"X-CSRFToken": "([^"]+)"')

# Every response, whatever its kind.
ALWAYS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}
ONE_YEAR = 365 * 24 * 60 * 60


@pytest.fixture
def prod(make_app, app):
    """The portal configured as in production (the `app` fixture owns the tables)."""
    return make_app(ENV_NAME="production", SECRET_KEY="p" * 48, MAIL_BACKEND="smtp",
                    SESSION_COOKIE_SECURE=False, REMEMBER_COOKIE_SECURE=False)


def _get(client, url, **kwargs):
    response = client.get(url, base_url=HTTPS, **kwargs)
    response.get_data()
    response.close()  # a static file is streamed from an open file
    return response


def _post_form(client, url, data):
    """A browser's POST over https: the page's CSRF token, and a same-origin Referer."""
    html = _get(client, url).get_data(as_text=True)
    match = CSRF_RE.search(html)
    assert match, f"no CSRF token on {url}"
    token = match.group(1) or match.group(2)
    return client.post(url, data={"csrf_token": token, **data}, base_url=HTTPS,
                       headers={"Referer": HTTPS + url})


def _sign_in(client, role: str, *, remember: bool = False):
    user = factories.make_user(role)
    data = {"email": user.email, "password": factories.PASSWORD}
    if remember:
        data["remember"] = "y"
    if user.is_staff:
        factories.enrol_two_factor(user)
    response = _post_form(client, "/account/sign-in", data)
    assert response.status_code == 303, response.status_code
    if user.is_staff:
        response = _post_form(client, "/account/two-factor",
                              {"code": factories.two_factor_code(user)})
        assert response.status_code == 303, response.status_code
    return user, response


class RecordingClient(FlaskClient):
    """A test client that keeps every Set-Cookie header it was sent (signing in included)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cookies_set: list[str] = []

    def open(self, *args, **kwargs):
        response = super().open(*args, **kwargs)
        self.cookies_set.extend(response.headers.getlist("Set-Cookie"))
        return response


def _page(prod, kind: str, client: FlaskClient | None = None):
    """(response, html?) for one kind of page."""
    client = client or prod.test_client()
    with prod.app_context():
        if kind == "public page":
            return _get(client, "/"), True
        if kind == "form page":
            return _get(client, "/account/sign-in"), True
        if kind == "htmx fragment":
            branch = factories.make_branch()
            factories.make_car(branch=branch)
            response = _get(client, "/book/", headers={"HX-Request": "true"})
            assert "<html" not in response.get_data(as_text=True)
            return response, True
        if kind == "json error":
            response = _get(client, "/no-such-page", headers={"Accept": "application/json"})
            assert response.status_code == 404 and response.is_json
            return response, False
        if kind == "html error":
            response = _get(client, "/no-such-page")
            assert response.status_code == 404
            return response, True
        if kind == "static file":
            return _get(client, "/static/css/app.css"), False
        if kind == "staff page":
            _sign_in(client, "staff")
            response = _get(client, "/counter/")
            assert response.status_code == 200
            return response, True
        if kind == "customer page":
            _sign_in(client, "customer")
            response = _get(client, "/account/profile")
            assert response.status_code == 200
            return response, True
        if kind == "redirect":
            response = _get(client, "/admin/")
            assert response.status_code == 302
            return response, False
        if kind == "metrics":
            _sign_in(client, "admin")
            response = _get(client, "/metrics")
            assert response.status_code == 200
            return response, False
    raise AssertionError(kind)


KINDS = ["public page", "form page", "htmx fragment", "json error", "html error", "static file",
         "staff page", "customer page", "redirect", "metrics"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_of_response_carries_the_security_headers(prod, kind):
    response, html = _page(prod, kind)
    for name, expected in ALWAYS.items():
        assert response.headers.get(name) == expected, (kind, name, response.headers.get(name))
    hsts = response.headers.get("Strict-Transport-Security", "")
    assert int(re.search(r"max-age=(\d+)", hsts).group(1)) >= ONE_YEAR - 86400, hsts
    assert "includeSubDomains" in hsts
    assert "camera" in response.headers.get("Permissions-Policy", "")
    csp = _csp(response)
    assert csp["script-src"] == {"'self'"}, "no inline or third-party scripts"
    assert csp["object-src"] == {"'none'"}
    assert csp["frame-ancestors"] == {"'none'"}
    assert csp["base-uri"] == {"'self'"} and csp["form-action"] == {"'self'"}
    assert not any("'unsafe-inline'" in v or "'unsafe-eval'" in v or "*" in v
                   for v in csp.values()), csp
    if html:
        # The same URL answers a page or a fragment: caches must keep them apart.
        assert "HX-Request" in response.headers.get("Vary", "")


def _csp(response) -> dict[str, set[str]]:
    header = response.headers.get("Content-Security-Policy", "")
    assert header, "no Content-Security-Policy"
    directives = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0]] = set(words[1:])
    return directives


# The cookies each kind of visit sets on its way (signing in included). Visitors who are not
# signed in get no cookie from pages without a form: nothing tracks them, and the public page
# cache (app/pagecache.py) may share those pages.
COOKIES_SET = {"public page": set(), "form page": {"session"}, "htmx fragment": set(),
               "json error": set(), "html error": set(), "static file": set(),
               "staff page": {"session"}, "customer page": {"session"}, "redirect": {"session"},
               "metrics": {"session"}}


@pytest.mark.parametrize("kind", KINDS)
def test_every_cookie_set_anywhere_is_secure_httponly_and_samesite(prod, kind):
    client = RecordingClient(prod, prod.response_class, use_cookies=True)
    _page(prod, kind, client)
    assert {SimpleCookie(c).popitem()[0] for c in client.cookies_set} == COOKIES_SET[kind]
    for header in client.cookies_set:
        _assert_strict_cookie(header)


def _assert_strict_cookie(header: str) -> None:
    flags = {f.strip().split("=")[0].lower(): f.strip() for f in header.split(";")[1:]}
    name = header.split("=", 1)[0]
    assert "secure" in flags, f"{name} without Secure"
    assert "httponly" in flags, f"{name} readable by scripts"
    assert flags.get("samesite", "").lower() in ("samesite=lax", "samesite=strict"), header


def test_signing_in_with_remember_me_sets_only_strict_cookies(prod):
    client = prod.test_client()
    with prod.app_context():
        _, response = _sign_in(client, "customer", remember=True)
    cookies = response.headers.getlist("Set-Cookie")
    names = {SimpleCookie(c).popitem()[0] for c in cookies}
    assert {"session", "remember_token"} <= names, names
    for header in cookies:
        _assert_strict_cookie(header)


def test_static_files_and_json_errors_set_no_cookie(prod):
    client = prod.test_client()
    with prod.app_context():
        _sign_in(client, "customer")  # even for someone signed in
        for response in (_get(client, "/static/css/app.css"),
                         _get(client, "/nope", headers={"Accept": "application/json"})):
            assert response.headers.getlist("Set-Cookie") == []


@pytest.mark.parametrize("kind", ["staff page", "customer page", "metrics"])
def test_signed_in_pages_are_never_stored_by_a_shared_cache(prod, kind):
    response, _ = _page(prod, kind)
    cache = response.headers.get("Cache-Control", "")
    assert "no-store" in cache or "private" in cache, (kind, cache)


def test_cookies_are_secure_outside_development_even_if_configured_otherwise(prod):
    """A forgotten SESSION_COOKIE_SECURE=False must not leak the session over plain http."""
    assert prod.config["SESSION_COOKIE_SECURE"] is True
    assert prod.config["REMEMBER_COOKIE_SECURE"] is True
    assert prod.config["SESSION_COOKIE_HTTPONLY"] and prod.config["REMEMBER_COOKIE_HTTPONLY"]

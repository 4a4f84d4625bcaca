"""Least privilege: every route x every role gets exactly the expected allow or refuse.

EXPECTED is written by hand, not derived from the code: it is what the business wants.
Adding a route means adding its row here, or `test_every_route_is_in_the_table` fails.
"""

from __future__ import annotations

import pytest

from app.security import undeclared_endpoints
from tests import factories

ANON, CUSTOMER, STAFF, ADMIN = "anonymous", "customer", "staff", "admin"
EVERYONE = {ANON, CUSTOMER, STAFF, ADMIN}
SIGNED_IN = {CUSTOMER, STAFF, ADMIN}
STAFF_AREA = {STAFF, ADMIN}

# endpoint -> (method, url, who may use it)
EXPECTED: dict[str, tuple[str, str, set[str]]] = {
    "main.home": ("GET", "/", EVERYONE),
    "main.healthz": ("GET", "/healthz", EVERYONE),
    "main.outbox": ("GET", "/dev/outbox", EVERYONE),  # 404 outside development
    "accounts.sign_up": ("GET", "/account/sign-up", EVERYONE),
    "accounts.sign_in": ("GET", "/account/sign-in", EVERYONE),
    "accounts.sign_out": ("POST", "/account/sign-out", SIGNED_IN),
    "accounts.profile": ("GET", "/account/profile", {CUSTOMER}),
    "accounts.change_password": ("GET", "/account/password", SIGNED_IN),
    "accounts.forgot_password": ("GET", "/account/forgot-password", EVERYONE),
    "accounts.reset_password": ("GET", "/account/reset/not-a-token", EVERYONE),
    "booking.search": ("GET", "/book/", EVERYONE),
    "returns.board": ("GET", "/counter/", STAFF_AREA),
    "fleet.cars": ("GET", "/fleet/", STAFF_AREA),
    "admin.home": ("GET", "/admin/", {ADMIN}),
}


def test_every_route_declares_its_audience(app):
    assert undeclared_endpoints(app) == []


def test_every_route_is_in_the_table(app):
    routes = {e for e in app.view_functions if e != "static"}
    assert routes - EXPECTED.keys() == set(), "add the new routes to EXPECTED"
    assert EXPECTED.keys() - routes == set(), "EXPECTED names routes that do not exist"


def _signed_in_client(app, role: str):
    from tests.conftest import AuthActions
    client = app.test_client()
    if role != ANON:
        AuthActions(client).sign_in_as(role)
    return client


@pytest.mark.parametrize("role", [ANON, CUSTOMER, STAFF, ADMIN])
def test_route_by_role(app, role):
    client = _signed_in_client(app, role)
    failures = []
    for endpoint, (method, url, allowed) in EXPECTED.items():
        # CSRF is not what is being tested here.
        app.config["WTF_CSRF_ENABLED"] = False
        response = client.open(url, method=method)
        app.config["WTF_CSRF_ENABLED"] = True
        refused = (response.status_code == 403
                   or (role == ANON and response.status_code in (302, 401)
                       and "/account/sign-in" in response.headers.get("Location", "/account/sign-in")))
        if role in allowed and refused:
            failures.append(f"{role} refused at {method} {url} ({response.status_code})")
        if role not in allowed and not refused:
            failures.append(f"{role} let in at {method} {url} ({response.status_code})")
        if response.status_code >= 500:
            failures.append(f"{role} got {response.status_code} at {method} {url}")
        if method == "POST" and role != ANON and endpoint == "accounts.sign_out":
            client = _signed_in_client(app, role)  # signing out ended the session
    assert failures == []


def test_deactivated_user_session_is_refused(app, client, auth):
    user = auth.sign_in_as(STAFF)
    assert client.get("/counter/").status_code == 200
    user.active = False
    factories.db.session.commit()
    response = client.get("/counter/")
    assert response.status_code == 302 and "/account/sign-in" in response.headers["Location"]

"""Sessions end when people say so (issue 15 §2): a copied session or "remember me" cookie
stops working after its owner signs out, changes or resets the password, signs out
everywhere, or is deactivated. Signing out ends this device's session only; the others end
with "sign out everywhere", a password change or reset, or a deactivation.

Each test signs in for real, copies the browser's cookies into other clients (as a thief
with the cookie jar would), and checks the copies work before the event and are sent to
sign in after it.
"""

from __future__ import annotations

import re

import pytest
import requests

from app.accounts import services
from app.extensions import db
from tests import factories
from tests.conftest import AuthActions, post_form
from tests.live_server import live_server, make_live_server  # noqa: F401  (fixtures)

MY_BOOKINGS = "/book/mine"
COUNTER = "/counter/"
SIGN_IN = "/account/sign-in"
NEW_PASSWORD = "violet-Lantern-harbour-73"


def _copies(app, original) -> tuple:
    """Two thieves' clients: one holding the session cookie, one only the remember-me cookie."""
    with_session, with_remember = app.test_client(), app.test_client()
    with_session.set_cookie("session", original.get_cookie("session").value)
    with_remember.set_cookie("remember_token", original.get_cookie("remember_token").value)
    return with_session, with_remember


def _sign_in_remembered(client, user) -> None:
    response = post_form(client, SIGN_IN, {"email": user.email, "password": factories.PASSWORD,
                                           "remember": "y"})
    assert response.status_code == 303, response.get_data(as_text=True)
    if user.is_staff:
        assert AuthActions(client).give_two_factor_code(user).status_code == 303


def _refused(client, url: str) -> bool:
    response = client.get(url)
    return response.status_code == 302 and SIGN_IN in response.headers["Location"]


def _opens(client, url: str) -> bool:
    return client.get(url).status_code == 200


def _sign_out(owner, user):
    assert AuthActions(owner).sign_out().status_code == 303
    assert "You are signed out." in owner.get("/").get_data(as_text=True)


def _sign_out_everywhere(owner, user):
    response = post_form(owner, "/account/sign-out-everywhere", {}, token_from="/account/profile")
    assert response.status_code == 303 and response.headers["Location"] == SIGN_IN


def _change_password(owner, user):
    response = post_form(owner, "/account/password", {
        "current_password": factories.PASSWORD, "password": NEW_PASSWORD,
        "confirm_password": NEW_PASSWORD})
    assert response.status_code == 303, response.get_data(as_text=True)


def _reset_password(owner, user, app=None):
    # The reset is done from another browser (the email's link), not the signed-in one.
    db.session.refresh(user)
    url = f"/account/reset/{services.make_reset_token(user)}"
    response = post_form(owner.application.test_client(), url,
                         {"password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    assert response.status_code == 303, response.get_data(as_text=True)


@pytest.mark.parametrize("event", [_sign_out, _sign_out_everywhere, _change_password,
                                   _reset_password])
def test_a_copied_cookie_dies_with_the_owners_session(app, event):
    user = factories.make_user()
    owner = app.test_client()
    _sign_in_remembered(owner, user)
    with_session, with_remember = _copies(app, owner)
    assert _opens(with_session, MY_BOOKINGS) and _opens(with_remember, MY_BOOKINGS)

    event(owner, user)

    assert _refused(with_session, MY_BOOKINGS)
    assert _refused(with_remember, MY_BOOKINGS)


def _two_devices(app):
    """One customer signed in ("remember me") on a laptop and on a phone."""
    user = factories.make_user()
    laptop, phone = app.test_client(), app.test_client()
    _sign_in_remembered(laptop, user)
    _sign_in_remembered(phone, user)
    return user, laptop, phone


def test_sign_out_everywhere_is_on_the_account_page_and_ends_other_devices(app):
    user, laptop, phone = _two_devices(app)
    page = laptop.get("/account/profile").get_data(as_text=True)
    assert re.search(r'action="/account/sign-out-everywhere"[^>]*>\s*<input type="hidden" '
                     r'name="csrf_token"', page)
    assert ">Sign out everywhere</button>" in page
    _sign_out_everywhere(laptop, user)
    assert _refused(phone, MY_BOOKINGS) and _refused(laptop, MY_BOOKINGS)
    assert "signed out on every device" in laptop.get(SIGN_IN).get_data(as_text=True)
    # Signing in again works as usual.
    _sign_in_remembered(phone, user)
    assert _opens(phone, MY_BOOKINGS)


def test_signing_out_on_one_device_leaves_the_others_signed_in(app):
    """The laptop signs out: its cookies (and their copies) die, the phone carries on."""
    user, laptop, phone = _two_devices(app)
    copy_of_laptop, _ = _copies(app, laptop)
    _sign_out(laptop, user)
    assert _refused(laptop, MY_BOOKINGS) and _refused(copy_of_laptop, MY_BOOKINGS)
    assert _opens(phone, MY_BOOKINGS)
    # The phone's "remember me" alone still signs it in.
    remembered = app.test_client()
    remembered.set_cookie("remember_token", phone.get_cookie("remember_token").value)
    assert _opens(remembered, MY_BOOKINGS)


def test_a_password_change_keeps_this_device_and_ends_the_others(app):
    user, laptop, phone = _two_devices(app)
    _change_password(laptop, user)
    assert _opens(laptop, MY_BOOKINGS)
    assert _refused(phone, MY_BOOKINGS)


def test_a_person_who_never_signs_out_keeps_only_the_newest_sessions(app):
    from app.models import UserSession
    app.config["USER_SESSIONS_MAX"] = 3
    user = factories.make_user()
    devices = [app.test_client() for _ in range(5)]
    for device in devices:
        _sign_in_remembered(device, user)
    assert db.session.query(UserSession).filter_by(user_id=user.id).count() == 3
    assert [_opens(d, MY_BOOKINGS) for d in devices] == [False, False, True, True, True]


def test_sign_out_everywhere_needs_the_csrf_token(app):
    user = factories.make_user()
    owner = app.test_client()
    _sign_in_remembered(owner, user)
    with_session, _ = _copies(app, owner)
    assert owner.post("/account/sign-out-everywhere").status_code == 400
    assert _opens(with_session, MY_BOOKINGS)


def test_a_copied_staff_cookie_dies_when_they_are_deactivated(app, client, auth):
    auth.sign_in_as("admin")
    leaver = factories.enrol_two_factor(factories.make_user("staff"))
    at_the_counter = app.test_client()
    _sign_in_remembered(at_the_counter, leaver)
    with_session, with_remember = _copies(app, at_the_counter)
    assert _opens(with_session, COUNTER) and _opens(with_remember, COUNTER)
    response = post_form(client, f"/admin/staff/{leaver.id}/deactivate", {},
                         token_from=f"/admin/staff/{leaver.id}")
    assert response.status_code == 303
    assert _refused(with_session, COUNTER) and _refused(with_remember, COUNTER)


def _csrf(session: requests.Session, url: str) -> str:
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"|'
                     r'name="csrf_token" value="([^"]+)"', session.get(url).text).group(1, 2)


def test_a_copied_cookie_dies_with_sign_out_on_a_running_server(app, live_server):
    """Through real HTTP: the thief's browser holds a copy of the owner's cookies."""
    user = factories.make_user()
    owner = requests.Session()
    token = next(t for t in _csrf(owner, f"{live_server.url}{SIGN_IN}") if t)
    response = owner.post(f"{live_server.url}{SIGN_IN}", allow_redirects=False, timeout=10,
                          data={"csrf_token": token, "email": user.email,
                                "password": factories.PASSWORD, "remember": "y"})
    assert response.status_code == 303
    assert {"session", "remember_token"} <= set(owner.cookies.keys())
    thieves = []
    for name in ("session", "remember_token"):
        thief = requests.Session()
        thief.cookies.set(name, owner.cookies[name], domain=owner.cookies.list_domains()[0])
        thieves.append(thief)

    def status(client) -> tuple[int, str]:
        r = client.get(f"{live_server.url}{MY_BOOKINGS}", allow_redirects=False, timeout=10)
        return r.status_code, r.headers.get("Location", "")

    assert [status(t)[0] for t in thieves] == [200, 200]
    token = next(t for t in _csrf(owner, f"{live_server.url}{MY_BOOKINGS}") if t)
    response = owner.post(f"{live_server.url}/account/sign-out", data={"csrf_token": token},
                          allow_redirects=False, timeout=10)
    assert response.status_code == 303
    for thief in thieves:
        code, location = status(thief)
        assert code == 302 and SIGN_IN in location

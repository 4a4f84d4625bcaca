"""Staff two-factor sign-in: enrolment with a QR code, codes, recovery codes, expiry."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pyotp
import pytest
from sqlalchemy import select

from app.accounts import twofactor
from app.extensions import db
from app.models import AuditRecord, User
from tests import factories
from tests.conftest import AuthActions, post_form

T0 = datetime(2031, 3, 4, 9, 0, 10, tzinfo=timezone.utc)


def _signed_in_at_counter(client) -> bool:
    return client.get("/counter/").status_code == 200


def _password_step(client, user):
    response = AuthActions(client).sign_in(user.email)
    assert response.status_code == 303
    return response


def test_staff_password_alone_does_not_sign_in(client):
    user = factories.enrol_two_factor(factories.make_user("staff"))
    response = _password_step(client, user)
    assert response.headers["Location"].endswith("/account/two-factor")
    assert not _signed_in_at_counter(client)
    page = client.get("/account/two-factor").get_data(as_text=True)
    assert "Enter your code" in page


@pytest.mark.parametrize("role", ["staff", "admin"])
def test_staff_and_admins_cannot_get_round_the_second_factor(client, role):
    """Not enrolled yet: the password leads to enrolment, and nothing else is open meanwhile."""
    user = factories.make_user(role)
    response = _password_step(client, user)
    assert response.headers["Location"].endswith("/account/two-factor/set-up")
    for url in ("/counter/", "/fleet/", "/admin/", "/account/two-factor/recovery-codes"):
        response = client.get(url)
        assert response.status_code == 302 and "/account/sign-in" in response.headers["Location"], url
    response = client.get("/account/two-factor")
    assert response.status_code == 302 and response.headers["Location"].endswith("/set-up")
    # Enrolled: the password alone still signs nobody in.
    factories.enrol_two_factor(user)
    other = client.application.test_client()
    response = _password_step(other, user)
    assert response.headers["Location"].endswith("/account/two-factor")
    assert other.get("/fleet/").status_code == 302


def test_correct_code_signs_staff_in_and_wrong_code_says_why(client):
    user = factories.enrol_two_factor(factories.make_user("staff"))
    _password_step(client, user)
    wrong = f"{(int(factories.two_factor_code(user)) + 1) % 1_000_000:06d}"
    response = post_form(client, "/account/two-factor", {"code": wrong})
    assert response.status_code == 422
    assert "That code is not right" in response.get_data(as_text=True)
    assert not _signed_in_at_counter(client)
    response = post_form(client, "/account/two-factor", {"code": factories.two_factor_code(user)})
    assert response.status_code == 303 and response.headers["Location"].endswith("/counter/")
    assert _signed_in_at_counter(client)


def test_customers_sign_in_without_a_second_factor(client):
    user = factories.make_user("customer")
    response = AuthActions(client).sign_in(user.email)
    assert response.headers["Location"].endswith("/account/profile")
    assert client.get("/account/profile").status_code == 200


def test_a_code_cannot_be_replayed(app, client):
    user = factories.enrol_two_factor(factories.make_user("admin"))
    code = factories.two_factor_code(user)
    _password_step(client, user)
    assert post_form(client, "/account/two-factor", {"code": code}).status_code == 303
    AuthActions(client).sign_out()
    _password_step(client, user)
    response = post_form(client, "/account/two-factor", {"code": code})
    assert response.status_code == 422
    assert "already been used" in response.get_data(as_text=True)


def test_clock_drift_of_one_step_is_accepted_two_are_not(app):
    user = factories.enrol_two_factor(factories.make_user("staff"))
    totp = pyotp.TOTP(user.totp_secret)
    assert twofactor.verify(user, totp.at(T0 - timedelta(seconds=30)), now=T0) == "totp"
    assert twofactor.verify(user, totp.at(T0 + timedelta(seconds=30)), now=T0) == "totp"
    with pytest.raises(twofactor.TwoFactorError):
        twofactor.verify(user, totp.at(T0 + timedelta(seconds=60)), now=T0 + timedelta(seconds=1))
    with pytest.raises(twofactor.TwoFactorError):
        twofactor.verify(user, totp.at(T0 - timedelta(seconds=90)), now=T0 + timedelta(seconds=40))


def test_too_many_wrong_codes_start_the_sign_in_again(make_app):
    app = make_app(TWO_FACTOR_MAX_ATTEMPTS=3)
    with app.app_context():
        client = app.test_client()
        user = factories.enrol_two_factor(factories.make_user("staff"))
        _password_step(client, user)
        for _ in range(2):
            assert post_form(client, "/account/two-factor", {"code": "000000"},
                             token_from="/account/sign-in").status_code == 422
        response = post_form(client, "/account/two-factor", {"code": "000000"},
                             token_from="/account/sign-in")
        assert response.status_code == 303 and response.headers["Location"].endswith("/account/sign-in")
        # The right code no longer helps: the password must be given again.
        response = post_form(client, "/account/two-factor", {"code": factories.two_factor_code(user)},
                             token_from="/account/sign-in")
        assert "Sign in again" in response.get_data(as_text=True)
        assert not _signed_in_at_counter(client)


def test_the_half_signed_in_state_expires(make_app):
    app = make_app(TWO_FACTOR_PENDING_MAX_AGE_SECONDS=0)
    with app.app_context():
        client = app.test_client()
        user = factories.enrol_two_factor(factories.make_user("staff"))
        _password_step(client, user)
        response = post_form(client, "/account/two-factor", {"code": factories.two_factor_code(user)},
                             token_from="/account/sign-in")
        assert "Sign in again" in response.get_data(as_text=True)
        assert not _signed_in_at_counter(client)


def test_first_sign_in_enrols_with_a_qr_code_and_gives_recovery_codes(client):
    user = factories.make_user("staff")
    response = _password_step(client, user)
    assert response.headers["Location"].endswith("/account/two-factor/set-up")
    page = client.get("/account/two-factor/set-up").get_data(as_text=True)
    # The QR code is drawn here as inline SVG: no image from a third party sees the secret.
    assert re.search(r"<svg[^>]*class=\"qr-code\"", page)
    assert "<img" not in page.split("<main", 1)[1]
    db.session.refresh(user)
    secret = user.totp_secret
    assert re.sub(r"\s", "", re.search(r'id="totp-secret">([^<]+)<', page).group(1)) == secret
    assert not _signed_in_at_counter(client)

    response = post_form(client, "/account/two-factor/set-up", {"code": "123456"})
    assert response.status_code == 422
    response = post_form(client, "/account/two-factor/set-up",
                         {"code": pyotp.TOTP(secret).now()})
    assert response.status_code == 200
    codes = re.findall(r"<code>([a-z2-9]{5}-[a-z2-9]{5})</code>", response.get_data(as_text=True))
    assert len(codes) == 10
    assert _signed_in_at_counter(client)
    db.session.refresh(user)
    assert twofactor.is_enrolled(user)
    # Only hashes are kept.
    stored = " ".join(user.recovery_code_hashes)
    assert all(c not in stored and c.replace("-", "") not in stored for c in codes)
    assert db.session.scalar(select(AuditRecord).where(
        AuditRecord.action == "user.two_factor_enrolled")) is not None


def test_a_recovery_code_signs_in_once(client):
    user = factories.enrol_two_factor(factories.make_user("staff"))
    codes = twofactor.regenerate_recovery_codes(user)
    _password_step(client, user)
    response = post_form(client, "/account/two-factor", {"code": codes[0].upper().replace("-", " ")})
    assert response.status_code == 303
    assert _signed_in_at_counter(client)
    AuthActions(client).sign_out()
    _password_step(client, user)
    assert post_form(client, "/account/two-factor", {"code": codes[0]}).status_code == 422
    db.session.refresh(user)
    assert len(user.recovery_code_hashes) == 9


def test_new_recovery_codes_replace_the_old_ones(client, auth):
    user = auth.sign_in_as("staff")
    old = twofactor.regenerate_recovery_codes(user)
    page = client.get("/account/two-factor/recovery-codes").get_data(as_text=True)
    assert "<strong>10</strong> unused recovery codes" in page
    response = post_form(client, "/account/two-factor/recovery-codes", {})
    new = re.findall(r"<code>([a-z2-9]{5}-[a-z2-9]{5})</code>", response.get_data(as_text=True))
    assert len(new) == 10 and not set(new) & set(old)
    db.session.refresh(user)
    with pytest.raises(twofactor.TwoFactorError):
        twofactor.verify(user, old[0], now=datetime.now(timezone.utc))
    assert twofactor.verify(user, new[0], now=datetime.now(timezone.utc)) == "recovery"


def test_an_expired_staff_password_must_be_renewed_at_sign_in(client):
    user = factories.enrol_two_factor(factories.make_user("staff"))
    user.password_changed_at = datetime.now(timezone.utc) - timedelta(days=91)
    db.session.commit()
    _password_step(client, user)
    response = post_form(client, "/account/two-factor", {"code": factories.two_factor_code(user)})
    assert response.headers["Location"].endswith("/account/two-factor/new-password")
    assert not _signed_in_at_counter(client)
    same = post_form(client, "/account/two-factor/new-password",
                     {"password": factories.PASSWORD, "confirm_password": factories.PASSWORD})
    assert same.status_code == 422 and "not the one you have now" in same.get_data(as_text=True)
    weak = post_form(client, "/account/two-factor/new-password",
                     {"password": "password", "confirm_password": "password"})
    assert weak.status_code == 422
    new_password = "Fresh-staff-passphrase-2031"
    response = post_form(client, "/account/two-factor/new-password",
                         {"password": new_password, "confirm_password": new_password})
    assert response.status_code == 303
    assert _signed_in_at_counter(client)
    db.session.refresh(user)
    assert datetime.now(timezone.utc) - user.password_changed_at < timedelta(minutes=1)


def test_a_staff_password_that_expires_during_a_session_must_be_changed(client, auth):
    user = auth.sign_in_as("staff")
    assert _signed_in_at_counter(client)
    user.password_changed_at = datetime.now(timezone.utc) - timedelta(days=91)
    db.session.commit()
    response = client.get("/counter/")
    assert response.status_code == 302 and response.headers["Location"].endswith("/account/password")
    assert client.get("/account/password").status_code == 200


def test_customer_passwords_do_not_expire(client, auth):
    user = auth.sign_in_as("customer")
    user.password_changed_at = datetime.now(timezone.utc) - timedelta(days=400)
    db.session.commit()
    assert client.get("/account/profile").status_code == 200


def test_password_age_is_a_setting(make_app):
    app = make_app(STAFF_PASSWORD_MAX_AGE_DAYS=30)
    with app.app_context():
        staff = factories.make_user("staff")
        staff.password_changed_at = T0 - timedelta(days=31)
        assert twofactor.password_expired(staff, now=T0)
        staff.password_changed_at = T0 - timedelta(days=29)
        assert not twofactor.password_expired(staff, now=T0)


def test_an_admin_reset_makes_them_enrol_again_and_ends_their_sessions(app, auth):
    admin = factories.enrol_two_factor(factories.make_user("admin"))
    staff_client = app.test_client()
    staff = AuthActions(staff_client).sign_in_as("staff")
    twofactor.reset(staff, by=admin)
    assert staff_client.get("/counter/").status_code == 302
    response = AuthActions(staff_client).sign_in(staff.email)
    assert response.headers["Location"].endswith("/account/two-factor/set-up")
    assert db.session.get(User, staff.id).totp_enabled_at is None

"""Customer accounts through the browser's eyes: sign up, sign in and out, profile, password.

Every request goes through the Flask test client with the CSRF token the page carries
(`post_form`), as a browser would send it.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from html import unescape
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from app.demo import DEMO_PASSWORD, DEMO_PEOPLE
from app.extensions import db
from app.models import Car, CustomerProfile, User
from tests import factories
from tests.conftest import AuthActions, csrf_token, post_form

SIGN_UP_URL = "/account/sign-up"
SIGN_IN_URL = "/account/sign-in"
PROFILE_URL = "/account/profile"
PASSWORD_URL = "/account/password"
NEW_PASSWORD = "violet-Lantern-harbour-73"
HTMX = {"HX-Request": "true"}


# --- helpers ----------------------------------------------------------------------------

def local_today(app) -> date:
    return datetime.now(ZoneInfo(app.config["DEFAULT_TIMEZONE"])).date()


def years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February in a year without one
        return day.replace(year=day.year - years, day=28)


def licence_for(surname5: str, born: date, initials: str = "J9", check: str = "AB",
                female: bool = False) -> str:
    """A DVLA-shaped licence number for this surname part and date of birth."""
    month = born.month + (50 if female else 0)  # DVLA adds 50 to a woman's birth month
    return (f"{surname5}{born.year % 100 // 10}{month:02d}{born.day:02d}{born.year % 10}"
            f"{initials}9{check}")


def sign_up_data(app, **overrides) -> dict:
    today = local_today(app)
    born = date(1990, 7, 15)
    data = {
        "full_name": "Jane Customer", "email": "jane@example.com",
        "date_of_birth": born.isoformat(), "phone": "07911 123456",
        "address_line1": "1 High Street", "address_line2": "", "town": "London",
        "postcode": "sw1a1aa", "licence_number": licence_for("CUSTO", born),
        "licence_expires_on": (today + timedelta(days=5 * 365)).isoformat(),
        "password": factories.PASSWORD, "confirm_password": factories.PASSWORD,
    }
    data.update(overrides)
    return data


def profile_data(app, **overrides) -> dict:
    data = sign_up_data(app, **overrides)
    for name in ("email", "password", "confirm_password"):
        data.pop(name)
    return data


def field_errors(html: str, field: str) -> list[str]:
    """The messages shown in the field's own error element (id `<field>-error`)."""
    pattern = rf'<div[^>]*\bid="{re.escape(field)}-error"[^>]*>(.*?)</div>'
    return [unescape(message).strip() for block in re.findall(pattern, html, re.S)
            for message in re.findall(r'<p class="error">(.*?)</p>', block, re.S)]


def form_errors(html: str) -> list[str]:
    return [unescape(m).strip()
            for m in re.findall(r'<p class="error form-error"[^>]*>(.*?)</p>', html, re.S)]


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def user_by_email(email: str) -> User | None:
    return db.session.scalar(select(User).where(User.email == email))


def signed_in_as(app, user: User, password: str = factories.PASSWORD):
    client = app.test_client()
    response = AuthActions(client).sign_in(user.email, password)
    assert response.status_code == 303, response.get_data(as_text=True)
    return client


def is_signed_in(client) -> bool:
    return client.get(PASSWORD_URL).status_code == 200


def stays_on_this_site(location: str) -> bool:
    # Browsers drop tabs and newlines from URLs and read "\" as "/" before resolving them.
    cleaned = re.sub(r"[\t\n\r]", "", location).replace("\\", "/")
    parts = urlsplit(cleaned)
    return parts.netloc in ("", "localhost") and parts.scheme in ("", "http")


# --- sign up ----------------------------------------------------------------------------

def test_sign_up_creates_a_signed_in_customer(app, client):
    response = post_form(client, SIGN_UP_URL, sign_up_data(app, email="Jane@Example.com"))
    assert response.status_code == 303
    assert response.headers["Location"] == PROFILE_URL
    page = client.get(PROFILE_URL).get_data(as_text=True)
    assert "Welcome, Jane Customer" in page
    user = user_by_email("jane@example.com")
    assert user.role == "customer"
    assert user.profile.postcode == "SW1A 1AA"
    assert user.profile.phone == "+447911123456"
    assert user.profile.licence_status == "unchecked"
    assert user.password_hash.startswith("$argon2")


# (case id, overrides as a function of today, field showing the message, message)
BAD_SIGN_UPS = [
    ("name-empty", lambda t: {"full_name": ""}, "full_name", "This field is required."),
    ("name-blank", lambda t: {"full_name": "   "}, "full_name", "This field is required."),
    ("name-too-long", lambda t: {"full_name": "J" * 112 + " Customer"}, "full_name",
     "between 2 and 120 characters"),
    ("name-control-chars", lambda t: {"full_name": "Jane\x07 Customer"}, "full_name",
     "Remove the control characters."),
    ("name-nul", lambda t: {"full_name": "Jane\x00 Customer"}, "full_name",
     "Remove the control characters."),
    ("email-empty", lambda t: {"email": ""}, "email", "This field is required."),
    ("email-bad", lambda t: {"email": "jane@"}, "email", "Enter an email address like"),
    ("email-no-at", lambda t: {"email": "jane.example.com"}, "email", "Enter an email address like"),
    ("email-nul", lambda t: {"email": "ja\x00ne@example.com"}, "email", "Remove the control characters."),
    ("email-too-long", lambda t: {"email": "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "."
                                  + "d" * 63 + ".com"}, "email", "longer than 254"),
    ("dob-missing", lambda t: {"date_of_birth": ""}, "date_of_birth", "Enter your date of birth."),
    ("dob-not-a-date", lambda t: {"date_of_birth": "15/07/1990"}, "date_of_birth",
     "Not a valid date"),
    ("dob-17-today", lambda t: {"date_of_birth": years_before(t, 17).isoformat(),
                                "licence_number": licence_for("CUSTO", years_before(t, 17))},
     "date_of_birth", "You must be at least 18 to hire a car."),
    ("dob-18-tomorrow", lambda t: {
        "date_of_birth": (years_before(t, 18) + timedelta(days=1)).isoformat(),
        "licence_number": licence_for("CUSTO", years_before(t, 18) + timedelta(days=1))},
     "date_of_birth", "You must be at least 18 to hire a car."),
    ("dob-future", lambda t: {"date_of_birth": (t + timedelta(days=1)).isoformat()},
     "date_of_birth", "Your date of birth cannot be in the future."),
    ("dob-absurd", lambda t: {"date_of_birth": "1850-07-15"}, "date_of_birth",
     "Check your date of birth."),
    ("phone-bad", lambda t: {"phone": "12345"}, "phone", "Enter a valid phone number"),
    ("phone-letters", lambda t: {"phone": "call me maybe"}, "phone", "Enter a valid phone number"),
    ("phone-too-long", lambda t: {"phone": "0" * 21}, "phone", "longer than 20"),
    ("postcode-bad", lambda t: {"postcode": "ZZZ"}, "postcode", "Enter a UK postcode"),
    ("postcode-us-zip", lambda t: {"postcode": "90210"}, "postcode", "Enter a UK postcode"),
    ("postcode-too-long", lambda t: {"postcode": "SW1A 1AA SW1A"}, "postcode", "longer than 10"),
    ("licence-empty", lambda t: {"licence_number": ""}, "licence_number", "This field is required."),
    ("licence-short", lambda t: {"licence_number": "CUSTO907150J99A"}, "licence_number",
     "has 16 characters"),
    ("licence-long", lambda t: {"licence_number": "CUSTO907150J99ABC"}, "licence_number",
     "has 16 characters"),
    ("licence-pattern", lambda t: {"licence_number": "CUSTO9X7150J99AB"}, "licence_number",
     "not a valid UK driving licence number"),
    ("licence-month-13", lambda t: {"licence_number": "CUSTO913150J99AB"}, "licence_number",
     "not a valid UK driving licence number"),
    ("licence-surname", lambda t: {"full_name": "Jane Smith"}, "licence_number",
     "does not match the surname"),
    ("licence-dob", lambda t: {"date_of_birth": "1990-07-16"}, "licence_number",
     "does not match your date of birth"),
    ("licence-expired", lambda t: {"licence_expires_on": (t - timedelta(days=1)).isoformat()},
     "licence_expires_on", "Your licence has expired"),
    ("licence-expiry-missing", lambda t: {"licence_expires_on": ""}, "licence_expires_on",
     "section 4b"),
    ("password-short", lambda t: {"password": "Vx9!kq2#Lm", "confirm_password": "Vx9!kq2#Lm"},
     "password", "Use at least 12 characters."),
    ("password-common", lambda t: {"password": "password1234", "confirm_password": "password1234"},
     "password", "That password is too easy to guess."),
    ("password-repeated", lambda t: {"password": "a" * 12, "confirm_password": "a" * 12},
     "password", "That password is too easy to guess."),
    ("password-is-email", lambda t: {"password": "jane@example.com",
                                     "confirm_password": "jane@example.com"},
     "password", "That password is too easy to guess."),
    ("password-mismatch", lambda t: {"confirm_password": factories.PASSWORD + "x"},
     "confirm_password", "The passwords do not match."),
    ("address1-empty", lambda t: {"address_line1": ""}, "address_line1", "This field is required."),
    ("address1-too-long", lambda t: {"address_line1": "A" * 101}, "address_line1",
     "longer than 100"),
    ("address1-control", lambda t: {"address_line1": "1 High\x1b Street"}, "address_line1",
     "Remove the control characters."),
    ("address2-too-long", lambda t: {"address_line2": "A" * 101}, "address_line2",
     "longer than 100"),
    ("address2-control", lambda t: {"address_line2": "Flat\x00 2"}, "address_line2",
     "Remove the control characters."),
    ("town-empty", lambda t: {"town": ""}, "town", "This field is required."),
    ("town-too-long", lambda t: {"town": "T" * 61}, "town", "longer than 60"),
]


@pytest.mark.parametrize("overrides, field, message",
                         [pytest.param(*case[1:], id=case[0]) for case in BAD_SIGN_UPS])
def test_sign_up_bad_input_is_shown_beside_its_field_and_saves_nothing(
        app, client, overrides, field, message):
    response = post_form(client, SIGN_UP_URL, sign_up_data(app, **overrides(local_today(app))))
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    errors = field_errors(html, field)
    assert any(message in e for e in errors), (field, errors)
    assert f'aria-describedby="{field}-error"' in html
    assert count(User) == 0 and count(CustomerProfile) == 0
    assert not is_signed_in(client)


def test_sign_up_exactly_the_legal_age_today_is_accepted(app, client):
    born = years_before(local_today(app), app.config["LEGAL_DRIVING_AGE"])
    response = post_form(client, SIGN_UP_URL, sign_up_data(
        app, date_of_birth=born.isoformat(), licence_number=licence_for("CUSTO", born)))
    assert response.status_code == 303, field_errors(response.get_data(as_text=True), "date_of_birth")
    assert count(User) == 1


def test_sign_up_licence_for_a_woman_and_a_mac_surname(app, client):
    born = date(1985, 11, 3)
    number = licence_for("MCDON", born, initials="AB", female=True)
    response = post_form(client, SIGN_UP_URL, sign_up_data(
        app, full_name="Ann MacDonald", date_of_birth=born.isoformat(),
        licence_number=number.lower()[:8] + " " + number[8:]))
    assert response.status_code == 303, response.get_data(as_text=True)
    assert user_by_email("jane@example.com").profile.licence_number == number


def test_sign_up_shows_every_message_at_once(app, client):
    today = local_today(app)
    response = post_form(client, SIGN_UP_URL, sign_up_data(
        app, email="not-an-email", phone="12", postcode="nope",
        date_of_birth=(today + timedelta(days=3)).isoformat(),
        licence_expires_on=(today - timedelta(days=3)).isoformat(),
        password="short", confirm_password="other"))
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    for field in ("email", "phone", "postcode", "date_of_birth", "licence_expires_on",
                  "password", "confirm_password"):
        assert field_errors(html, field), field
    # What was right stays filled in; the password is never sent back.
    assert 'value="Jane Customer"' in html and 'value="short"' not in html
    assert count(User) == 0


def test_sign_up_duplicate_email_in_other_letter_case_is_refused(app, client):
    factories.make_user(email="jane@example.com")
    before = count(User)
    response = post_form(client, SIGN_UP_URL, sign_up_data(app, email="JANE@Example.COM"))
    assert response.status_code == 422
    assert any("already exists" in e for e in field_errors(response.get_data(as_text=True), "email"))
    assert count(User) == before and count(CustomerProfile) == before
    assert not is_signed_in(client)


def test_script_in_a_name_is_shown_escaped(app, client):
    name = "<script>alert(1)</script> Jane Customer"
    response = post_form(client, SIGN_UP_URL, sign_up_data(app, full_name=name))
    assert response.status_code == 303, response.get_data(as_text=True)
    assert user_by_email("jane@example.com").full_name == name
    html = client.get(PROFILE_URL).get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Jane Customer" in html


def test_signed_in_user_visiting_sign_up_or_sign_in_goes_home(app, client, auth):
    auth.sign_in_as("customer")
    assert client.get(SIGN_UP_URL).headers["Location"] == PROFILE_URL
    assert client.get(SIGN_IN_URL).headers["Location"] == PROFILE_URL


# --- CSRF ---------------------------------------------------------------------------------

def test_sign_up_without_csrf_token_is_refused(app, client):
    client.get(SIGN_UP_URL)  # a session exists, but the form lacks its token
    response = client.post(SIGN_UP_URL, data=sign_up_data(app))
    assert response.status_code == 400
    assert "Your form expired" in response.get_data(as_text=True)
    assert count(User) == 0


def test_sign_up_with_a_forged_csrf_token_is_refused(app, client):
    client.get(SIGN_UP_URL)
    response = client.post(SIGN_UP_URL, data={**sign_up_data(app), "csrf_token": "forged"})
    assert response.status_code == 400
    assert count(User) == 0


def test_sign_in_without_csrf_token_is_refused(app, client):
    user = factories.make_user()
    client.get(SIGN_IN_URL)
    response = client.post(SIGN_IN_URL, data={"email": user.email, "password": factories.PASSWORD})
    assert response.status_code == 400
    assert not is_signed_in(client)


def test_profile_post_without_csrf_token_is_refused(app):
    user = factories.make_user()
    client = signed_in_as(app, user)
    response = client.post(PROFILE_URL, data=profile_data(app, town="Leeds"))
    assert response.status_code == 400
    db.session.refresh(user.profile)
    assert user.profile.town == "London"


def test_password_change_without_csrf_token_is_refused(app):
    user = factories.make_user()
    client = signed_in_as(app, user)
    response = client.post(PASSWORD_URL, data={
        "current_password": factories.PASSWORD, "password": NEW_PASSWORD,
        "confirm_password": NEW_PASSWORD})
    assert response.status_code == 400
    assert is_signed_in(client)
    assert signed_in_as(app, user, factories.PASSWORD)  # the old password still works


def test_htmx_post_without_csrf_header_is_refused_with_a_fragment(app, client):
    client.get(SIGN_UP_URL)
    response = client.post(SIGN_UP_URL, data=sign_up_data(app), headers=HTMX)
    assert response.status_code == 400
    assert "<html" not in response.get_data(as_text=True)
    assert count(User) == 0


def test_htmx_post_with_csrf_header_signs_up(app, client):
    token = csrf_token(client, SIGN_UP_URL)  # the one <body hx-headers> carries
    response = client.post(SIGN_UP_URL, data=sign_up_data(app),
                           headers={**HTMX, "X-CSRFToken": token})
    assert response.status_code == 204
    assert response.headers["HX-Redirect"] == PROFILE_URL
    assert count(User) == 1
    assert client.get(PROFILE_URL).status_code == 200


# --- htmx branch -------------------------------------------------------------------------

def test_htmx_sign_up_error_returns_only_the_form(app, client):
    response = post_form(client, SIGN_UP_URL, sign_up_data(app, postcode="nope"), headers=HTMX)
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "<html" not in html and "<body" not in html
    assert html.lstrip().startswith("<form") and 'id="sign-up-form"' in html
    assert field_errors(html, "postcode") == ["Enter a UK postcode, like SW1A 1AA."]
    assert "HX-Request" in response.headers["Vary"]
    assert count(User) == 0


def test_full_page_error_is_a_whole_page(app, client):
    response = post_form(client, SIGN_UP_URL, sign_up_data(app, postcode="nope"))
    assert response.status_code == 422
    assert "<html" in response.get_data(as_text=True)


def test_htmx_sign_in_success_redirects_with_hx_redirect(app, client):
    user = factories.make_user()
    response = post_form(client, SIGN_IN_URL, {"email": user.email, "password": factories.PASSWORD},
                         headers=HTMX)
    assert response.status_code == 204
    assert response.headers["HX-Redirect"] == PROFILE_URL
    assert is_signed_in(client)


def test_htmx_profile_error_and_success(app):
    user = factories.make_user()
    client = signed_in_as(app, user)
    bad = post_form(client, PROFILE_URL, profile_data(app, phone="12"), headers=HTMX)
    assert bad.status_code == 422 and "<html" not in bad.get_data(as_text=True)
    assert field_errors(bad.get_data(as_text=True), "phone")
    good = post_form(client, PROFILE_URL, profile_data(app, town="Leeds"), headers=HTMX)
    assert good.status_code == 204 and good.headers["HX-Redirect"] == PROFILE_URL


# --- sign in and out --------------------------------------------------------------------------

def test_sign_in_and_out(app, client, auth):
    user = factories.make_user(email="jane@example.com")
    response = auth.sign_in("  JANE@example.com ")
    assert response.status_code == 303 and response.headers["Location"] == PROFILE_URL
    assert client.get(PROFILE_URL).status_code == 200
    db.session.refresh(user)
    assert user.last_sign_in_at is not None
    response = auth.sign_out()
    assert response.status_code == 303 and response.headers["Location"] == "/"
    response = client.get(PROFILE_URL)
    assert response.status_code == 302 and SIGN_IN_URL in response.headers["Location"]


def test_staff_sign_in_lands_on_the_counter_after_the_second_factor(app, client, auth):
    user = factories.enrol_two_factor(factories.make_user("staff"))
    response = auth.sign_in(user.email)
    assert response.status_code == 303 and response.headers["Location"] != "/counter/"
    assert client.get("/counter/").status_code != 200  # the password alone is not enough
    response = auth.give_two_factor_code(user)
    assert response.status_code == 303 and response.headers["Location"] == "/counter/"


def _sign_in_failure(client, email, password):
    response = post_form(client, SIGN_IN_URL, {"email": email, "password": password})
    return response.status_code, form_errors(response.get_data(as_text=True))


def test_sign_in_does_not_tell_which_emails_exist(app, client):
    factories.make_user(email="jane@example.com")
    factories.make_user(email="gone@example.com", active=False)
    wrong_password = _sign_in_failure(client, "jane@example.com", "not-the-password-1")
    unknown_email = _sign_in_failure(client, "nobody@example.com", "not-the-password-1")
    inactive = _sign_in_failure(client, "gone@example.com", factories.PASSWORD)
    assert wrong_password == unknown_email == inactive
    status, messages = wrong_password
    assert status == 422 and messages == ["That email and password do not match an active account."]
    assert not is_signed_in(client)


def test_sign_in_with_strange_email_gets_the_ordinary_refusal(app, client):
    factories.make_user(email="jane@example.com")
    status, messages = _sign_in_failure(client, "a" * 254, factories.PASSWORD)
    assert status == 422 and messages == ["That email and password do not match an active account."]


@pytest.mark.parametrize("email", ["jane\x00@example.com", "\x00"])
def test_sign_in_with_a_nul_in_the_email_says_so_beside_it(app, client, email):
    """Every form's text fields refuse control characters alike (app/form_fields.Form)."""
    factories.make_user(email="jane@example.com")
    response = post_form(client, SIGN_IN_URL, {"email": email, "password": factories.PASSWORD})
    assert response.status_code == 422
    assert field_errors(response.get_data(as_text=True), "email") == ["Remove the control characters."]
    assert not is_signed_in(client)


def test_sign_in_is_rate_limited(app, client):
    user = factories.make_user()
    limit = int(app.config["SIGNIN_RATE_LIMIT"].split()[0])
    for _ in range(limit):
        status, _messages = _sign_in_failure(client, user.email, "not-the-password-1")
        assert status == 422
    response = post_form(client, SIGN_IN_URL, {"email": user.email, "password": factories.PASSWORD})
    assert response.status_code == 429
    assert "Too many attempts" in response.get_data(as_text=True)
    assert not is_signed_in(client)
    assert client.get(SIGN_IN_URL).status_code == 200  # only attempts are limited, not the page


def test_sign_in_is_limited_per_account_across_addresses(app, client):
    """Guessing one person's password from many addresses is stopped too."""
    app.config["SIGNIN_ACCOUNT_RATE_LIMIT"] = "3 per hour"
    user, other = factories.make_user(), factories.make_user()
    for n in range(3):
        response = post_form(client, SIGN_IN_URL, {"email": user.email.upper(), "password": "not-the-password-1"},
                             environ_base={"REMOTE_ADDR": f"203.0.113.{n + 1}"})
        assert response.status_code == 422
    response = post_form(client, SIGN_IN_URL, {"email": f" {user.email} ", "password": factories.PASSWORD},
                         environ_base={"REMOTE_ADDR": "203.0.113.99"})
    assert response.status_code == 429 and not is_signed_in(client)
    # Another account from the same address is not affected.
    response = post_form(client, SIGN_IN_URL, {"email": other.email, "password": factories.PASSWORD},
                         environ_base={"REMOTE_ADDR": "203.0.113.99"})
    assert response.status_code == 303 and is_signed_in(client)


@pytest.mark.parametrize("target", ["/account/password", "/book/?from=2030-01-01"])
def test_sign_in_follows_a_local_next(app, client, target):
    user = factories.make_user()
    url = f"{SIGN_IN_URL}?next={quote(target, safe='')}"
    response = post_form(client, url, {"email": user.email, "password": factories.PASSWORD})
    assert response.status_code == 303 and response.headers["Location"] == target


def test_protected_page_sends_you_back_after_sign_in(app, client):
    user = factories.make_user()
    login = client.get(PASSWORD_URL).headers["Location"]
    assert login.startswith(SIGN_IN_URL) and "next=" in login
    response = post_form(client, login, {"email": user.email, "password": factories.PASSWORD})
    assert response.headers["Location"] == PASSWORD_URL


OPEN_REDIRECTS = ["//evil.example", "https://evil.example", "http://evil.example/account/",
                  "/\\evil.example", "\\\\evil.example", "/\t/evil.example", "/\n/evil.example",
                  "/\r\n/evil.example", " //evil.example", "javascript:alert(1)",
                  "https:evil.example"]


@pytest.mark.parametrize("target", OPEN_REDIRECTS)
@pytest.mark.parametrize("htmx", [False, True], ids=["browser", "htmx"])
def test_sign_in_ignores_an_open_redirect(app, client, target, htmx):
    user = factories.make_user()
    url = f"{SIGN_IN_URL}?next={quote(target, safe='')}"
    response = post_form(client, url, {"email": user.email, "password": factories.PASSWORD},
                         headers=HTMX if htmx else {})
    location = response.headers["HX-Redirect" if htmx else "Location"]
    assert stays_on_this_site(location), location
    assert location == PROFILE_URL


# --- profile ------------------------------------------------------------------------------

def test_profile_shows_the_customer_details(app):
    user = factories.make_user(full_name="Jane Customer")
    html = signed_in_as(app, user).get(PROFILE_URL).get_data(as_text=True)
    assert 'value="Jane Customer"' in html and 'value="SW1A 1AA"' in html
    assert 'value="CUSTO907150J99AB"' in html and 'value="1990-07-15"' in html


def test_profile_edit_saves_and_a_new_licence_must_be_checked_again(app):
    user = factories.make_user(licence_status="verified")
    client = signed_in_as(app, user)
    expires = user.profile.licence_expires_on.isoformat()

    response = post_form(client, PROFILE_URL, profile_data(
        app, town="Leeds", postcode="ls1 4ap", licence_expires_on=expires,
        licence_number="CUSTO907150J99AB"))
    assert response.status_code == 303 and response.headers["Location"] == PROFILE_URL
    db.session.refresh(user.profile)
    assert (user.profile.town, user.profile.postcode) == ("Leeds", "LS1 4AP")
    assert user.profile.licence_status == "verified"  # same licence: still checked

    response = post_form(client, PROFILE_URL, profile_data(
        app, licence_number="CUSTO907150J99CD", licence_expires_on=expires))
    assert response.status_code == 303
    db.session.refresh(user.profile)
    assert user.profile.licence_number == "CUSTO907150J99CD"
    assert user.profile.licence_status == "unchecked"
    assert "Your details are saved." in client.get(PROFILE_URL).get_data(as_text=True)


def test_profile_new_expiry_date_must_be_checked_again(app):
    user = factories.make_user(licence_status="verified")
    client = signed_in_as(app, user)
    new_expiry = (local_today(app) + timedelta(days=3000)).isoformat()
    response = post_form(client, PROFILE_URL, profile_data(app, licence_expires_on=new_expiry))
    assert response.status_code == 303
    db.session.refresh(user.profile)
    assert user.profile.licence_status == "unchecked"


@pytest.mark.parametrize("overrides, field, message", [
    ({"full_name": "Jane Smith"}, "licence_number", "does not match the surname"),
    ({"date_of_birth": "2999-01-01"}, "date_of_birth", "cannot be in the future"),
    ({"postcode": "nope"}, "postcode", "Enter a UK postcode"),
    ({"town": "T" * 61}, "town", "longer than 60"),
    ({"full_name": "Jane\x00 Customer"}, "full_name", "Remove the control characters."),
])
def test_profile_bad_input_changes_nothing(app, overrides, field, message):
    user = factories.make_user(licence_status="verified")
    client = signed_in_as(app, user)
    response = post_form(client, PROFILE_URL, profile_data(
        app, licence_expires_on=user.profile.licence_expires_on.isoformat(), **overrides))
    assert response.status_code == 422
    assert any(message in e for e in field_errors(response.get_data(as_text=True), field))
    db.session.refresh(user)
    db.session.refresh(user.profile)
    assert user.full_name == "Jane Customer" and user.profile.town == "London"
    assert user.profile.licence_status == "verified"


def test_staff_have_no_customer_profile_page(app, client, auth):
    auth.sign_in_as("staff")
    assert client.get(PROFILE_URL).status_code == 403


# --- password change -------------------------------------------------------------------

def _change_password(client, current, new, confirm=None, **kwargs):
    return post_form(client, PASSWORD_URL, {
        "current_password": current, "password": new,
        "confirm_password": new if confirm is None else confirm}, **kwargs)


def test_change_password_refuses_a_wrong_current_password(app):
    user = factories.make_user()
    client = signed_in_as(app, user)
    response = _change_password(client, "not-the-password-1", NEW_PASSWORD)
    assert response.status_code == 422
    assert field_errors(response.get_data(as_text=True), "current_password") == [
        "That is not your current password."]
    assert signed_in_as(app, user, factories.PASSWORD)


@pytest.mark.parametrize("new, confirm, field, message", [
    ("password1234", None, "password", "too easy to guess"),
    ("Vx9!kq2#Lm", None, "password", "at least 12 characters"),
    (NEW_PASSWORD, NEW_PASSWORD + "x", "confirm_password", "do not match"),
])
def test_change_password_refuses_a_weak_or_mistyped_password(app, new, confirm, field, message):
    user = factories.make_user()
    client = signed_in_as(app, user)
    response = _change_password(client, factories.PASSWORD, new, confirm)
    assert response.status_code == 422
    assert any(message in e for e in field_errors(response.get_data(as_text=True), field))
    assert signed_in_as(app, user, factories.PASSWORD)


@pytest.mark.parametrize("new", ["jane.customer@example.com", "Jane Customer 1990"])
def test_change_password_refuses_a_password_made_of_your_email_or_name(app, new):
    # Refused at sign-up, so it must be refused when changing the password too.
    user = factories.make_user(email="jane.customer@example.com", full_name="Jane Customer")
    client = signed_in_as(app, user)
    response = _change_password(client, factories.PASSWORD, new)
    assert response.status_code == 422
    assert any("too easy to guess" in e
               for e in field_errors(response.get_data(as_text=True), "password"))
    assert signed_in_as(app, user, factories.PASSWORD)


def test_change_password_ends_other_sessions_and_the_new_one_works(app):
    user = factories.make_user()
    this_device = signed_in_as(app, user)
    other_device = signed_in_as(app, user)
    response = _change_password(this_device, factories.PASSWORD, NEW_PASSWORD)
    assert response.status_code == 303, response.get_data(as_text=True)
    assert response.headers["Location"] == PROFILE_URL
    assert "Other devices have been signed out" in this_device.get(PROFILE_URL).get_data(as_text=True)
    assert is_signed_in(this_device)
    assert not is_signed_in(other_device)
    assert _sign_in_failure(app.test_client(), user.email, factories.PASSWORD)[0] == 422
    assert signed_in_as(app, user, NEW_PASSWORD)


def test_staff_change_password_keeps_them_signed_in_at_the_counter(app, client, auth):
    user = auth.sign_in_as("staff")
    response = _change_password(client, factories.PASSWORD, NEW_PASSWORD)
    assert response.status_code == 303 and response.headers["Location"] == "/counter/"
    assert client.get("/counter/").status_code == 200
    db.session.refresh(user)
    assert user.password_hash != factories._hash()


def test_change_password_through_htmx(app):
    user = factories.make_user()
    client = signed_in_as(app, user)
    response = _change_password(client, factories.PASSWORD, NEW_PASSWORD, headers=HTMX)
    assert response.status_code == 204 and response.headers["HX-Redirect"] == PROFILE_URL
    assert is_signed_in(client)


def test_remember_me_cookie_dies_with_a_password_change(app):
    user = factories.make_user()
    remembered = app.test_client()
    response = post_form(remembered, SIGN_IN_URL, {
        "email": user.email, "password": factories.PASSWORD, "remember": "y"})
    assert response.status_code == 303
    assert remembered.get_cookie("remember_token") is not None
    remembered.delete_cookie("session")  # the browser was closed; only "remember me" is left
    assert is_signed_in(remembered)
    _change_password(signed_in_as(app, user), factories.PASSWORD, NEW_PASSWORD)
    remembered.delete_cookie("session")
    assert not is_signed_in(remembered)


# --- CLI ----------------------------------------------------------------------------------

def test_create_admin_makes_an_admin_who_can_sign_in(app, runner):
    result = runner.invoke(args=["acme", "create-admin", "--email", "Boss@Example.com",
                                 "--name", "Alex Boss", "--password", NEW_PASSWORD])
    assert result.exit_code == 0, result.output
    admin = user_by_email("boss@example.com")
    assert admin.role == "admin" and admin.active
    factories.enrol_two_factor(admin)  # admins give a second factor too
    client = app.test_client()
    auth = AuthActions(client)
    assert auth.sign_in("boss@example.com", NEW_PASSWORD).status_code == 303
    response = auth.give_two_factor_code(admin)
    assert response.status_code == 303 and response.headers["Location"] == "/counter/"
    assert client.get("/admin/").status_code == 200


@pytest.mark.parametrize("password", ["password1234", "short-1A", "alexboss@example.com"])
def test_create_admin_refuses_a_weak_password(app, runner, password):
    result = runner.invoke(args=["acme", "create-admin", "--email", "alexboss@example.com",
                                 "--name", "Alex Boss", "--password", password])
    assert result.exit_code != 0
    assert "password" in result.output.lower()
    assert count(User) == 0


def test_demo_is_idempotent(app, runner):
    for _ in range(2):
        result = runner.invoke(args=["acme", "demo"])
        assert result.exit_code == 0, result.output
        db.session.expire_all()
        assert count(Car) == 20
        emails = db.session.scalars(select(User.email).where(User.email.like("%@demo.acme"))).all()
        assert sorted(emails) == sorted(p["email"] for p in DEMO_PEOPLE)
    for person in DEMO_PEOPLE:
        assert person["email"] in result.output
    assert DEMO_PASSWORD in result.output
    client = app.test_client()
    assert AuthActions(client).sign_in("customer@demo.acme", DEMO_PASSWORD).status_code == 303
    assert client.get(PROFILE_URL).status_code == 200

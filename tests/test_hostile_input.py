"""Hostile input is a 4xx with a message, never a 500 (issue 15 §1), on SQLite and PostgreSQL:
numbers beyond a database column in addresses, query strings and form fields; the audit log's
dates at the calendar's ends; NUL bytes in free text; `next`/`return_to` that leave the site.
"""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import quote, urlsplit

import pytest
from flask_wtf import FlaskForm
from sqlalchemy import func, select

from app.extensions import db
from app.form_fields import Form
from app.models import Hire, OneWayFee, User, utcnow
from app.security import allow
from app.web import safe_path
from tests import factories
from tests.conftest import AuthActions, csrf_token, post_form
from tests.test_access import ADMIN, ANON, CUSTOMER, EXPECTED, STAFF

# Just beyond PostgreSQL's INTEGER, beyond 32 bits, and beyond SQLite's 64-bit INTEGER.
HUGE = [2**31, 9_999_999_999, 10**25]
NOT_FOUND = "We could not find that page."
CHOOSE = "Choose one of the options."
CONTROL = "Remove the control characters."


def signed_in(app, role: str):
    client = app.test_client()
    if role != ANON:
        client.user = AuthActions(client).sign_in_as(role)
    return client


def page(response) -> str:
    return response.get_data(as_text=True)


# --- ids in the address --------------------------------------------------------------------

def _routes_with_an_id(app):
    """(endpoint, method, url pattern with {id}, roles let in) for every route with an <int:>."""
    adapter = app.url_map.bind("localhost")
    for endpoint, (method, url, allowed) in EXPECTED.items():
        rule = next(r for r in app.url_map.iter_rules(endpoint))
        ints = [name for name, conv in rule._converters.items() if conv.regex == r"\d+"]
        if not ints:
            continue
        _, args = adapter.match(url, method=method)
        pattern = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>",
                         lambda m: "{id}" if m.group(1) in ints else str(args[m.group(1)]),
                         rule.rule)
        yield endpoint, method, pattern, allowed - {ANON}


@pytest.mark.parametrize("role", [CUSTOMER, STAFF, ADMIN])
def test_an_id_beyond_any_column_is_a_404_on_every_route(app, role):
    """Every <int:...> of every blueprint: a huge id matches no route (the bounded converter),
    so each role let in gets the not-found page, not a database error."""
    client = signed_in(app, role)
    app.config["WTF_CSRF_ENABLED"] = False  # the id is what is being tested, not the token
    failures, tried = [], 0
    for endpoint, method, pattern, allowed in _routes_with_an_id(app):
        if role not in allowed:
            continue
        for n in HUGE:
            url = pattern.format(id=n)
            response = client.open(url, method=method)
            tried += 1
            if response.status_code != 404 or NOT_FOUND not in page(response):
                failures.append(f"{method} {url}: {response.status_code}")
    assert tried and failures == []


@pytest.mark.parametrize("n", HUGE)
def test_huge_ids_on_the_reported_pages_are_not_found(app, n):
    """The addresses the sweep found answering 500, with real objects around the id."""
    customer, staff, admin = (signed_in(app, r) for r in (CUSTOMER, STAFF, ADMIN))
    hire = factories.make_hire(customer=customer.user)
    app.config["WTF_CSRF_ENABLED"] = False
    for client, method, url in [
            (staff, "GET", f"/fleet/cars/{n}"), (staff, "GET", f"/fleet/cars/{n}/edit"),
            (staff, "POST", f"/fleet/maintenance/{n}/delete"),
            (staff, "POST", f"/pay/crypto/review/{n}/accept"),
            (admin, "GET", f"/admin/staff/{n}"), (admin, "POST", f"/admin/staff/{n}"),
            (admin, "POST", f"/admin/staff/{n}/deactivate"),
            (admin, "POST", f"/admin/prices/one_way_fee/{n}"),
            (customer, "GET", f"/pay/{hire.reference}/crypto/refunds/{n}")]:
        response = client.open(url, method=method)
        assert (response.status_code, NOT_FOUND in page(response)) == (404, True), (method, url)


# --- numbers in query strings and form fields ----------------------------------------------

@pytest.mark.parametrize("n", HUGE)
@pytest.mark.parametrize("role", [STAFF, ADMIN])
def test_huge_branch_or_class_in_the_counter_and_fleet_filters_is_named(app, role, n):
    client = signed_in(app, role)
    board = client.get(f"/counter/?branch={n}")
    assert board.status_code == 422 and "Branch: Choose one of the branches." in page(board)
    for query in (f"car_class={n}", f"branch={n}"):
        cars = client.get(f"/fleet/?{query}")
        assert cars.status_code == 422 and CHOOSE in page(cars), query
    for url in (f"/fleet/?page={n}", f"/admin/audit?page={n}" if role == ADMIN else None):
        if url:
            assert client.get(url).status_code == 422, url


@pytest.mark.parametrize("role", [ANON, CUSTOMER])
def test_huge_branch_in_the_booking_search_is_named(app, role):
    factories.make_branch()
    client = signed_in(app, role)
    response = client.get(f"/book/?pickup_branch={10**25}&return_branch={2**31}"
                          "&pickup_at=2030-06-01T10:00&return_at=2030-06-03T10:00")
    assert response.status_code == 422 and CHOOSE in page(response)


@pytest.mark.parametrize("n", HUGE)
def test_huge_branch_in_the_admin_forms_is_named_beside_it(app, n):
    admin = signed_in(app, ADMIN)
    member = factories.make_user("staff", email="sam@example.com")
    response = post_form(admin, f"/admin/staff/{member.id}",
                         {"full_name": "Sam Staff", "role": "staff", "branch_id": str(n)})
    assert response.status_code == 422 and CHOOSE in page(response)
    db.session.expire_all()
    assert db.session.get(User, member.id).full_name != "Sam Staff"

    london = factories.make_branch()
    response = post_form(admin, "/admin/prices/one_way_fee/new", {
        "one_way_fee-new-from_branch_id": str(n), "one_way_fee-new-to_branch_id": str(london.id),
        "one_way_fee-new-fee": "30"}, token_from="/admin/prices")
    assert response.status_code == 422 and CHOOSE in page(response)
    assert db.session.scalar(select(func.count(OneWayFee.id))) == 0


def test_a_value_the_database_cannot_take_is_a_400_not_a_500(app):
    """The safety net behind the forms: the driver's own refusal of a number beyond a column
    (PostgreSQL's DataError, SQLite's OverflowError) is a bad request with a message."""
    def look_up_huge_id():
        db.session.execute(select(User).where(User.id == 10**25)).all()
        return "answered"
    app.add_url_rule("/huge-id", look_up_huge_id.__name__, allow("public")(look_up_huge_id))
    response = app.test_client().get("/huge-id")
    assert response.status_code == 400 and "larger than anything stored here" in page(response)


# --- the audit log's dates -----------------------------------------------------------------

@pytest.mark.parametrize("url", ["/admin/audit", "/admin/audit.csv"])
@pytest.mark.parametrize("dates", [("0001-01-01", "9999-12-31"), ("9999-12-31", "9999-12-31"),
                                   ("0001-01-01", "0001-01-01")])
def test_audit_dates_at_the_calendars_ends_are_refused_beside_the_field(app, url, dates):
    admin = signed_in(app, ADMIN)
    response = admin.get(f"{url}?date_from={dates[0]}&date_to={dates[1]}")
    assert response.status_code == 422, page(response)[:300]
    if url == "/admin/audit":
        assert "Enter a date from 01/01/2000 to 31/12/2099." in page(response)


@pytest.mark.parametrize("dates", [("0001-01-01", "2030-01-01"), ("2030-01-01", "9999-12-31")])
def test_report_dates_outside_the_filter_bounds_are_named_beside_the_field(app, dates):
    """The reports use the same bounded date field as the audit log: nothing is queued."""
    admin = signed_in(app, ADMIN)
    response = admin.get(f"/admin/reports?date_from={dates[0]}&date_to={dates[1]}")
    assert response.status_code == 422
    assert "Enter a date from 01/01/2000 to 31/12/2099." in page(response)


def test_audit_dates_inside_the_bounds_still_filter(app):
    admin = signed_in(app, ADMIN)
    assert admin.get("/admin/audit?date_from=2000-01-01&date_to=2099-12-31").status_code == 200


# --- NUL and other control characters in free text ------------------------------------------

def test_every_form_gets_the_control_character_filter():
    """One filter for every text field: every form of the app derives from form_fields.Form."""
    import app.accounts.forms, app.accounts.twofactor_forms, app.admin.forms  # noqa: E401,F401
    import app.booking.forms, app.fleet.forms, app.payments.crypto_forms  # noqa: E401,F401
    import app.payments.forms, app.counter.forms  # noqa: E401,F401

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)
    ours = [c for c in subclasses(FlaskForm) if c.__module__.startswith("app.")]
    assert len(ours) > 30 and [c for c in ours if not issubclass(c, Form)] == []


def test_a_nul_in_the_booking_confirm_key_is_refused_and_books_nothing(app):
    customer = signed_in(app, CUSTOMER)
    branch = factories.make_branch()
    car = factories.make_car(branch=branch)
    start = (utcnow() + timedelta(days=10)).replace(hour=10, minute=0, second=0, microsecond=0)
    trip = {"pickup_branch": branch.id, "return_branch": branch.id,
            "pickup_at": start.strftime("%Y-%m-%dT%H:%M"),
            "return_at": (start + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")}
    response = customer.post(f"/book/cars/{car.id}/confirm", data={
        **trip, "idempotency_key": "key\x00123", "csrf_token": csrf_token(customer, "/book/")})
    assert response.status_code == 422 and CONTROL in page(response)
    assert "\x00" not in page(response)
    assert db.session.scalar(select(func.count(Hire.id))) == 0


@pytest.mark.parametrize("reason", ["Licence\x00expired", "Licence expired\x07", "\x1b[31mred"])
def test_control_characters_in_the_refusal_reason_are_named_and_nothing_changes(app, reason):
    staff = signed_in(app, STAFF)
    hire = factories.make_hire(start=utcnow() + timedelta(hours=2))
    url = f"/counter/hires/{hire.reference}/pickup/refuse"
    response = staff.post(url, data={"reason": reason, "csrf_token": csrf_token(staff, "/counter/")})
    assert response.status_code == 422 and CONTROL in page(response)
    db.session.expire_all()
    assert db.session.get(Hire, hire.id).state == "confirmed"


def test_a_text_area_may_still_hold_line_breaks_and_tabs(app):
    """The refusal reason is a text area: the one filter lets its lines and tabs through
    (test_fleet_maintenance proves the same for a note, through to the database)."""
    from werkzeug.datastructures import MultiDict

    from app.counter.forms import RefuseForm
    with app.test_request_context():
        form = RefuseForm(formdata=MultiDict({"reason": "Licence expired.\r\n\tCustomer told."}),
                          meta={"csrf": False})
        assert form.validate(), form.errors
        form = RefuseForm(formdata=MultiDict({"reason": "Licence\x0bexpired"}), meta={"csrf": False})
        assert not form.validate() and form.reason.errors == [CONTROL]


# --- next / return_to ------------------------------------------------------------------------

LEAVING = ["/\n/evil.example/x", "/\t/evil.example/x", "//evil.example", "/\\evil.example",
           "https://evil.example/", "/\r\n/evil.example", "evil.example", "/\x00/x"]


@pytest.mark.parametrize("target", LEAVING)
def test_safe_path_keeps_only_this_sites_paths(target):
    assert safe_path(target, "/home") == "/home"


@pytest.mark.parametrize("target", ["/fleet/cars/3?from=2030-06-01T10%3A00", "/", "/account/profile"])
def test_safe_path_keeps_a_path_here(target):
    assert safe_path(target, "/home") == target


def _stays_here(response, default: str) -> bool:
    """A redirect to `default` (never elsewhere), or a refusal with a message: never a 500."""
    if response.status_code == 400:
        return "Something in that request was not right." in page(response)
    location = response.headers.get("Location", "")
    return response.status_code == 303 and location == default


@pytest.mark.parametrize("target", LEAVING)
def test_moving_a_hire_never_sends_staff_off_the_site(app, target):
    """A real move to a free car, and one to a car that does not exist: both go back."""
    staff = signed_in(app, STAFF)
    hire = factories.make_hire(start=utcnow() + timedelta(days=5))
    spare = factories.make_car(car_class=hire.car.car_class, branch=hire.car.home_branch)
    for to_car_id in (spare.id, 999_999):
        response = post_form(staff, f"/fleet/hires/{hire.reference}/move",
                             {"to_car_id": str(to_car_id), "return_to": target}, token_from="/counter/")
        assert _stays_here(response, f"/fleet/hires/{hire.reference}"), (
            to_car_id, response.status_code, response.headers.get("Location"))


@pytest.mark.parametrize("target", LEAVING)
@pytest.mark.parametrize("role", [CUSTOMER, STAFF])
def test_signing_in_never_follows_next_off_the_site(app, role, target):
    """Customers are signed in at once; staff after the second factor: both use the helper."""
    client = app.test_client()
    user = factories.make_user(role)
    if role == STAFF:
        factories.enrol_two_factor(user)
    url = f"/account/sign-in?next={quote(target, safe='')}"
    response = client.post(url, data={"email": user.email, "password": factories.PASSWORD,
                                      "csrf_token": csrf_token(client, url)})
    if role == STAFF:
        assert response.status_code == 303
        response = post_form(client, "/account/two-factor", {"code": factories.two_factor_code(user)})
    home = "/counter/" if role == STAFF else "/account/profile"
    location = response.headers.get("Location", "")
    assert response.status_code == 303 and urlsplit(location).path == home, location

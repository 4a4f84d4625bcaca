"""Workflow 4, starting a new hire: search, quote, confirm (hold), my bookings, cancel,
change, emails and the scheduler. Runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import icalendar
import pytest
from sqlalchemy import event, func, select

from app.booking import availability, holds, quotes, trips
from app.booking.seed import seed_rate_tables
from app.booking.cancellation import CancelPolicy, cancellation_refund_pence
from app.booking.errors import BookingError
from app.extensions import db
from app.jobs.booking import tick
from app.models import (Hire, HireState, InvalidTransition, Occupancy, OutboundEmail, utcnow)
from tests import factories
from tests.conftest import csrf_token

LONDON = ZoneInfo("Europe/London")
FMT = "%Y-%m-%dT%H:%M"
HIDDEN_RE = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def local_day(days_ahead: int, hour: int = 10, minute: int = 0) -> datetime:
    """A wall-clock time at the branch, `days_ahead` days from today."""
    today = datetime.now(LONDON).date()
    return datetime.combine(today + timedelta(days=days_ahead), datetime.min.time()).replace(
        hour=hour, minute=minute)


def as_utc(local: datetime) -> datetime:
    return local.replace(tzinfo=LONDON).astimezone(timezone.utc)


@pytest.fixture
def shop(app):
    """Two branches, two classes, cars, and the starting rate tables."""
    lhr, man = factories.make_branch("LHR"), factories.make_branch("MAN")
    compact = factories.make_car_class("compact", daily_rate_pence=3900)
    estate = factories.make_car_class("estate", daily_rate_pence=5400)
    car = factories.make_car(car_class=compact, branch=lhr, make="Volkswagen", model="Golf")
    seed_rate_tables()
    db.session.commit()
    return SimpleNamespace(lhr=lhr, man=man, compact=compact, estate=estate, car=car)


def trip_args(shop, start: datetime, end: datetime, *, to=None) -> dict:
    return {"pickup_branch": shop.lhr.id, "return_branch": (to or shop.lhr).id,
            "pickup_at": start.strftime(FMT), "return_at": end.strftime(FMT)}


def review(client, car_id: int, args: dict):
    response = client.get(f"/book/cars/{car_id}/review", query_string=args)
    html = response.get_data(as_text=True)
    return response, dict(HIDDEN_RE.findall(html)), html


def confirm(client, car_id: int, form: dict, **kwargs):
    return client.post(f"/book/cars/{car_id}/confirm", data=form, **kwargs)


def book(client, shop, start: datetime, end: datetime, car=None, extras: dict | None = None):
    """Search -> review -> confirm, as a signed-in customer would; returns the response."""
    car = car or shop.car
    response, form, _ = review(client, car.id, {**trip_args(shop, start, end), **(extras or {})})
    assert response.status_code == 200, response.get_data(as_text=True)
    return confirm(client, car.id, form)


def hires() -> list[Hire]:
    db.session.expire_all()
    return list(db.session.scalars(select(Hire).order_by(Hire.id)))


def text_of(response) -> str:
    return re.sub(r"\s+", " ", response.get_data(as_text=True))


# --- search ---------------------------------------------------------------------------------

def test_search_shows_only_cars_free_for_the_whole_period(client, shop):
    start, end = local_day(10), local_day(13)
    busy = factories.make_car(car_class=shop.compact, branch=shop.lhr, model="Busy")
    factories.make_hire(car=busy, start=as_utc(start) + timedelta(days=1), days=1)
    serviced = factories.make_car(car_class=shop.compact, branch=shop.lhr, model="Serviced")
    factories.make_block(car=serviced, start=as_utc(end) - timedelta(hours=2), days=1)
    # Returned 30 minutes before our pickup: the cleaning buffer (60 min) is not over.
    cleaning = factories.make_car(car_class=shop.compact, branch=shop.lhr, model="Cleaning")
    factories.make_hire(car=cleaning, start=as_utc(start) - timedelta(days=2, minutes=30), days=2,
                        occupy=False).occupy(until=as_utc(start) + timedelta(minutes=30))
    db.session.commit()
    back_to_back = factories.make_car(car_class=shop.compact, branch=shop.lhr, model="Ready")
    factories.make_hire(car=back_to_back, start=as_utc(end) + timedelta(minutes=60), days=2)
    factories.make_car(car_class=shop.compact, branch=shop.lhr, model="Retired", status="retired")
    factories.make_car(car_class=shop.compact, branch=shop.man, model="Elsewhere")
    cancelled = factories.make_car(car_class=shop.compact, branch=shop.lhr, model="Freed")
    old = factories.make_hire(car=cancelled, start=as_utc(start), days=3)
    old.transition(HireState.CANCELLED, by=None, why="test")
    db.session.commit()

    response = client.get("/book/", query_string=trip_args(shop, start, end))
    page = text_of(response)
    assert response.status_code == 200
    listed = set(re.findall(r"<h2>Volkswagen (\w+)</h2>", page)) | set(re.findall(r"<h2>Ford (\w+)</h2>", page))
    assert listed == {"Golf", "Ready", "Freed"}
    assert "<strong>3</strong> cars are free for the whole period" in page
    expected = quotes.price(shop.car, trips.make_trip(
        pickup_branch_id=shop.lhr.id, return_branch_id=shop.lhr.id, pickup_local=start,
        return_local=end, now=utcnow()), {}, young_driver=False).total_pence
    assert f"£{expected // 100:,}.{expected % 100:02d}" in page


def test_availability_is_one_query(app, shop):
    start, end = local_day(10), local_day(12)
    trip = trips.make_trip(pickup_branch_id=shop.lhr.id, return_branch_id=shop.lhr.id,
                           pickup_local=start, return_local=end, now=utcnow())
    statements = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        result = availability.search(trip)
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    touching_cars = [s for s in statements if "occupancies" in s or "FROM cars" in s]
    assert len(touching_cars) == 1, touching_cars
    assert [o.car.id for o in result.offers] == [shop.car.id]


def test_filters_narrow_the_results(client, shop):
    factories.make_car(car_class=shop.estate, branch=shop.lhr, make="Skoda", model="Octavia",
                       seats=7, transmission="automatic", fuel_type="diesel")
    args = trip_args(shop, local_day(10), local_day(12))
    assert "Octavia" in text_of(client.get("/book/", query_string=args))
    for name, value, shown in [("car_class", "estate", True), ("car_class", "compact", False),
                               ("seats", "7", True), ("transmission", "manual", False),
                               ("fuel", "diesel", True), ("fuel", "electric", False)]:
        page = text_of(client.get("/book/", query_string={**args, name: value}))
        assert ("Octavia" in page) is shown, (name, value)
    golf_only = text_of(client.get("/book/", query_string={**args, "car_class": "compact"}))
    assert "Golf" in golf_only


def test_search_answers_htmx_with_results_only_and_messages_beside_fields(client, shop):
    args = trip_args(shop, local_day(10), local_day(12))
    response = client.get("/book/", query_string=args, headers={"HX-Request": "true"})
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<html" not in html and 'id="results"' in html
    assert response.headers["Vary"] and "HX-Request" in response.headers["Vary"]

    bad = {**args, "return_at": local_day(9).strftime(FMT)}
    response = client.get("/book/", query_string=bad, headers={"HX-Request": "true"})
    html = text_of(response)
    assert response.status_code == 422
    slot = re.search(r'<div class="field-errors" id="return_at-errors" hx-swap-oob="true">(.*?)</div>', html)
    assert slot and "Return must be after pickup." in slot.group(1)
    # The other fields' slots are refreshed (emptied) too.
    assert re.search(r'id="pickup_at-errors" hx-swap-oob="true"></div>', html)


def test_search_page_without_arguments_suggests_dates(client, shop):
    response = client.get("/book/")
    page = text_of(response)
    assert response.status_code == 200
    assert "Volkswagen Golf" in page
    assert 'hx-trigger="input changed delay:300ms, change, submit"' in page
    assert 'hx-indicator="#search-indicator"' in page


def _closed_on_sundays(branch):
    hours = dict(branch.opening_hours)
    hours["sun"] = None
    branch.opening_hours = hours
    db.session.commit()


def _next(weekday: int, after: int = 3) -> int:
    """Days from today to the first `weekday` (Mon=0) at least `after` days ahead."""
    today = datetime.now(LONDON).date()
    for d in range(after, after + 8):
        if (today + timedelta(days=d)).weekday() == weekday:
            return d
    raise AssertionError


@pytest.mark.parametrize("case,field,message", [
    ("past", "pickup_at", "Pickup must be in the future, at least an hour from now."),
    ("too_soon", "pickup_at", "Pickup must be in the future, at least an hour from now."),
    ("before_opening", "pickup_at", "is open 08:00–18:00 on"),
    ("closed_day", "pickup_at", "is closed on Sundays."),
    ("return_closed", "return_at", "is closed on Sundays."),
    ("return_first", "return_at", "Return must be after pickup."),
    ("too_long", "return_at", "A hire can be at most 28 days."),
    ("missing", "pickup_at", "Enter the pickup date and time."),
    ("garbled", "return_at", "Enter a date and time, like 2026-06-01 10:00."),
    ("too_far", "pickup_at", "We take bookings up to 365 days ahead."),
])
def test_validation_messages_appear_beside_the_field(client, shop, case, field, message):
    _closed_on_sundays(shop.lhr)
    monday = _next(0)
    start, end = local_day(monday), local_day(monday + 2)
    args = trip_args(shop, start, end)
    if case == "past":
        args["pickup_at"] = local_day(-1).strftime(FMT)
    elif case == "too_soon":
        soon = (datetime.now(LONDON) + timedelta(minutes=10)).replace(tzinfo=None)
        args["pickup_at"] = soon.strftime(FMT)
    elif case == "before_opening":
        args["pickup_at"] = local_day(monday, hour=7).strftime(FMT)
    elif case == "closed_day":
        args["pickup_at"] = local_day(monday - 1).strftime(FMT)
    elif case == "return_closed":
        args["return_at"] = local_day(monday + 6).strftime(FMT)
    elif case == "return_first":
        args["return_at"] = local_day(monday, hour=9).strftime(FMT)
    elif case == "too_long":
        args["return_at"] = local_day(monday + 29).strftime(FMT)
    elif case == "missing":
        args["pickup_at"] = ""
    elif case == "garbled":
        args["return_at"] = "next tuesday"
    elif case == "too_far":
        args["pickup_at"] = local_day(monday + 364).strftime(FMT)
        args["return_at"] = local_day(monday + 366).strftime(FMT)
    response = client.get("/book/", query_string=args)
    html = text_of(response)
    assert response.status_code == 422
    slot = re.search(rf'<div class="field-errors" id="{field}-errors">(.*?)</div>', html)
    assert slot and message in slot.group(1), html[html.find("<main"):][:3000]
    assert 'aria-invalid="true"' in html


def test_the_hour_the_clocks_skip_is_refused(app, shop):
    """01:30 on the last Sunday of March does not exist in London."""
    year = datetime.now(LONDON).year + 1
    march_change = max(date(year, 3, d) for d in range(25, 32) if date(year, 3, d).weekday() == 6)
    shop.lhr.opening_hours = {d: ["00:00", "23:59"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    with pytest.raises(BookingError) as err:
        trips.make_trip(pickup_branch_id=shop.lhr.id, return_branch_id=shop.lhr.id,
                        pickup_local=datetime.combine(march_change, datetime.min.time()).replace(hour=1, minute=30),
                        return_local=datetime.combine(march_change + timedelta(days=1), datetime.min.time()).replace(hour=10),
                        now=datetime(year, 1, 1, tzinfo=timezone.utc))
    assert "does not exist" in err.value.errors["pickup_at"]


@pytest.mark.parametrize("month,hours,days", [(3, 23, 1), (10, 25, 1)])
def test_clock_change_days_are_real_hours_and_one_charged_day(app, shop, month, hours, days):
    """Saturday 10:00 to Sunday 10:00 over each change: 23 or 25 real hours, one day charged."""
    year = datetime.now(LONDON).year + 1
    sunday = max(date(year, month, d) for d in range(25, 32) if date(year, month, d).weekday() == 6)
    saturday = sunday - timedelta(days=1)
    trip = trips.make_trip(
        pickup_branch_id=shop.lhr.id, return_branch_id=shop.lhr.id,
        pickup_local=datetime.combine(saturday, datetime.min.time()).replace(hour=10),
        return_local=datetime.combine(sunday, datetime.min.time()).replace(hour=10),
        now=datetime(year, 1, 1, tzinfo=timezone.utc))
    assert trip.end - trip.start == timedelta(hours=hours)
    quote = quotes.price(shop.car, trip, {}, young_driver=False)
    assert quote.days == days
    # Shown back in local time exactly as entered.
    assert trips.to_local(trip.end, "Europe/London").hour == 10


# --- quote ----------------------------------------------------------------------------------

def test_quote_is_itemised_and_extras_update_the_total_in_place(client, shop):
    monday = _next(0)
    args = trip_args(shop, local_day(monday), local_day(monday + 3))
    page = text_of(client.get(f"/book/cars/{shop.car.id}", query_string=args))
    assert "Rental: 3 days × £39.00" in page
    assert "3+ day rate: 5% off" in page and "VAT 20%" in page
    assert "A deposit of <strong>£250.00</strong> will be held" in page
    base_total = re.search(r'quote-total">(£[\d,.]+)<', page).group(1)
    assert base_total == "£133.38"  # 117.00 - 5.85 = 111.15 + VAT 22.23

    response = client.get(f"/book/cars/{shop.car.id}",
                          query_string={**args, "extra_child_seat": "2", "group_cover": "cover_plus"},
                          headers={"HX-Request": "true"})
    fragment = text_of(response)
    assert response.status_code == 200 and "<html" not in fragment
    assert fragment.lstrip().startswith('<div id="quote"')
    assert "Child seat × 2: 3 days × £8.00" in fragment and "Cover Plus: 3 days × £9.00" in fragment
    # 111.15 + 48.00 + 27.00 = 186.15; VAT 37.23
    assert re.search(r'quote-total">(£[\d,.]+)<', fragment).group(1) == "£223.38"
    # The book button carries the extras on to the confirm step.
    assert "extra_child_seat=2" in fragment and "group_cover=cover_plus" in fragment


def test_impossible_extras_are_refused_beside_the_field(client, shop):
    args = trip_args(shop, local_day(10), local_day(12))
    response = client.get(f"/book/cars/{shop.car.id}", query_string={**args, "extra_child_seat": "9"})
    assert response.status_code == 422
    assert "Not a valid choice" in text_of(response)


def test_quote_for_a_taken_car_offers_alternatives(client, shop):
    other = factories.make_car(car_class=shop.compact, branch=shop.lhr, make="Ford", model="Focus")
    start, end = local_day(10), local_day(12)
    factories.make_hire(car=shop.car, start=as_utc(start), days=2)
    response = client.get(f"/book/cars/{shop.car.id}", query_string=trip_args(shop, start, end))
    page = text_of(response)
    assert response.status_code == 409
    assert "not free for those dates" in page
    assert f'/book/cars/{other.id}?' in page and "Ford Focus" in page


# --- confirm ----------------------------------------------------------------------------------

def test_visitor_must_sign_in_to_book(client, shop):
    args = trip_args(shop, local_day(10), local_day(12))
    page = text_of(client.get(f"/book/cars/{shop.car.id}", query_string=args))
    assert "Sign in to book" in page
    response = client.get(f"/book/cars/{shop.car.id}/review", query_string=args)
    assert response.status_code == 302
    assert "/account/sign-in" in response.headers["Location"] and "next=" in response.headers["Location"]


@pytest.mark.parametrize("status", ["unchecked", "pending", "refused"])
def test_customer_without_verified_licence_is_told_why(client, auth, shop, status):
    auth.sign_in_as("customer", licence_status=status)
    args = trip_args(shop, local_day(10), local_day(12))
    response, form, html = review(client, shop.car.id, args)
    assert response.status_code == 200
    assert 'id="ineligible"' in html and "licence" in html
    assert 'id="licence-link"' in html and 'id="confirm-form"' not in html
    # Even a hand-made confirm is refused.
    form = {**trip_args(shop, local_day(10), local_day(12)), "idempotency_key": "made-up-key-123",
            "csrf_token": csrf_token(client, "/book/")}
    response = confirm(client, shop.car.id, form)
    assert response.status_code == 403
    assert hires() == []


def test_confirm_holds_the_car_at_the_server_price_and_hands_over_to_payment(app, client, auth, shop):
    user = auth.sign_in_as("customer")
    start, end = local_day(10), local_day(13)
    response, form, html = review(client, shop.car.id, {**trip_args(shop, start, end), "extra_gps": "y"})
    assert "You are about to book the <strong>Volkswagen Golf</strong>" in html
    assert "a deposit of <strong>£250.00</strong> will be held" in html
    before = utcnow()
    response = confirm(client, shop.car.id, form)
    assert response.status_code == 303
    [hire] = hires()
    assert response.headers["Location"].endswith(f"/pay/{hire.reference}")  # the payment step
    assert hire.customer_id == user.id and hire.state == "held"
    assert before + timedelta(minutes=14) < hire.hold_expires_at <= utcnow() + timedelta(minutes=15)
    assert (hire.start_at, hire.end_at) == (as_utc(start), as_utc(end))
    assert hire.occupancy.ends_at == as_utc(end) + timedelta(minutes=60)  # cleaning buffer
    assert hire.extras == {"gps": 1}
    assert sum(line["amount_pence"] for line in hire.price_lines) == hire.total_pence
    assert str(hire.total_pence) == form["expected_total"]
    assert hire.state_changes[0].to_state == "held"


def test_the_client_cannot_set_the_price(client, auth, shop):
    auth.sign_in_as("customer")
    start, end = local_day(10), local_day(12)
    _, form, _ = review(client, shop.car.id, trip_args(shop, start, end))
    tampered = {**form, "expected_total": "100", "total_pence": "100"}
    response = confirm(client, shop.car.id, tampered)
    assert response.status_code == 409
    assert "The price is now" in text_of(response)
    assert hires() == []
    # Posting with what the server said (the page now carries it) books at the server's price.
    _, again, _ = review(client, shop.car.id, trip_args(shop, start, end))
    response = confirm(client, shop.car.id, {**again, "total_pence": "100"})
    assert response.status_code == 303
    assert hires()[0].total_pence == int(again["expected_total"]) != 100


def test_the_same_confirm_posted_twice_makes_one_hire(client, auth, shop):
    auth.sign_in_as("customer")
    _, form, _ = review(client, shop.car.id, trip_args(shop, local_day(10), local_day(12)))
    first = confirm(client, shop.car.id, form)
    second = confirm(client, shop.car.id, form)
    htmx = confirm(client, shop.car.id, form, headers={"HX-Request": "true"})
    assert first.status_code == second.status_code == 303
    assert second.headers["Location"] == first.headers["Location"]
    assert htmx.status_code == 204 and htmx.headers["HX-Redirect"] == first.headers["Location"]
    assert len(hires()) == 1
    assert db.session.scalar(select(func.count(Occupancy.id))) == 1


def test_back_button_and_a_second_tab_do_not_make_a_second_hold(client, auth, shop):
    auth.sign_in_as("customer")
    args = trip_args(shop, local_day(10), local_day(12))
    _, form, _ = review(client, shop.car.id, args)
    _, other_tab, _ = review(client, shop.car.id, args)
    assert other_tab["idempotency_key"] != form["idempotency_key"]
    first = confirm(client, shop.car.id, form)
    second = confirm(client, shop.car.id, other_tab)
    assert second.status_code == 303 and second.headers["Location"] == first.headers["Location"]
    assert len(hires()) == 1
    # The confirm step loaded again says so, and offers no second confirm.
    response, reloaded, html = review(client, shop.car.id, args)
    assert response.status_code == 200 and 'id="existing"' in html and "idempotency_key" not in reloaded
    assert hires()[0].reference in html


def test_someone_elses_key_is_refused(client, auth, shop):
    other = factories.make_user("customer")
    taken = factories.make_hire(car=factories.make_car(car_class=shop.compact, branch=shop.lhr),
                                customer=other, start=as_utc(local_day(20)), days=1)
    auth.sign_in_as("customer")
    _, form, _ = review(client, shop.car.id, trip_args(shop, local_day(10), local_day(12)))
    response = confirm(client, shop.car.id, {**form, "idempotency_key": taken.idempotency_key})
    assert response.status_code == 422
    assert "already been used" in text_of(response)
    assert len(hires()) == 1


def test_a_car_taken_meanwhile_gets_the_friendly_message_with_alternatives(client, auth, shop):
    other = factories.make_car(car_class=shop.compact, branch=shop.lhr, make="Ford", model="Focus")
    auth.sign_in_as("customer")
    start, end = local_day(10), local_day(12)
    _, form, _ = review(client, shop.car.id, trip_args(shop, start, end))
    factories.make_hire(car=shop.car, start=as_utc(start) + timedelta(hours=5), days=1)
    response = confirm(client, shop.car.id, form, headers={"HX-Request": "true"})
    page = text_of(response)
    assert response.status_code == 409
    assert "Sorry, that car was just taken for those dates." in page
    assert f"/book/cars/{other.id}?" in page
    assert len(hires()) == 1


def test_holds_per_customer_are_limited(client, auth, shop):
    auth.sign_in_as("customer")
    cars = [shop.car] + [factories.make_car(car_class=shop.compact, branch=shop.lhr) for _ in range(2)]
    results = [book(client, shop, local_day(10), local_day(12), car=car).status_code for car in cars]
    assert results == [303, 303, 422]
    assert len(hires()) == 2


def test_the_price_is_frozen_when_rates_change(client, auth, shop):
    auth.sign_in_as("customer")
    book(client, shop, local_day(10), local_day(12))
    [hire] = hires()
    frozen = (hire.total_pence, list(hire.price_lines))
    shop.compact.daily_rate_pence = 9900
    db.session.commit()
    [hire] = hires()
    assert (hire.total_pence, hire.price_lines) == frozen
    page = text_of(client.get(f"/book/hires/{hire.reference}"))
    assert "Rental: 2 days × £39.00" in page


# --- confirmation by payments, emails ----------------------------------------------------------

def test_confirm_hire_confirms_once_and_emails_an_ics_once(app, shop):
    hire = factories.make_hire(car=shop.car, start=as_utc(local_day(10)), days=3, state=HireState.HELD)
    now = utcnow()
    holds.confirm_hire(hire, by=None, now=now)
    holds.confirm_hire(hire, by=None, now=now)  # a webhook delivered twice
    db.session.expire_all()
    assert db.session.get(Hire, hire.id).state == "confirmed"
    emails = db.session.scalars(select(OutboundEmail)).all()
    assert [e.idempotency_key for e in emails] == [f"hire:{hire.id}:confirmed"]
    email = emails[0]
    assert email.state == "sent" and hire.reference in email.subject
    assert email.attachment_mimetype == "text/calendar"
    cal = icalendar.Calendar.from_ical(email.attachment_text)
    [vevent] = list(cal.walk("VEVENT"))
    assert vevent.decoded("dtstart") == hire.start_at
    assert vevent.decoded("dtend") == hire.end_at
    assert str(vevent["uid"]) == f"{hire.reference}@acme-rentals.example"
    # The message that would go out carries the calendar entry as an attachment.
    from app.integrations.mail import build_message
    msg = build_message(email)
    [part] = list(msg.iter_attachments())
    assert part.get_content_type() == "text/calendar" and part.get_filename().endswith(".ics")


def test_a_hold_that_expired_cannot_be_confirmed(app, shop):
    hire = factories.make_hire(car=shop.car, start=as_utc(local_day(10)), days=3, state=HireState.HELD)
    hire.transition(HireState.EXPIRED, by=None, why="test")
    db.session.commit()
    with pytest.raises(InvalidTransition):
        holds.confirm_hire(hire, by=None, now=utcnow())
    assert db.session.scalar(select(func.count(OutboundEmail.id))) == 0


# --- the scheduler ------------------------------------------------------------------------------

def test_expiry_frees_the_car_and_is_safe_to_run_twice(client, auth, runner, shop):
    auth.sign_in_as("customer")
    start, end = local_day(10), local_day(12)
    book(client, shop, start, end)
    [hire] = hires()
    args = trip_args(shop, start, end)
    assert "Volkswagen Golf" not in text_of(client.get("/book/", query_string=args))

    early = tick((hire.hold_expires_at - timedelta(seconds=1)).isoformat())
    assert (early["expired"], early["reminders"]) == (0, 0)
    later = (hire.hold_expires_at + timedelta(seconds=1)).isoformat()
    result = runner.invoke(args=["acme", "tick", "--now", later])
    assert result.exit_code == 0 and "Expired 1 holds" in result.output
    assert runner.invoke(args=["acme", "tick", "--now", later]).output.startswith("Expired 0 holds")
    [hire] = hires()
    assert hire.state == "expired" and hire.occupancy is None
    keys = db.session.scalars(select(OutboundEmail.idempotency_key)).all()
    assert keys == [f"hire:{hire.id}:expired"]
    assert "Volkswagen Golf" in text_of(client.get("/book/", query_string=args))


def test_reminders_go_once_each(app, shop):
    now = utcnow()
    soon = factories.make_hire(car=shop.car, start=now + timedelta(hours=20), days=2)
    later = factories.make_hire(car=factories.make_car(car_class=shop.compact, branch=shop.lhr),
                                start=now + timedelta(hours=30), days=2)
    out = factories.make_hire(car=factories.make_car(car_class=shop.compact, branch=shop.lhr),
                              start=now - timedelta(days=2), days=2, state=HireState.ACTIVE)
    out.end_at = now + timedelta(hours=2)
    db.session.commit()
    assert tick(now.isoformat())["reminders"] == 2
    assert tick(now.isoformat())["reminders"] == 2  # found again, but nothing new is sent
    keys = sorted(db.session.scalars(select(OutboundEmail.idempotency_key)).all())
    assert keys == sorted([f"hire:{soon.id}:pickup-reminder:{soon.start_at:%Y%m%dT%H%MZ}",
                           f"hire:{out.id}:return-reminder:{out.end_at:%Y%m%dT%H%MZ}"])
    assert not any(str(later.id) + ":" in k for k in keys)


# --- cancelling ------------------------------------------------------------------------------

def _hire(total: int, start: datetime, state: str = "confirmed") -> Hire:
    return Hire(total_pence=total, start_at=start, state=state)


T = datetime(2030, 6, 10, 9, tzinfo=timezone.utc)
FIXED = CancelPolicy(free_hours=48, fee_pence=5000, fee_percent=0)
PERCENT = CancelPolicy(free_hours=48, fee_pence=5000, fee_percent=25)


@pytest.mark.parametrize("hire,now,policy,refund", [
    (_hire(20000, T, "held"), T - timedelta(days=10), FIXED, 0),            # never paid
    (_hire(20000, T), T - timedelta(days=10), FIXED, 20000),                # well before
    (_hire(20000, T), T - timedelta(hours=48), FIXED, 20000),               # the last free moment
    (_hire(20000, T), T - timedelta(hours=47, minutes=59), FIXED, 15000),   # then the fee
    (_hire(20000, T), T - timedelta(hours=1), FIXED, 15000),
    (_hire(3000, T), T - timedelta(hours=1), FIXED, 0),                     # fee above the price
    (_hire(20000, T), T - timedelta(hours=1), PERCENT, 15000),              # 25% of 200.00
    (_hire(20001, T), T - timedelta(hours=1), PERCENT, 15001),              # rounded to pence
])
def test_cancellation_refund_follows_the_named_policy(hire, now, policy, refund):
    assert cancellation_refund_pence(hire, now, policy) == refund


def test_cancellation_policy_comes_from_settings(app):
    app.config.update(FREE_CANCEL_HOURS=24, CANCEL_FEE_PENCE=1000, CANCEL_FEE_PERCENT=0)
    assert cancellation_refund_pence(_hire(20000, T), T - timedelta(hours=25)) == 20000
    assert cancellation_refund_pence(_hire(20000, T), T - timedelta(hours=23)) == 19000


def test_cancel_from_my_bookings_after_a_confirm_step(client, auth, shop):
    user = auth.sign_in_as("customer")
    hire = factories.make_hire(car=shop.car, customer=user, start=as_utc(local_day(1, hour=12)), days=2)
    page = text_of(client.get("/book/mine"))
    assert hire.reference in page and "Confirmed" in page
    step = client.get(f"/book/hires/{hire.reference}/cancel", headers={"HX-Request": "true"})
    fragment = text_of(step)
    assert step.status_code == 200 and "<html" not in fragment
    # Inside FREE_CANCEL_HOURS: the price less the £50 fee.
    assert f"You get <strong class=\"refund\">£{(hire.total_pence - 5000) / 100:,.2f}</strong>" in fragment
    assert hires()[0].state == "confirmed"  # the step itself changes nothing
    response = client.post(f"/book/hires/{hire.reference}/cancel",
                           data={"csrf_token": csrf_token(client, "/book/mine")},
                           headers={"HX-Request": "true"})
    assert response.status_code == 204 and response.headers["HX-Redirect"].endswith("/book/mine")
    [hire] = hires()
    assert hire.state == "cancelled" and hire.occupancy is None
    reasons = [c.reason for c in hire.state_changes]
    assert any("refund £28.00" in r and "free until 48 hours before pickup" in r for r in reasons)
    # make_hire records no payment, so payments refuses the refund; the history says so.
    assert "refund of £28.00 not made" in reasons[-1]
    assert db.session.scalar(select(OutboundEmail.idempotency_key)) == f"hire:{hire.id}:cancelled"
    page = text_of(client.get("/book/mine"))
    assert "Cancelled" in page
    # Twice is refused politely, not a crash.
    again = client.post(f"/book/hires/{hire.reference}/cancel",
                        data={"csrf_token": csrf_token(client, "/book/mine")})
    assert again.status_code == 422


def test_a_held_booking_cancels_without_refund(client, auth, shop):
    auth.sign_in_as("customer")
    book(client, shop, local_day(10), local_day(12))
    [hire] = hires()
    assert "Nothing has been charged" in text_of(client.get(f"/book/hires/{hire.reference}/cancel"))
    client.post(f"/book/hires/{hire.reference}/cancel", data={"csrf_token": csrf_token(client, "/book/mine")})
    assert hires()[0].state == "cancelled"


def test_other_peoples_bookings_are_not_found(client, auth, shop):
    hire = factories.make_hire(car=shop.car, start=as_utc(local_day(10)), days=2)
    auth.sign_in_as("customer")
    for url in (f"/book/hires/{hire.reference}", f"/book/hires/{hire.reference}/cancel",
                f"/book/hires/{hire.reference}/change"):
        assert client.get(url).status_code == 404
    response = client.post(f"/book/hires/{hire.reference}/cancel",
                           data={"csrf_token": csrf_token(client, "/book/mine")})
    assert response.status_code == 404
    assert hires()[0].state == "confirmed"


def test_my_bookings_are_grouped(client, auth, shop):
    user = auth.sign_in_as("customer")
    cars = [factories.make_car(car_class=shop.compact, branch=shop.lhr) for _ in range(3)]
    upcoming = factories.make_hire(car=cars[0], customer=user, start=as_utc(local_day(5)), days=2)
    active = factories.make_hire(car=cars[1], customer=user, start=utcnow() - timedelta(days=1), days=3,
                                 state=HireState.ACTIVE)
    past = factories.make_hire(car=cars[2], customer=user, start=utcnow() - timedelta(days=30), days=2,
                               state=HireState.CLOSED, occupy=False)
    page = text_of(client.get("/book/mine"))
    upcoming_at, active_at, past_at = (page.index(h.reference) for h in (upcoming, active, past))
    assert page.index("Upcoming") < upcoming_at < page.index("On hire now") < active_at < page.index("Past") < past_at
    assert "£117.00" in page  # make_hire's 3 days × £39.00


# --- changing ---------------------------------------------------------------------------------

def test_change_dates_and_extras_is_requoted_and_moves_the_occupancy(client, auth, shop):
    auth.sign_in_as("customer")
    book(client, shop, local_day(10), local_day(12))
    [hire] = hires()
    old_total = hire.total_pence
    url = f"/book/hires/{hire.reference}/change"
    page = text_of(client.get(url))
    assert local_day(10).strftime(FMT) in page and "The price does not change." in page
    new = {"pickup_at": local_day(10).strftime(FMT), "return_at": local_day(15).strftime(FMT),
           "extra_gps": "y"}
    preview = client.get(url, query_string=new, headers={"HX-Request": "true"})
    assert preview.status_code == 200 and "more</strong> than now" in text_of(preview)
    assert hires()[0].total_pence == old_total  # a preview changes nothing
    response = client.post(url, data={**new, "csrf_token": csrf_token(client, url)})
    assert response.status_code == 303
    [hire] = hires()
    assert hire.end_at == as_utc(local_day(15)) and hire.extras == {"gps": 1}
    assert hire.total_pence > old_total
    assert hire.occupancy.ends_at == as_utc(local_day(15)) + timedelta(minutes=60)
    assert "changed from" in hire.state_changes[-1].reason


def test_change_is_refused_when_the_car_is_busy(client, auth, shop):
    auth.sign_in_as("customer")
    book(client, shop, local_day(10), local_day(12))
    factories.make_hire(car=shop.car, start=as_utc(local_day(14)), days=2)
    [mine, _] = hires()
    url = f"/book/hires/{mine.reference}/change"
    response = client.post(url, data={"pickup_at": local_day(10).strftime(FMT),
                                      "return_at": local_day(15).strftime(FMT),
                                      "csrf_token": csrf_token(client, url)})
    assert response.status_code == 409
    assert "not free for those dates" in text_of(response)
    assert hires()[0].end_at == as_utc(local_day(12))


def test_development_runs_the_scheduler_from_the_in_process_pool(app, make_app, shop):
    """With no systemd timer (the embedded default), holds still expire on their own."""
    import time

    from app import queueing as jobs
    from app.jobs.booking import start_dev_ticker
    hire = factories.make_hire(car=shop.car, start=as_utc(local_day(10)), days=2, state=HireState.HELD)
    hire.hold_expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert start_dev_ticker(app) is None  # tests (and production) never start it
    dev = make_app(ENV_NAME="development", JOBS_MODE="thread", DEV_TICK_SECONDS=0.05)
    ticker = start_dev_ticker(dev)
    try:
        assert ticker is not None and start_dev_ticker(dev) is None  # once per app
        deadline = time.monotonic() + 20
        while hires()[0].state == "held" and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        if ticker is not None:
            ticker.stop()
        while jobs._executor is not None:  # a finishing job may have queued another (its email)
            pool, jobs._executor = jobs._executor, None
            pool.shutdown(wait=True)
        with dev.app_context():
            db.engine.dispose()
    assert hires()[0].state == "expired"

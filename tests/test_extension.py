"""Extending a hire (issue 18): priced with the same rules, the car checked free (the
database's guard), until when it is free or a swap when it is not, the difference charged to
the saved card after a confirm step, and two extensions racing over HTTP: one wins."""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from html import unescape

import pytest
import requests
from sqlalchemy import select

from app.booking.extending import preview_extension
from app.extensions import db
from app.models import AuditRecord, Hire, Payment, utcnow
from app.payments import amount_due_pence
from tests import factories
from tests.conftest import post_form
from tests.live_server import serve
from tests.test_booking import as_utc, local_day, shop  # noqa: F401
from tests.test_booking_race_server import CSRF_RE, HTTP_TIMEOUT_SECONDS, _signed_in
from tests.test_payments_card import customer, paid_hire, standin, stripe_app  # noqa: F401

FMT = "%Y-%m-%dT%H:%M"
HIDDEN_RE = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
EXTEND_FORM_RE = re.compile(r'<form[^>]*id="extend-form".*?</form>', re.S)


def booked(shop, customer, start_days=2, days=2):
    return factories.make_hire(car=shop.car, customer=customer, start=as_utc(local_day(start_days)), days=days)


def confirm_form(html: str) -> dict:
    form = EXTEND_FORM_RE.search(html)
    assert form, html
    return {name: unescape(value) for name, value in HIDDEN_RE.findall(form.group(0))}


def preview(client, hire, new_return):
    return client.get(f"/book/hires/{hire.reference}/extend", query_string={"return_at": new_return.strftime(FMT)})


def test_the_extra_time_is_priced_by_the_same_rules_and_applied_after_confirming(client, auth, shop):
    customer = auth.sign_in_as("customer")
    hire = booked(shop, customer)  # 2 days
    old_total = hire.total_pence
    new_return = local_day(5)  # one more day
    response = preview(client, hire, new_return)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    expected = preview_extension(hire, new_return, now=utcnow()).extra_pence
    assert expected > 0 and f"£{expected / 100:,.2f}" in html
    assert db.session.get(Hire, hire.id).end_at == as_utc(local_day(4))  # nothing moved yet

    response = client.post(f"/book/hires/{hire.reference}/extend", data=confirm_form(html))
    assert response.status_code == 303, response.get_data(as_text=True)
    db.session.expire_all()
    hire = db.session.get(Hire, hire.id)
    assert hire.end_at == as_utc(new_return)
    assert hire.occupancy.ends_at >= hire.end_at  # the car is kept for the extra time
    assert hire.total_pence == old_total + expected
    assert sum(line["amount_pence"] for line in hire.price_lines) == hire.total_pence
    assert hire.price_lines[-1]["code"] == "extension"
    assert db.session.scalar(select(AuditRecord).where(AuditRecord.action == "hire.extended")) is not None
    # No saved card: it is left to pay, on the payment page.
    assert response.headers["Location"].endswith(f"/pay/{hire.reference}")


def test_a_price_other_than_the_one_shown_is_refused(client, auth, shop):
    hire = booked(shop, auth.sign_in_as("customer"))
    html = preview(client, hire, local_day(5)).get_data(as_text=True)
    form = {**confirm_form(html), "expected_extra": "1"}
    response = client.post(f"/book/hires/{hire.reference}/extend", data=form)
    assert response.status_code == 422 and "not what you were shown" in response.get_data(as_text=True)
    assert db.session.get(Hire, hire.id).end_at == as_utc(local_day(4))


def test_when_the_car_is_taken_it_says_until_when_and_offers_a_swap(client, auth, shop):
    hire = booked(shop, auth.sign_in_as("customer"))  # ends day 4 at 10:00
    factories.make_hire(car=shop.car, start=as_utc(local_day(6)), days=2)  # someone else's
    other = factories.make_car(car_class=shop.compact, branch=shop.lhr, make="Seat", model="Leon")
    response = preview(client, hire, local_day(7))
    assert response.status_code == 409
    page = " ".join(unescape(response.get_data(as_text=True)).split())
    until = (local_day(6) - timedelta(minutes=60)).strftime("%a %d %b %H:%M")  # less the cleaning buffer
    assert f"free only until {until}" in page
    assert f"Swap to Seat Leon ({other.plate})" in page
    # Choosing the swap: the same class, free for the whole extended hire.
    response = client.get(f"/book/hires/{hire.reference}/extend",
                          query_string={"return_at": local_day(7).strftime(FMT), "swap_car": other.id})
    assert response.status_code == 200
    response = client.post(f"/book/hires/{hire.reference}/extend", data=confirm_form(response.get_data(as_text=True)))
    assert response.status_code == 303
    db.session.expire_all()
    hire = db.session.get(Hire, hire.id)
    assert hire.car_id == other.id and hire.occupancy.car_id == other.id and hire.end_at == as_utc(local_day(7))


def test_bad_times_are_said_beside_the_field(client, auth, shop):
    hire = booked(shop, auth.sign_in_as("customer"))
    for when, message in ((local_day(3), "Choose a return later than the one booked"),
                          (local_day(5, hour=23), "is open 08:00–18:00"),
                          (local_day(60), "at most 28 days")):
        response = preview(client, hire, when)
        assert response.status_code == 422 and message in unescape(response.get_data(as_text=True)), when


def test_the_extension_is_charged_to_the_saved_card(stripe_app, client, customer, standin, shop):
    hire = paid_hire(client, standin, customer, car=shop.car, start=as_utc(local_day(2)), days=2)
    html = preview(client, hire, local_day(5)).get_data(as_text=True)
    form = confirm_form(html)
    response = client.post(f"/book/hires/{hire.reference}/extend", data=form)
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/book/hires/{hire.reference}")
    db.session.expire_all()
    charge = db.session.scalar(select(Payment).where(Payment.hire_id == hire.id,
                                                     Payment.kind == "charge").order_by(Payment.id.desc()))
    assert charge.details["purpose"] == "extension" and charge.amount_pence == int(form["expected_extra"])
    assert charge.idempotency_key.startswith(f"hire:{hire.id}:extension:")
    assert charge.state == "succeeded" and charge.provider_ref  # the stand-in took it off-session
    db.session.expire_all()
    assert amount_due_pence(db.session.get(Hire, hire.id)) == 0  # the extension is paid for


def test_staff_extend_from_the_counter(client, auth, shop):
    hire = booked(shop, factories.make_user())
    auth.sign_in_as("staff")
    page = client.get(f"/counter/hires/{hire.reference}").get_data(as_text=True)
    assert f"/book/staff/hires/{hire.reference}/extend" in page
    response = client.get(f"/book/staff/hires/{hire.reference}/extend",
                          query_string={"return_at": local_day(5).strftime(FMT)})
    assert response.status_code == 200
    response = client.post(f"/book/staff/hires/{hire.reference}/extend",
                           data=confirm_form(response.get_data(as_text=True)))
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/counter/hires/{hire.reference}")
    assert db.session.get(Hire, hire.id).end_at == as_utc(local_day(5))


# --- two extensions at once, through a running server -------------------------------------------

@pytest.fixture
def server(app):
    live = serve(JOBS_MODE="sync", SIGNIN_RATE_LIMIT="100 per minute")
    yield live
    live.stop()


def test_two_extensions_racing_for_the_same_car_one_wins(server, shop):
    """The customer on two devices asks for two different extensions at the same instant:
    exactly one is applied; the other is told the booking just changed. Never both, never a 500."""
    customer = factories.make_user("customer")
    hire = booked(shop, customer)
    devices = [_signed_in(server.url, customer.email) for _ in range(2)]
    returns = [local_day(5), local_day(6)]
    forms = []
    for device, new_return in zip(devices, returns):
        page = device.get(f"{server.url}/book/hires/{hire.reference}/extend",
                          params={"return_at": new_return.strftime(FMT)}, timeout=HTTP_TIMEOUT_SECONDS)
        assert page.status_code == 200, page.text
        forms.append(confirm_form(page.text))
    barrier = threading.Barrier(2)

    def press(i):
        barrier.wait(timeout=HTTP_TIMEOUT_SECONDS)
        return devices[i].post(f"{server.url}/book/hires/{hire.reference}/extend", data=forms[i],
                               allow_redirects=False, timeout=HTTP_TIMEOUT_SECONDS)

    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(press, range(2)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses[0] == 303 and statuses[1] in (409, 422), statuses
    loser = next(a for a in answers if a.status_code != 303)
    assert "was changed a moment ago" in unescape(loser.text)
    winner = answers.index(next(a for a in answers if a.status_code == 303))
    db.session.expire_all()
    hire = db.session.get(Hire, hire.id)
    assert hire.end_at == as_utc(returns[winner])
    assert [line["code"] for line in hire.price_lines].count("extension") == 1
    assert CSRF_RE  # the same sign-in helpers as the booking race


def test_a_car_already_out_is_not_swapped_the_customer_is_told_until_when_and_what_to_do(client, auth, shop):
    customer = auth.sign_in_as("customer")
    hire = factories.make_hire(car=shop.car, customer=customer, start=as_utc(local_day(-1)), days=3,
                               state=factories.HireState.ACTIVE)  # picked up yesterday, back day 2
    factories.make_hire(car=shop.car, start=as_utc(local_day(4)), days=2)  # someone else's, after
    other = factories.make_car(car_class=shop.compact, branch=shop.lhr, make="Seat", model="Leon")
    response = preview(client, hire, local_day(6))
    assert response.status_code == 409
    page = " ".join(unescape(response.get_data(as_text=True)).split())
    until = local_day(4) - timedelta(minutes=60)  # less the cleaning buffer
    assert f"you can keep it until {until:%a %d %b %H:%M} at the latest" in page
    assert "It cannot be swapped from here, as it is already with you" in page
    assert (f"bring it back to {shop.lhr.name} by {until:%a %d %b %H:%M} and the counter will hand you "
            f"another {shop.compact.name} car for the extra time") in page
    assert f"another {shop.compact.name} car is free there for that time now" in page
    assert "Swap to" not in page and str(other.plate) not in page  # no swap offered for a car that is out
    # The way to keep this car as long as it can be: extend until it is needed.
    assert f"Extend until {until:%a %d %b %H:%M} instead" in page
    response = preview(client, hire, until)
    assert response.status_code == 200
    response = client.post(f"/book/hires/{hire.reference}/extend", data=confirm_form(response.get_data(as_text=True)))
    assert response.status_code == 303
    db.session.expire_all()
    assert db.session.get(Hire, hire.id).end_at == as_utc(until) and hire.car_id == shop.car.id

    # A swap asked for anyway (a crafted link) is refused beside the form, saying what to do.
    response = client.get(f"/book/hires/{hire.reference}/extend",
                          query_string={"return_at": local_day(6).strftime(FMT), "swap_car": other.id})
    assert response.status_code == 422
    assert "cannot be swapped from here: bring it back to" in unescape(response.get_data(as_text=True))


def test_when_no_other_car_of_the_class_is_free_the_customer_is_told_to_call_first(client, auth, shop):
    customer = auth.sign_in_as("customer")
    hire = factories.make_hire(car=shop.car, customer=customer, start=as_utc(local_day(-1)), days=3,
                               state=factories.HireState.ACTIVE)
    factories.make_hire(car=shop.car, start=as_utc(local_day(2)) + timedelta(hours=1), days=2)
    page = " ".join(unescape(preview(client, hire, local_day(6)).get_data(as_text=True)).split())
    assert "booked straight after you: it cannot be kept longer" in page
    assert f"no other {shop.compact.name} car is free there for that time at the moment, so call the branch" in page
    assert "Extend until" not in page


def test_staff_are_told_how_to_swap_a_car_that_is_out_at_the_counter(client, auth, shop):
    hire = factories.make_hire(car=shop.car, customer=factories.make_user(), start=as_utc(local_day(-1)),
                               days=3, state=factories.HireState.ACTIVE)
    factories.make_hire(car=shop.car, start=as_utc(local_day(4)), days=2)
    auth.sign_in_as("staff")
    response = client.get(f"/book/staff/hires/{hire.reference}/extend",
                          query_string={"return_at": local_day(6).strftime(FMT)})
    assert response.status_code == 409
    page = " ".join(unescape(response.get_data(as_text=True)).split())
    assert ("At the counter: when the customer brings this car back, take its return, then book them "
            f"another {shop.compact.name} car for the extra time.") in page

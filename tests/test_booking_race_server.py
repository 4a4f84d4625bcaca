"""No car is ever double-booked, on the embedded default (SQLite) as on PostgreSQL (issue 14.1).

The portal runs as `flask run` runs it: a threaded werkzeug server, here on the test database
(a SQLite file built by the migrations, or PostgreSQL in the second pass). Customers sign in
over real HTTP and press "Confirm" for the same car and dates at the same instant. The
database itself refuses an overlapping occupancy: on SQLite the triggers of migration 0010,
on PostgreSQL the exclusion constraint; every writer turns that refusal into its friendly
answer.
"""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from html import unescape

import pytest
import requests
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.booking import changes, errors, holds, trips
from app.extensions import db
from app.fleet import errors as fleet_errors
from app.fleet import hire_moves, maintenance
from app.models import Hire, MaintenanceBlock, Occupancy, utcnow
from app.models.hires import NO_OVERLAP_CONSTRAINT, OCCUPYING_STATES
from tests import factories
from tests.live_server import serve
from tests.test_booking import as_utc, local_day, shop, trip_args  # noqa: F401

ROUNDS = 20
MOST_RACERS = 8
HTTP_TIMEOUT_SECONDS = 60
CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
CONFIRM_FORM_RE = re.compile(r'<form[^>]*id="confirm-form".*?</form>', re.S)
HIDDEN_RE = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
WRITE_HELD_SECONDS = 1.5
TAKEN = "Sorry, that car was just taken for those dates."


@pytest.fixture
def server(app):
    """The portal served over HTTP by a threaded werkzeug server, as `flask run` serves it."""
    live = serve(JOBS_MODE="sync", SIGNIN_RATE_LIMIT="100 per minute",
                  MAX_HOLDS_PER_CUSTOMER=ROUNDS)  # each customer may win every round
    yield live
    live.stop()


def _signed_in(base_url: str, email: str) -> requests.Session:
    """A customer's browser: signed in through the real form, cookies kept."""
    browser = requests.Session()
    page = browser.get(f"{base_url}/account/sign-in", timeout=HTTP_TIMEOUT_SECONDS)
    token = CSRF_RE.search(page.text).group(1)
    answer = browser.post(f"{base_url}/account/sign-in", timeout=HTTP_TIMEOUT_SECONDS,
                          data={"csrf_token": token, "email": email,
                                "password": factories.PASSWORD}, allow_redirects=False)
    assert answer.status_code == 303, answer.text
    return browser


def _confirm_form(base_url: str, browser: requests.Session, car_id: int, args: dict) -> dict:
    """The confirm form the review page gives this customer (CSRF token and key included)."""
    page = browser.get(f"{base_url}/book/cars/{car_id}/review", params=args,
                       timeout=HTTP_TIMEOUT_SECONDS)
    assert page.status_code == 200, page.text
    form = dict((name, unescape(value)) for name, value in
                HIDDEN_RE.findall(CONFIRM_FORM_RE.search(page.text).group(0)))
    assert form.get("csrf_token") and form.get("idempotency_key"), form
    return form


def _all_at_once(base_url: str, car_id: int, browsers: list, args: dict) -> list[requests.Response]:
    """Each customer opens the confirm step, then all press Confirm at the same instant."""
    barrier = threading.Barrier(len(browsers))

    def press(browser):
        form = _confirm_form(base_url, browser, car_id, args)
        barrier.wait(timeout=HTTP_TIMEOUT_SECONDS)
        return browser.post(f"{base_url}/book/cars/{car_id}/confirm", data=form,
                            allow_redirects=False, timeout=HTTP_TIMEOUT_SECONDS)

    with ThreadPoolExecutor(max_workers=len(browsers)) as pool:
        return list(pool.map(press, browsers))


def _occupying_hires(car_id: int, start) -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count(Hire.id)).where(
        Hire.car_id == car_id, Hire.start_at == start,
        Hire.state.in_([s.value for s in OCCUPYING_STATES])))


def test_customers_confirming_the_same_car_at_once_over_http_make_exactly_one_hire(server, shop):
    factories.make_car(car_class=shop.compact, branch=shop.lhr, make="Ford", model="Focus")
    emails = [factories.make_user("customer").email for _ in range(MOST_RACERS)]
    with ThreadPoolExecutor(max_workers=MOST_RACERS) as pool:
        browsers = list(pool.map(lambda email: _signed_in(server.url, email), emails))
    for number in range(ROUNDS):
        racing = 2 + number % (MOST_RACERS - 1)  # 2, 3, ... 8, 2, 3, ...
        start, end = local_day(3 + 2 * number), local_day(4 + 2 * number)

        answers = _all_at_once(server.url, shop.car.id, browsers[:racing],
                               trip_args(shop, start, end))

        statuses = [answer.status_code for answer in answers]
        where = f"round {number + 1}, {racing} customers: {statuses}"
        assert all(status < 500 for status in statuses), where
        assert statuses.count(303) == 1, where
        assert _occupying_hires(shop.car.id, as_utc(start)) == 1, where
        for loser in (answer for answer in answers if answer.status_code != 303):
            page = " ".join(unescape(loser.text).split())
            assert loser.status_code == 409, where
            assert TAKEN in page, where
            assert "Ford Focus" in page, where  # an alternative to choose instead


# --- other connections at work meanwhile: never "database is locked" --------------------------

def _one_customer_at_the_confirm_step(server, shop):
    customer = factories.make_user("customer")
    browser = _signed_in(server.url, customer.email)
    args = trip_args(shop, local_day(5), local_day(7))
    return customer, browser, _confirm_form(server.url, browser, shop.car.id, args)


def _in_a_transaction(first_statement: str):
    """Another connection to the test database, inside a transaction that ran this statement
    (SQLite's driver begins one only at a write, so it is begun explicitly there)."""
    connection = db.engine.raw_connection()
    cursor = connection.cursor()
    if db.engine.dialect.name == "sqlite":
        cursor.execute("BEGIN")
    cursor.execute(first_statement)
    cursor.fetchall()
    return connection


def test_a_booking_is_not_held_up_by_a_long_read(server, shop):
    """A backup or a long report reading meanwhile: the customer's booking goes through."""
    _, browser, form = _one_customer_at_the_confirm_step(server, shop)
    reader = _in_a_transaction("SELECT count(*) FROM occupancies")
    try:
        answer = browser.post(f"{server.url}/book/cars/{shop.car.id}/confirm", data=form,
                              allow_redirects=False, timeout=HTTP_TIMEOUT_SECONDS)
    finally:
        reader.rollback()
        reader.close()
    assert answer.status_code == 303, answer.text
    assert _occupying_hires(shop.car.id, as_utc(local_day(5))) == 1


def test_a_booking_waits_for_another_write_to_commit(server, shop):
    """Another connection is writing when the customer confirms: the booking waits for it."""
    customer, browser, form = _one_customer_at_the_confirm_step(server, shop)
    # The customer's own row: a booking locks it on PostgreSQL (one hold at a time each).
    writer = _in_a_transaction(f"UPDATE users SET full_name = full_name WHERE id = {customer.id}"
                               " RETURNING id")
    started = time.monotonic()
    finish = threading.Timer(WRITE_HELD_SECONDS, writer.commit)
    finish.start()
    try:
        answer = browser.post(f"{server.url}/book/cars/{shop.car.id}/confirm", data=form,
                              allow_redirects=False, timeout=HTTP_TIMEOUT_SECONDS)
    finally:
        finish.join()
        writer.close()
    assert answer.status_code == 303, answer.text
    assert time.monotonic() - started >= WRITE_HELD_SECONDS  # it did wait for the write
    assert _occupying_hires(shop.car.id, as_utc(local_day(5))) == 1


# --- the database's own guard, whoever writes -------------------------------------------------

@pytest.fixture
def booked(shop):
    """A confirmed hire of the shop's car (its occupancy ends when it does), and a second car
    of the same class at the same branch."""
    start = as_utc(local_day(10))
    hire = factories.make_hire(car=shop.car, start=start, days=2)
    other = factories.make_car(car_class=shop.compact, branch=shop.lhr, make="Ford", model="Focus")
    return hire, other


def _block(car, starts_at, ends_at) -> None:
    """A maintenance block and its occupancy, written straight to the database."""
    block = MaintenanceBlock(car=car, kind="service", starts_at=starts_at, ends_at=ends_at)
    db.session.add(block)
    db.session.flush()
    db.session.add(Occupancy(car_id=car.id, starts_at=starts_at, ends_at=ends_at,
                             maintenance_block_id=block.id))
    db.session.commit()


def test_the_database_refuses_an_overlapping_occupancy_and_allows_one_that_touches(booked):
    hire, other = booked
    one_microsecond = timedelta(microseconds=1)
    for starts_at, ends_at in ((hire.end_at - one_microsecond, hire.end_at + timedelta(days=1)),
                               (hire.start_at - timedelta(days=1), hire.start_at + one_microsecond),
                               (hire.start_at + timedelta(hours=1), hire.start_at + timedelta(hours=2))):
        with pytest.raises(IntegrityError) as refused:
            _block(hire.car, starts_at, ends_at)
        assert NO_OVERLAP_CONSTRAINT in errors.violated_constraint(refused.value)
        db.session.rollback()
    _block(hire.car, hire.end_at, hire.end_at + timedelta(days=1))  # [start, end) may touch
    _block(hire.car, hire.start_at - timedelta(days=1), hire.start_at)
    _block(other, hire.start_at, hire.end_at)  # another car, the same time
    occupancy = db.session.scalar(select(Occupancy).where(Occupancy.hire_id == hire.id))
    occupancy.ends_at += timedelta(hours=1)  # a longer hire: overlaps the next block
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()
    occupancy = db.session.scalar(select(Occupancy).where(Occupancy.hire_id == hire.id))
    occupancy.ends_at -= timedelta(hours=1)  # a shorter one does not overlap itself
    db.session.commit()
    assert db.session.scalar(select(func.count(Occupancy.id)).where(
        Occupancy.car_id == hire.car_id)) == 3


def _free_at_first_look(monkeypatch, module, name, answer):
    """The race window: the service's own check sees the car free (its first call answers
    `answer`), as when another request commits between that check and the service's write."""
    real = getattr(module, name)
    calls = []

    def looked(*args, **kwargs):
        calls.append(args)
        return answer if len(calls) == 1 else real(*args, **kwargs)
    monkeypatch.setattr(module, name, looked)


def test_a_maintenance_block_that_lost_the_race_is_refused_by_the_database(booked, monkeypatch):
    hire, _ = booked
    staff = factories.make_user("admin")
    _free_at_first_look(monkeypatch, maintenance, "_overlapping", [])
    with pytest.raises(fleet_errors.MaintenanceCollision) as refused:
        maintenance.add_block(hire.car, kind="service", starts_at=hire.start_at + timedelta(hours=1),
                              ends_at=hire.start_at + timedelta(hours=5), note="", by=staff,
                              now=utcnow())
    assert refused.value.errors[""] == ("The car is not free then: it overlaps 1 hire. "
                                        "Move the hires to another car first.")
    assert refused.value.hires == [hire]
    db.session.expire_all()
    assert db.session.scalar(select(func.count(MaintenanceBlock.id))) == 0


def test_a_hire_moved_onto_a_car_taken_meanwhile_is_refused_by_the_database(booked, monkeypatch):
    hire, other = booked
    staff = factories.make_user("admin")
    factories.make_hire(car=other, start=hire.start_at + timedelta(hours=3), days=1)
    _free_at_first_look(monkeypatch, hire_moves, "free_cars_for", [other])
    with pytest.raises(fleet_errors.FleetError) as refused:
        hire_moves.move_hire(hire, other, by=staff, now=utcnow())
    assert "was just taken" in refused.value.errors["to_car_id"]
    db.session.expire_all()
    assert db.session.get(Hire, hire.id).car_id == hire.car_id


def test_a_change_of_dates_that_lost_the_race_gets_the_friendly_answer(booked, shop, monkeypatch):
    hire, _ = booked
    factories.make_hire(car=hire.car, start=hire.end_at + timedelta(hours=12), days=2)
    now = utcnow()
    trip = trips.make_trip(pickup_branch_id=shop.lhr.id, return_branch_id=shop.lhr.id,
                           pickup_local=local_day(10), return_local=local_day(13), now=now)
    _free_at_first_look(monkeypatch, changes, "is_free", True)
    with pytest.raises(errors.CarTaken) as taken:
        changes.change_hire(hire, trip, {}, by=hire.customer, now=now)
    assert "just taken" in taken.value.message
    db.session.expire_all()
    assert db.session.get(Hire, hire.id).end_at == hire.start_at + timedelta(days=2)


def test_the_hold_that_lost_the_race_gets_the_friendly_answer_with_alternatives(booked, shop,
                                                                               monkeypatch):
    hire, other = booked
    now = utcnow()
    trip = trips.make_trip(pickup_branch_id=shop.lhr.id, return_branch_id=shop.lhr.id,
                           pickup_local=local_day(11), return_local=local_day(13), now=now)
    _free_at_first_look(monkeypatch, holds, "is_free", True)
    with pytest.raises(errors.CarTaken) as taken:
        holds.create_hold(customer=factories.make_user("customer"), car_id=hire.car_id,
                          trip=trip, extras={}, idempotency_key="lost-the-race",
                          expected_total_pence=None, now=now)
    assert taken.value.message == TAKEN
    assert [offer.car.id for offer in taken.value.alternatives] == [other.id]
    assert db.session.scalar(select(func.count(Hire.id))) == 1

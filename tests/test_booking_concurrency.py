"""No double booking under real concurrency (PostgreSQL): many customers at once through
the HTTP layer, the exclusion constraint as the final guard, and the scheduler run twice
at the same moment.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.booking import holds, trips
from app.booking.errors import CarTaken
from app.extensions import db
from app.jobs.booking import tick
from app.models import Hire, HireState, Occupancy, OutboundEmail, utcnow
from app.accounts import sessions
from tests import factories
from tests.test_booking import HIDDEN_RE, as_utc, local_day, shop, trip_args  # noqa: F401

RACERS = 50


def _signed_in_client(app, user):
    client = app.test_client()
    sessions.start(user)
    with client.session_transaction() as session:
        session["_user_id"] = user.get_id()
        session["_fresh"] = True
    return client


def _confirm_all_at_once(served, posts) -> list[tuple[int, str]]:
    """POST every (client, url, form) at the same instant, one thread each; (status, body)s."""
    barrier = threading.Barrier(len(posts))

    def race(post):
        client, url, form = post
        barrier.wait(timeout=120)
        response = client.post(url, data=form)
        return response.status_code, response.get_data(as_text=True)

    with ThreadPoolExecutor(max_workers=len(posts)) as pool:
        results = list(pool.map(race, posts))
    with served.app_context():
        db.engine.dispose()
    return results


@pytest.mark.postgres
def test_fifty_customers_racing_for_one_car_make_exactly_one_hire(app, make_app, shop):
    served = make_app(SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 10, "max_overflow": 30,
                                                 "pool_timeout": 120, "pool_pre_ping": True})
    factories.make_car(car_class=shop.compact, branch=shop.lhr, make="Ford", model="Focus")
    racers = []
    for i in range(RACERS):
        user = factories.make_user("customer")
        client = _signed_in_client(served, user)
        # Overlapping periods: pickups spread over the morning, all returning two days later.
        start = local_day(10, hour=9 + i % 8, minute=(i * 7) % 60)
        args = trip_args(shop, start, local_day(12, hour=9 + (i * 3) % 8))
        page = client.get(f"/book/cars/{shop.car.id}/review", query_string=args)
        assert page.status_code == 200
        form = dict(HIDDEN_RE.findall(page.get_data(as_text=True)))
        assert form.get("idempotency_key")
        racers.append((client, form))

    confirm_url = f"/book/cars/{shop.car.id}/confirm"
    results = _confirm_all_at_once(served, [(client, confirm_url, form) for client, form in racers])

    statuses = sorted(status for status, _ in results)
    assert all(status < 500 for status in statuses), statuses
    assert statuses.count(303) == 1, statuses
    losers = [body for status, body in results if status != 303]
    assert all(status == 409 for status, _ in results if status != 303), statuses
    assert all("Sorry, that car was just taken for those dates." in body for body in losers)
    assert all("Ford Focus" in body for body in losers)  # with an alternative to choose
    db.session.expire_all()
    assert db.session.scalar(select(func.count(Hire.id))) == 1
    assert db.session.scalar(select(func.count(Occupancy.id)).where(
        Occupancy.car_id == shop.car.id)) == 1


@pytest.mark.postgres
def test_the_exclusion_constraint_loser_gets_the_same_friendly_answer(app, shop, monkeypatch):
    """Both passed the check before either committed: PostgreSQL refuses the second."""
    first, second = factories.make_user("customer"), factories.make_user("customer")
    other = factories.make_car(car_class=shop.compact, branch=shop.lhr, make="Ford", model="Focus")
    now = utcnow()
    trip = trips.make_trip(pickup_branch_id=shop.lhr.id, return_branch_id=shop.lhr.id,
                           pickup_local=local_day(10), return_local=local_day(12), now=now)
    holds.create_hold(customer=first, car_id=shop.car.id, trip=trip, extras={},
                      idempotency_key="first-key", expected_total_pence=None, now=now)
    monkeypatch.setattr(holds, "is_free", lambda *args, **kwargs: True)  # the race window
    with pytest.raises(CarTaken) as taken:
        holds.create_hold(customer=second, car_id=shop.car.id, trip=trip, extras={},
                          idempotency_key="second-key", expected_total_pence=None, now=now)
    assert taken.value.message == "Sorry, that car was just taken for those dates."
    assert [o.car.id for o in taken.value.alternatives] == [other.id]
    assert db.session.scalar(select(func.count(Hire.id))) == 1


@pytest.mark.postgres
def test_two_scheduler_runs_at_once_expire_each_hold_once(app, make_app, shop):
    served = make_app()
    now = utcnow()
    cars = [factories.make_car(car_class=shop.compact, branch=shop.lhr) for _ in range(6)]
    held = []
    for car in cars:
        hire = factories.make_hire(car=car, start=as_utc(local_day(10)), days=2, state=HireState.HELD)
        hire.hold_expires_at = now - timedelta(minutes=1)
        held.append(hire.id)
    db.session.commit()
    barrier = threading.Barrier(2)

    def run():
        with served.app_context():
            barrier.wait(timeout=60)
            try:
                return tick(now.isoformat())
            finally:
                db.session.remove()

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = [f.result() for f in [pool.submit(run), pool.submit(run)]]
    with served.app_context():
        db.engine.dispose()
    assert sum(r["expired"] for r in results) == len(held)
    db.session.expire_all()
    states = db.session.scalars(select(Hire.state).where(Hire.id.in_(held))).all()
    assert states == ["expired"] * len(held)
    keys = db.session.scalars(select(OutboundEmail.idempotency_key)).all()
    assert sorted(keys) == sorted(f"hire:{i}:expired" for i in held)
    changes = db.session.scalar(select(func.count()).select_from(Hire).join(Hire.state_changes)
                                .where(Hire.id.in_(held)))
    assert changes == len(held)  # one expiry each (make_hire records no creation row)


@pytest.mark.postgres
def test_one_customer_confirming_many_cars_at_once_gets_at_most_the_allowed_holds(app, make_app,
                                                                                  shop):
    served = make_app(SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 10, "max_overflow": 10,
                                                 "pool_timeout": 120, "pool_pre_ping": True})
    allowed = served.config["MAX_HOLDS_PER_CUSTOMER"]
    tabs = allowed + 6
    cars = [shop.car] + [factories.make_car(car_class=shop.compact, branch=shop.lhr, make="Ford",
                                            model=f"Focus{i}") for i in range(tabs - 1)]
    customer = factories.make_user("customer")
    args = trip_args(shop, local_day(10), local_day(12))
    racers = []
    for car in cars:  # one browser tab per car, each at its confirm step
        client = _signed_in_client(served, customer)
        page = client.get(f"/book/cars/{car.id}/review", query_string=args)
        assert page.status_code == 200
        racers.append((client, car.id, dict(HIDDEN_RE.findall(page.get_data(as_text=True)))))

    results = _confirm_all_at_once(served, [(client, f"/book/cars/{car_id}/confirm", form)
                                            for client, car_id, form in racers])

    statuses = sorted(status for status, _ in results)
    assert statuses.count(303) == allowed, statuses
    refused = [body for status, body in results if status != 303]
    assert all(status == 422 for status, _ in results if status != 303), statuses
    assert all("waiting for payment" in body for body in refused)
    db.session.expire_all()
    assert db.session.scalar(select(func.count(Hire.id)).where(
        Hire.customer_id == customer.id, Hire.state == HireState.HELD.value)) == allowed

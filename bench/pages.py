"""The signed-in search page and car page as the benchmarks ask for them: a database with a
full page of cars at the first branch, a customer's session, the two paths, and the SQL
round trips a page costs (SQLAlchemy's `before_cursor_execute`, counted in-process).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from datetime import date, timedelta
from urllib.parse import urlencode

EXTRA_CARS = 30  # on top of the demo's 10 at the first branch: more than a page (24)
ROUND_TRIPS_TARGET = 2  # issue 19: the search page and the car page, steady state


def make_app(url: str, **overrides):
    """An app on `url` with production's code paths but no Redis, jobs run in-process."""
    from app import create_app
    return create_app({
        "SQLALCHEMY_DATABASE_URI": url, "ENV_NAME": "test", "TESTING": False,
        "SECRET_KEY": "bench-only-secret-key-not-for-production", "JOBS_MODE": "sync",
        "REDIS_URL": "", "RATELIMIT_STORAGE_URI": "memory://", "MAIL_BACKEND": "outbox",
        "LOG_LEVEL": "WARNING", "PUBLIC_PAGE_CACHE_SECONDS": 0, **overrides,
    })


def add_cars(n: int = EXTRA_CARS) -> None:
    """`n` more cars at the first branch (by name), in every class, some with their own rate."""
    from sqlalchemy import select

    from app.extensions import db
    from app.models import Branch, Car, CarClass
    branch = db.session.scalars(select(Branch).order_by(Branch.name)).first()
    classes = list(db.session.scalars(select(CarClass).order_by(CarClass.id)))
    if db.session.scalar(select(Car).where(Car.plate == "BENCH1")) is not None:
        return
    for i in range(1, n + 1):
        db.session.add(Car(
            plate=f"BENCH{i}", vin=f"BENCHVIN{i:09d}", make="Bench", model=f"Model {i}",
            year=2024, car_class=classes[i % len(classes)], seats=4 + i % 4, doors=5,
            transmission=("manual", "automatic")[i % 2],
            fuel_type=("petrol", "diesel", "hybrid", "electric")[i % 4],
            home_branch=branch, daily_rate_override_pence=3100 + 100 * i if i % 5 == 0 else None))
    db.session.commit()


def search_args(app) -> dict:
    """A trip a week ahead from the first branch (on days it opens): the search a visitor
    would make."""
    from sqlalchemy import select

    from app.extensions import db
    from app.models import Branch
    with app.app_context():
        branch = db.session.scalars(select(Branch).order_by(Branch.name)).first()
        start = date.today() + timedelta(days=8)
        while 6 in (start.weekday(), (start + timedelta(days=3)).weekday()):
            start += timedelta(days=1)  # the demo branches close on Sundays
        args = {"pickup_branch": branch.id, "return_branch": branch.id,
                "pickup_at": f"{start.isoformat()}T10:00",
                "return_at": f"{(start + timedelta(days=3)).isoformat()}T10:00"}
        db.session.remove()
    return args


def prepare(app) -> tuple[dict[str, str], tuple[str, str]]:
    """Schema, demo data, more cars; returns the page paths and a customer's session cookie."""
    from flask_migrate import upgrade
    from sqlalchemy import select

    from app.demo import load_demo
    from app.extensions import db
    from app.models import User
    from bench import common
    with app.app_context():
        upgrade(revision="heads")
        load_demo()
        add_cars()
        customer = db.session.scalar(select(User).where(User.email == "customer@demo.acme")).id
        db.session.remove()
    session = common.signed_in_sessions(app, [customer])[0]
    name, value = session.cookie.split("=", 1)
    search = "/book/?" + urlencode(search_args(app))
    client = app.test_client()
    client.set_cookie(name, value, domain="localhost")
    page = client.get(search)
    assert page.status_code == 200, page.status_code
    car = re.search(r'href="(/book/cars/\d+\?[^"]+)"', page.get_data(as_text=True)).group(1)
    return {"search": search, "car": car.replace("&amp;", "&")}, (name, value)


def measure(app, client, path: str, **kwargs) -> list[str]:
    """The SQL statements one request for `path` sends, in the steady state (asked twice first)."""
    for _ in range(2):
        response = client.get(path, **kwargs)
        assert response.status_code == 200, (path, response.status_code)
    with statements_sent(app) as statements:
        response = client.get(path, **kwargs)
    assert response.status_code == 200, response.status_code
    return statements


@contextmanager
def statements_sent(app):
    """The SQL statements `app` sends meanwhile (SQLAlchemy's events), and "COMMIT" where a
    transaction was committed, in a list filled as they go."""
    from sqlalchemy import event

    from app.extensions import db
    with app.app_context():
        engine = db.engine
    sent: list[str] = []

    def statement(conn, cursor, text, *args):
        sent.append(text)

    def committed(conn):
        sent.append("COMMIT")

    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", committed)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", statement)
        event.remove(engine, "commit", committed)

"""A request opens a transaction only when it writes (app/transactions.py, issue 19).

On PostgreSQL a request's reads go without `BEGIN` and `ROLLBACK` (two round trips a page, and
the driver's prepared statements, which a `ROLLBACK` throws away): a page's, and a form post's
before its first write and after its commit. The first write or row lock opens the
transaction, which is then committed or rolled back as every request's is.
"""

from __future__ import annotations

import re

import pytest
from psycopg.errors import LockNotAvailable
from psycopg.pq import TransactionStatus
from sqlalchemy import event, select, text
from sqlalchemy.exc import OperationalError

from app.extensions import db
from app.models import Car, CarClass, Hire
from app.transactions import only_reads
from tests import factories
from tests.conftest import add_public_route, csrf_token, statements_sent
from tests.test_booking import confirm, review
from tests.test_refdata import first_car_url, search_url, shop  # noqa: F401  (a fixture)

pytestmark = pytest.mark.postgres


def _driver_state():
    """(autocommit, the server's transaction status) of the request's connection now."""
    driver = db.session.connection().connection.driver_connection
    return driver.autocommit, driver.info.transaction_status


def wire_of(app, request) -> list[tuple]:
    """For each statement `request()` sends: (in autocommit, transaction status before it)."""
    def record(cursor, statement):
        return cursor.connection.autocommit, cursor.connection.info.transaction_status, statement[:60]

    with statements_sent(app, record) as seen:
        response = request()
    assert response.status_code < 400, response.get_data(as_text=True)[-2000:]
    return seen


def test_pages_and_posts_read_without_a_transaction_and_write_in_one(app, client, auth, shop):  # noqa: F811
    auth.sign_in_as("customer")
    search, car = search_url(shop), first_car_url(client, shop)
    for path in (search, car, "/book/mine", search):
        statements = wire_of(app, lambda: client.get(path))
        assert statements, path
        # No BEGIN went before any of them: in autocommit, and no transaction open.
        assert all(s[:2] == (True, TransactionStatus.IDLE) for s in statements), (path, statements)
    # A form post reads the same way, and its first write opens the transaction (a BEGIN went
    # before the DELETE), which the post commits: the device is signed out.
    token = csrf_token(client, "/book/mine")
    statements = wire_of(app, lambda: client.post("/account/sign-out", data={"csrf_token": token}))
    reads = [s for s in statements if s[2].startswith("SELECT")]
    [delete] = [s for s in statements if s[2].startswith("DELETE")]  # the device's session
    assert reads and all(s[:2] == (True, TransactionStatus.IDLE) for s in reads), statements
    assert delete[:2] == (True, TransactionStatus.INTRANS), statements
    assert client.get("/book/mine").status_code == 302  # to sign in again


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_request_that_writes_does_it_in_one_transaction_committed_or_rolled_back(
        app, client, method):
    seen = {}

    def write_then_fail():
        db.session.add(CarClass(code="ghost", name="Ghost", daily_rate_pence=100, deposit_pence=100))
        db.session.flush()
        seen["while writing"] = _driver_state()
        db.session.add(CarClass(code="ghost2", name="Ghost 2", daily_rate_pence=100, deposit_pence=100))
        db.session.flush()
        raise RuntimeError("the request fails after writing")

    def write_and_commit():
        before = db.session.scalar(select(CarClass.id).limit(1))  # a read: no transaction
        seen["after a read"] = _driver_state()
        db.session.add(CarClass(code="kept", name="Kept", daily_rate_pence=100, deposit_pence=100))
        db.session.add(CarClass(code="kept2", name="Kept 2", daily_rate_pence=100, deposit_pence=100))
        db.session.commit()
        kept = db.session.scalar(select(CarClass.id).where(CarClass.code == "kept"))
        # Reading after the commit opened no transaction: nothing to roll back at the end.
        seen["after the commit and a read"] = _driver_state()
        return f"ok {before} {kept}"

    add_public_route(app, "/t/write-then-fail", write_then_fail)
    add_public_route(app, "/t/write-and-commit", write_and_commit)
    data = {"csrf_token": csrf_token(client, "/account/sign-in")} if method == "POST" else None

    assert client.open("/t/write-then-fail", method=method, data=data).status_code == 500
    assert seen["while writing"] == (True, TransactionStatus.INTRANS)  # a BEGIN went first
    assert db.session.scalars(select(CarClass.code).where(CarClass.code.like("ghost%"))).all() == []

    assert client.open("/t/write-and-commit", method=method, data=data).status_code == 200
    assert seen["after a read"] == (True, TransactionStatus.IDLE)
    assert seen["after the commit and a read"] == (True, TransactionStatus.IDLE)
    assert sorted(db.session.scalars(select(CarClass.code).where(CarClass.code.like("kept%")))) \
        == ["kept", "kept2"]


def test_a_row_locked_by_a_get_stays_locked_until_the_request_ends(app, client):
    car = factories.make_car()
    db.session.commit()
    car_id = car.id
    seen = {}

    def other_connection_can_lock() -> bool:
        with db.engine.connect() as other:  # another transaction, as another request's
            try:
                other.execute(text("SELECT id FROM cars WHERE id = :id FOR UPDATE NOWAIT"),
                              {"id": car_id})
                return True
            except OperationalError as exc:
                assert isinstance(exc.orig, LockNotAvailable)
                return False
            finally:
                other.rollback()

    def lock_a_car():
        db.session.execute(select(Car.id).where(Car.id == car_id).with_for_update())
        db.session.scalar(select(Car.plate).where(Car.id == car_id))  # a later read
        seen["locked elsewhere"] = not other_connection_can_lock()
        return "ok"

    add_public_route(app, "/t/lock", lock_a_car)
    assert client.get("/t/lock").status_code == 200
    assert seen["locked elsewhere"] is True  # held after its statement, to the request's end
    with app.app_context():
        assert other_connection_can_lock()  # and let go when the request ended


def test_the_confirm_post_sends_the_customer_to_pay_without_loading_the_hire_again(
        app, client, auth, shop):  # noqa: F811
    """The hold is committed and the answer (the payment page of that hire) is made from what
    the request wrote: no transaction is begun after the commit to read the hire back."""
    auth.sign_in_as("customer")
    car_id = int(re.search(r"/book/cars/(\d+)", first_car_url(client, shop)).group(1))
    response, form, _ = review(client, car_id, shop.args)
    assert response.status_code == 200
    with app.app_context():
        engine = db.engine
    with statements_sent(app, lambda cursor, statement: statement.split()[0]) as seen:
        def committed(conn):
            seen.append("COMMIT")

        event.listen(engine, "commit", committed)
        try:
            response = confirm(client, car_id, form)
        finally:
            event.remove(engine, "commit", committed)
    assert response.status_code == 303, response.get_data(as_text=True)[-2000:]
    hire = db.session.scalars(select(Hire)).one()
    assert response.headers["Location"].endswith(f"/pay/{hire.reference}")
    assert hire.state == "held"
    assert seen.count("COMMIT") == 1 and seen[-1] == "COMMIT", seen  # nothing after it


@pytest.mark.parametrize("statement, reads", [
    ("SELECT cars.id FROM cars WHERE cars.id = %(id)s", True),
    ("  select 1", True),
    ("WITH buckets AS (SELECT 1) SELECT * FROM buckets", True),
    ("SELECT cars.id FROM cars WHERE cars.id = %(id)s FOR UPDATE", False),
    ("SELECT hires.id FROM hires FOR NO KEY UPDATE OF hires SKIP LOCKED", False),
    ("SELECT 1 FOR KEY SHARE", False),
    ("SELECT name FROM cars WHERE model = 'FOR UPDATE ME'", False),  # careful rather than sorry
    ("WITH gone AS (DELETE FROM holds RETURNING id) SELECT count(*) FROM gone", False),
    ("INSERT INTO cars (plate) VALUES (%(plate)s) RETURNING cars.id", False),
    ("UPDATE hires SET state = %(state)s", False),
    ("DELETE FROM user_sessions WHERE id = %(id)s", False),
    ("SAVEPOINT sa_savepoint_1", False),
    ("SET LOCAL statement_timeout = 1000", False),
])
def test_what_counts_as_a_read(statement, reads):
    assert only_reads(statement) is reads

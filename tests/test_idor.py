"""No insecure direct object reference: a customer who knows (or guesses) another customer's
booking reference, refund id or receipt URL gets nothing, and changes nothing.

The customer routes that take an object's id are found from the URL map, so a route added
later is covered without touching this file.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import CryptoRefund, DataExport, Hire, HireState, HireStateChange, OutboundEmail, Payment
from app.security import audience_for
from tests import factories
from tests.conftest import AuthActions, csrf_token

REFUSED = (403, 404)
START = datetime(2030, 6, 1, 9, tzinfo=timezone.utc)
# Route arguments that name someone's object (anything else, e.g. a car id, is public).
OBJECT_ARGS = {"reference", "refund_id", "payment_id", "hire_id", "receipt_id", "booking_id", "export_id"}
PHOTO = "0" * 64 + ".jpg"  # a licence photo's name (the hire's reference is what it hangs on)


@pytest.fixture
def victim(app):
    """Bob: a held hire (still to pay), a confirmed and paid one, and a crypto refund."""
    bob = factories.make_user(email="bob@example.com")
    car = factories.make_car()
    held = factories.make_hire(car=car, customer=bob, start=START, state=HireState.HELD)
    held.hold_expires_at = datetime.now(timezone.utc) + timedelta(minutes=15)
    paid = factories.make_hire(car=car, customer=bob, start=START + timedelta(days=10))
    charge = Payment(hire_id=paid.id, method="card", kind="charge", state="succeeded",
                     amount_pence=paid.total_pence, idempotency_key=f"hire:{paid.id}:charge:1",
                     provider_ref="pi_bob")
    db.session.add(charge)
    db.session.flush()
    refund = CryptoRefund(hire_id=paid.id, idempotency_key=f"hire:{paid.id}:crypto-refund:1",
                          amount_wei=10**15, amount_pence=250, reason="overpaid",
                          state="awaiting_address",
                          suggested_address="0x" + "b0" * 20)
    db.session.add(refund)
    export = DataExport(user_id=bob.id, state="ready", filename="0" * 32 + ".zip", size_bytes=1,
                        ready_at=START, expires_at=datetime.now(timezone.utc) + timedelta(hours=1))
    db.session.add(export)
    db.session.commit()
    return {"user": bob, "held": held, "paid": paid, "charge": charge, "refund": refund, "export": export}


def _snapshot() -> tuple:
    """Everything an attacker's request could have changed."""
    return (
        tuple(db.session.execute(select(Hire.id, Hire.state, Hire.start_at, Hire.end_at,
                                        Hire.total_pence, Hire.version).order_by(Hire.id)).all()),
        tuple(db.session.execute(select(Payment.id, Payment.state, Payment.amount_pence)
                                 .order_by(Payment.id)).all()),
        tuple(db.session.execute(select(CryptoRefund.id, CryptoRefund.state,
                                        CryptoRefund.to_address)).all()),
        db.session.scalar(select(func.count()).select_from(HireStateChange)),
        db.session.scalar(select(func.count()).select_from(OutboundEmail)),
    )


def _object_routes(app) -> list:
    """(rule, methods) of every route a customer may call that names an object."""
    routes = []
    for rule in app.url_map.iter_rules():
        audience = audience_for(app, rule.endpoint) or frozenset()
        if "customer" in audience and rule.arguments & OBJECT_ARGS:
            routes.append((rule, sorted(rule.methods & {"GET", "POST"})))
    return routes


def _url(rule, values: dict) -> str:
    missing = rule.arguments - values.keys()
    assert not missing, f"{rule.rule}: teach this test the argument(s) {missing}"
    return rule.build({k: values[k] for k in rule.arguments})[1]


def test_the_routes_under_test_include_every_booking_payment_and_receipt_page(app):
    endpoints = {rule.endpoint for rule, _ in _object_routes(app)}
    assert {"booking.hire_detail", "booking.cancel", "booking.change", "payments.start",
            "payments.card", "payments.status", "payments.receipt"} <= endpoints


def test_another_customers_objects_are_refused_on_every_route_and_nothing_changes(app, victim):
    bob = victim
    alice_client = app.test_client()
    alice = AuthActions(alice_client).sign_in_as("customer")
    own = factories.make_hire(customer=alice, start=START + timedelta(days=40))
    token = csrf_token(alice_client, "/book/mine")
    before = _snapshot()
    failures = []
    for rule, methods in _object_routes(app):
        for hire_key in ("held", "paid"):
            variants = [
                # Bob's own objects, his reference as printed and lower-cased.
                {"reference": bob[hire_key].reference, "refund_id": bob["refund"].id,
                 "payment_id": bob["charge"].id, "name": PHOTO, "export_id": bob["export"].id, "number": 1},
                {"reference": bob[hire_key].reference.lower(), "refund_id": bob["refund"].id,
                 "payment_id": bob["charge"].id, "name": PHOTO, "export_id": bob["export"].id, "number": 1},
                # Alice's own booking with Bob's refund or payment id hung under it.
                {"reference": own.reference, "refund_id": bob["refund"].id,
                 "payment_id": bob["charge"].id, "name": PHOTO, "export_id": bob["export"].id, "number": 1},
            ]
            for values in variants:
                if values["reference"] == own.reference and not (rule.arguments - {"reference", "name", "number"}):
                    continue  # her own booking, nothing of Bob's in the URL
                url = _url(rule, values)
                for method in methods:
                    if method == "GET":
                        response = alice_client.get(url)
                    else:
                        response = alice_client.post(
                            url, data={"csrf_token": token, "address": "0x" + "a1" * 20,
                                       "amount_pence": "1", "pickup_at": "2030-07-01T10:00",
                                       "return_at": "2030-07-03T10:00"},
                            headers={"X-CSRFToken": token})
                    if response.status_code not in REFUSED:
                        failures.append(f"{method} {url} -> {response.status_code}")
                    body = response.get_data(as_text=True)
                    if bob["user"].email in body or "pi_bob" in body:
                        failures.append(f"{method} {url} shows Bob's details")
    assert failures == []
    db.session.expire_all()
    assert _snapshot() == before, "a refused request changed something"


def test_the_owner_sees_the_same_pages_so_the_refusals_above_are_about_ownership(app, victim):
    client = app.test_client()
    AuthActions(client).sign_in(victim["user"].email)
    held, paid = victim["held"].reference, victim["paid"].reference
    for url in (f"/book/hires/{held}", f"/book/hires/{paid}", f"/pay/{held}",
                f"/pay/{paid}/receipt", f"/book/hires/{paid}/cancel"):
        assert client.get(url).status_code == 200, url


def test_staff_may_read_any_receipt_but_not_act_as_the_customer(app, victim):
    client = app.test_client()
    AuthActions(client).sign_in_as("staff")
    paid = victim["paid"].reference
    assert client.get(f"/pay/{paid}/receipt").status_code == 200
    for url in (f"/book/hires/{paid}", f"/book/hires/{paid}/cancel", f"/pay/{paid}/card"):
        assert client.get(url).status_code == 403, url


def test_unknown_and_malformed_references_look_exactly_like_someone_elses(app, victim):
    """Refusals do not tell an attacker which references exist."""
    client = app.test_client()
    AuthActions(client).sign_in_as("customer")
    theirs = client.get(f"/book/hires/{victim['paid'].reference}")
    for reference in ("ACM999999", "'; DROP TABLE hires; --", "..%2F..%2Fetc%2Fpasswd", "A" * 500):
        response = client.get(f"/book/hires/{reference}")
        assert response.status_code == theirs.status_code == 404, reference

"""The audit helper other areas call, and the admins' audit log viewer with CSV export."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone

from flask import g
from sqlalchemy import select

from app.audit import changes, record
from app.extensions import db
from app.models import AuditRecord, HireState
from tests import factories

JAN_10 = datetime(2031, 1, 10, 12, tzinfo=timezone.utc)
JAN_20 = datetime(2031, 1, 20, 12, tzinfo=timezone.utc)


def test_record_names_the_object_and_keeps_the_request_id(app):
    actor = factories.make_user("staff")
    car = factories.make_car()
    with app.test_request_context("/"):
        g.request_id = "abc123"
        entry = record(actor, "car.retired", car, {"status": "available"},
                       {"status": "retired", "at": JAN_10, "state": HireState.CLOSED})
        db.session.commit()
    assert (entry.object_type, entry.object_id, entry.actor_id, entry.request_id) == (
        "car", str(car.id), actor.id, "abc123")
    assert entry.new == {"status": "retired", "at": JAN_10.isoformat(), "state": "closed"}
    # In a job (its own app context, no request) there is no request id, and the actor may
    # be the system.
    with app.app_context():
        system = record(None, "hire.expired", ("hire", 42))
        db.session.commit()
        assert (system.actor_id, system.object_type, system.object_id, system.request_id) == (
            None, "hire", "42", "")
    assert changes({"a": 1, "b": 2}, {"a": 1, "b": 3}) == ({"b": 2}, {"b": 3})


def test_a_request_records_its_own_id(client, auth):
    auth.sign_in_as("staff")
    car = factories.make_car()
    response = client.post(f"/fleet/cars/{car.id}/retire", headers={"X-Request-ID": "req42abc"},
                           data={"csrf_token": _token(client, f"/fleet/cars/{car.id}")})
    assert response.status_code == 303
    entry = db.session.scalar(select(AuditRecord).where(AuditRecord.action == "car.retired"))
    assert entry.request_id == "req42abc"


def _token(client, url):
    from tests.conftest import csrf_token
    return csrf_token(client, url)


def _seed():
    alice = factories.make_user("staff", full_name="Alice Fleet", email="alice@acme.example")
    bob = factories.make_user("admin", full_name="Bob Boss", email="bob@acme.example")
    car = factories.make_car(plate="AB12CDE")
    other_car = factories.make_car(plate="CD34EFG")
    hire = factories.make_hire(car=car)
    record(alice, "car.updated", car, {"odometer_miles": 100}, {"odometer_miles": 200}, at=JAN_10)
    record(bob, "price.class_rates_changed", car.car_class, {"daily_rate_pence": 3900},
           {"daily_rate_pence": 4500}, at=JAN_20)
    record(alice, "hire.car_moved", hire, {"plate": "=HYPERLINK(\"x\")"}, {"plate": "AB12CDE"}, at=JAN_20)
    record(bob, "car.retired", other_car, {"status": "available"}, {"status": "retired"}, at=JAN_20)
    db.session.commit()
    return alice, bob, car, hire


def _actions(client, **params) -> list[str]:
    page = client.get("/admin/audit", query_string=params).get_data(as_text=True)
    import re
    return re.findall(r"<td><code>([a-z_.]+)</code></td>", page)


def test_filter_by_person_hire_car_action_and_date(client, auth):
    auth.sign_in_as("admin")
    alice, bob, car, hire = _seed()
    assert _actions(client, person="alice") == ["hire.car_moved", "car.updated"]
    assert _actions(client, person="BOB@acme") == ["car.retired", "price.class_rates_changed"]
    assert _actions(client, hire=hire.reference.lower()) == ["hire.car_moved"]
    assert _actions(client, car="ab12 cde") == ["hire.car_moved", "car.updated"]
    assert _actions(client, action="car.retired") == ["car.retired"]
    assert _actions(client, date_from="2031-01-01", date_to="2031-01-15") == ["car.updated"]
    assert _actions(client, date_from="2031-01-15") == ["car.retired", "hire.car_moved",
                                                        "price.class_rates_changed"]
    page = client.get("/admin/audit", query_string={"car": "ZZ99ZZZ"}).get_data(as_text=True)
    assert "no car ZZ99ZZZ" in page
    fragment = client.get("/admin/audit?person=alice", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert fragment.lstrip().startswith('<div id="audit-results"')


def test_csv_export_matches_the_filters_and_is_safe_in_spreadsheets(client, auth):
    auth.sign_in_as("admin")
    _seed()
    response = client.get("/admin/audit.csv?person=alice")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0][:4] == ["at (UTC)", "person", "email", "action"]
    assert [r[3] for r in rows[1:]] == ["car.updated", "hire.car_moved"]
    moved = rows[2]
    assert moved[1] == "Alice Fleet" and moved[2] == "alice@acme.example"
    # A cell that would start a formula is defused; the JSON column starts with "{" anyway.
    assert moved[6].startswith("{") and "HYPERLINK" in moved[6]
    assert not any(cell.startswith("=") for row in rows for cell in row)


def test_filters_with_control_characters_or_unknown_actions_are_refused_with_a_message(client, auth):
    auth.sign_in_as("admin")
    _seed()
    for params in ({"person": "al\x00ice"}, {"hire": "\x00"}, {"car": "AB12\x00CDE"}):
        response = client.get("/admin/audit", query_string=params, headers={"HX-Request": "true"})
        page = response.get_data(as_text=True)
        assert response.status_code == 422, params
        assert "Remove the control characters." in page
        assert page.lstrip().startswith('<div id="audit-results"')
        assert "4 records" in page  # the refused filter is left out
        csv_response = client.get("/admin/audit.csv", query_string=params)
        assert csv_response.status_code == 422
        assert "Remove the control characters." in csv_response.get_data(as_text=True)
    response = client.get("/admin/audit", query_string={"action": "car.\x00stolen"})
    assert response.status_code == 422 and "Not a valid choice" in response.get_data(as_text=True)
    response = client.get("/admin/audit", query_string={"date_from": "2031-02-01", "date_to": "2031-01-01"})
    assert response.status_code == 422
    assert "The end date is before the start date." in response.get_data(as_text=True)

"""Counter forms that cannot be fooled or misread (issue 15 §2).

- A counter step whose `version` is not a version the page was given is refused with a
  message: garbage must not skip the optimistic check that stops two tablets overwriting
  each other.
- The return screen's ids are unique and each label points at its own control (a screen
  reader announces "Part of the car" for the right form).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser

import pytest

from app.extensions import db
from app.hire_access import hire_by_reference
from app.models import HireState, Inspection
from app.counter import inspections
from app.counter.forms import STALE_PAGE
from tests import factories
from tests.test_counter import PANELS, _pickup_hire, condition, post, staff_client  # noqa: F401

GARBAGE_VERSIONS = ["abc", "1.0", "-1", "+1", " 1", "١", "1e3", "0x1", "9" * 10]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _returning_hire(staff_client):
    """An active hire back at the counter with its return condition recorded."""
    hire = factories.make_hire(car=factories.make_car(branch=staff_client.branch, odometer_miles=100),
                               start=_now() - timedelta(days=2), days=3, state=HireState.ACTIVE)
    db.session.add(Inspection(hire_id=hire.id, kind="pickup", odometer_miles=100, fuel_eighths=8,
                              checklist={}, damages=[], waivers={}, charge_lines=[],
                              condition_recorded_at=_now()))
    db.session.commit()
    insp = inspections.open_inspection(hire, "return", by=staff_client.staff, now=_now())
    inspections.record_condition(insp, by=staff_client.staff, now=_now(), odometer=150, fuel_eighths=6,
                                 checklist={p: {"state": "ok", "note": ""} for p in PANELS})
    return hire


def _refused_as_stale(response) -> None:
    assert response.status_code == 422
    assert STALE_PAGE in response.get_data(as_text=True)


@pytest.mark.parametrize("version", GARBAGE_VERSIONS)
def test_a_pickup_step_with_a_garbage_version_is_refused(staff_client, version):
    hire = _pickup_hire(staff_client.branch)
    inspections.open_inspection(hire, "pickup", by=staff_client.staff, now=_now())
    response = post(staff_client, f"/counter/hires/{hire.reference}/pickup/id-check",
                    {"id_matches": "y", "version": version})
    _refused_as_stale(response)
    db.session.expire_all()
    assert inspections.inspection(hire, "pickup").id_checked_at is None


@pytest.mark.parametrize("version", ["abc", "9" * 10])
def test_return_steps_with_a_garbage_version_are_refused(staff_client, version):
    hire = _returning_hire(staff_client)
    ref = hire.reference
    _refused_as_stale(post(staff_client, f"/counter/hires/{ref}/return/damage",
                           {"panel": "left", "amount": "50", "reason": "dent", "version": version}))
    _refused_as_stale(post(staff_client, f"/counter/hires/{ref}/return/waive",
                           {"code": "fuel", "reason": "regular", "version": version}))
    _refused_as_stale(post(staff_client, f"/counter/hires/{ref}/return/condition",
                           {**condition(160, 8), "version": version}))
    _refused_as_stale(post(staff_client, f"/counter/hires/{ref}/return/settle", {"version": version}))
    db.session.expire_all()
    insp = inspections.inspection(hire, "return")
    assert insp.damages == [] and insp.waivers == {} and insp.odometer_miles == 150
    assert hire_by_reference(ref).state == "active"


def test_the_version_the_page_gave_still_works(staff_client):
    hire = _returning_hire(staff_client)
    insp = inspections.inspection(hire, "return")
    response = post(staff_client, f"/counter/hires/{hire.reference}/return/damage",
                    {"panel": "left", "amount": "50", "reason": "dent", "version": str(insp.version)})
    assert response.status_code == 303, response.get_data(as_text=True)


class _Ids(HTMLParser):
    """Every id on the page, and every label's `for` with its text."""

    def __init__(self):
        super().__init__()
        self.ids: list[str] = []
        self.tags: dict[str, str] = {}
        self.labels: list[list] = []  # [for, text, wraps a control]
        self._label: list | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.append(attrs["id"])
            self.tags[attrs["id"]] = tag
        if tag == "label":
            self._label = [attrs.get("for"), "", False]
            self.labels.append(self._label)
        elif tag in ("input", "select", "textarea") and self._label is not None:
            self._label[2] = True

    def handle_data(self, data):
        if self._label is not None:
            self._label[1] += data

    def handle_endtag(self, tag):
        if tag == "label":
            self._label = None


def _form_of(page: str, control_id: str) -> str:
    """The action of the form that holds the element with this id."""
    before = page.split(f'id="{control_id}"', 1)[0]
    return before.rsplit("<form", 1)[1].split('action="', 1)[1].split('"', 1)[0]


def test_the_return_screen_has_unique_ids_and_labels_point_at_their_own_controls(staff_client):
    hire = _returning_hire(staff_client)
    page = staff_client.get(f"/counter/hires/{hire.reference}").get_data(as_text=True)
    assert "Add damage charge" in page and "Add photo" in page  # both forms are on the screen
    parsed = _Ids()
    parsed.feed(page)
    duplicates = [i for i, n in Counter(parsed.ids).items() if n > 1]
    assert duplicates == []
    for target, text, wraps in parsed.labels:
        if target is None:
            assert wraps, f"label {text!r} is for nothing"
            continue
        assert target in parsed.tags, f"label {text!r} points at nothing"
        assert parsed.tags[target] in ("input", "select", "textarea"), text
    part_labels = [target for target, text, _ in parsed.labels if text.strip() == "Part of the car"]
    assert len(part_labels) == 2
    forms = {_form_of(page, target) for target in part_labels}
    assert forms == {f"/counter/hires/{hire.reference}/return/photos",
                     f"/counter/hires/{hire.reference}/return/damage"}

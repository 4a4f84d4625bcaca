"""The counter board at a busy branch (issue 19): its cost does not grow with the hires it
lists, and the rows it keeps per worker (app/counter/board_rows.py) never show a hire as it was."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from app.extensions import db
from app.filters import local_time
from app.models import HireCheckin, HireState, Inspection, RentalAgreement
from tests import factories
from tests.test_refdata import statements_of

# A board request: the signed-in user (with the reference data's version), the board's one
# query, the staff menu's count of crypto payments to review. Never one more per hire.
BOARD_ROUND_TRIPS = 3


def _now() -> datetime:
    return datetime.now(timezone.utc)


@pytest.fixture
def staff_client(app, client, auth):
    client.branch = factories.make_branch()
    client.staff = auth.sign_in_as("staff", branch=client.branch)
    return client


def busy_day(branch, n: int) -> list:
    """`n` hires at `branch` of every kind the board shows: pickups later today, late to
    collect, checked in online, with a failed agreement; returns with their hand-over's time;
    overdue returns."""
    now, hires = _now(), []
    for i in range(n):
        car = factories.make_car(branch=branch)
        kind = i % 4
        if kind in (0, 1):  # a pickup: in the next hours, or late to collect
            hire = factories.make_hire(car=car, start=now + timedelta(minutes=(30 + i) if kind == 0 else -(5 + i)))
        else:  # out on hire: back later today, or overdue
            hire = factories.make_hire(car=car, start=now - timedelta(days=2), days=2, state=HireState.ACTIVE)
            hire.end_at = now + timedelta(hours=2) if kind == 2 else now - timedelta(hours=1 + i)
            hire.occupancy.ends_at = hire.end_at
            db.session.add(Inspection(hire_id=hire.id, kind="pickup", started_at=now - timedelta(days=2),
                                      completed_at=now - timedelta(days=2) + timedelta(seconds=60 + i),
                                      checklist={}, damages=[], waivers={}, charge_lines=[]))
        if i % 3 == 0 and kind in (0, 1):
            db.session.add(HireCheckin(hire_id=hire.id, completed_at=now - timedelta(hours=1)))
        if i % 5 == 0:
            db.session.add(RentalAgreement(hire_id=hire.id, state="failed", terms_version="t1"))
        hires.append(hire)
    db.session.commit()
    return hires


def test_the_boards_round_trips_do_not_grow_with_its_hires(app, staff_client):
    busy_day(staff_client.branch, 1)
    counts: dict[str, list[int]] = {"page": [], "fragment (the board refreshing itself)": []}
    for more in (0, 31):  # 1 hire, then 32 of every kind
        busy_day(staff_client.branch, more)
        for (kind, seen), headers in zip(counts.items(), ({}, {"HX-Request": "true"})):
            staff_client.get("/counter/", headers=headers)  # the steady state: reference data read
            statements = statements_of(app, staff_client, "/counter/", headers=headers)
            seen.append(len(statements))
            assert len(statements) <= BOARD_ROUND_TRIPS, statements
    assert staff_client.get("/counter/").get_data(as_text=True).count('class="board-item') == 32
    for kind, seen in counts.items():
        assert seen[0] == seen[1], (kind, seen)  # as many with 32 hires as with one


def _sections(html: str) -> dict[str, str]:
    head, _, rest = html.partition("<h2>Pickups")
    pickups, _, returns = rest.partition("<h2>Returns")
    return {"overdue": head.partition('id="board"')[2], "pickups": pickups, "returns": returns}


def _row(html: str, reference: str) -> str:
    """The board's row (its <li>) for a hire; "" when not listed."""
    at = html.find(f"<strong>{reference}</strong>")
    if at < 0:
        return ""
    return html[html.rfind("<li", 0, at):html.find("</li>", at)]


def test_the_board_shows_each_hires_state_as_it_is_now_after_a_change(app, staff_client):
    """The same worker serves the board before and after each change (its rows are kept per
    worker by what they show): every change is on the next request, nothing as it was."""
    branch, now = staff_client.branch, _now()
    pickup = factories.make_hire(car=factories.make_car(branch=branch), start=now + timedelta(hours=2), days=1)
    late = factories.make_hire(car=factories.make_car(branch=branch), start=now - timedelta(minutes=20))
    back = factories.make_hire(car=factories.make_car(branch=branch), start=now - timedelta(days=2),
                               state=HireState.ACTIVE)
    back.end_at = now + timedelta(hours=3)
    back.occupancy.ends_at = back.end_at
    gone = factories.make_hire(car=factories.make_car(branch=branch), start=now + timedelta(hours=4))
    db.session.commit()

    board = _sections(staff_client.get("/counter/").get_data(as_text=True))
    assert _row(board["pickups"], pickup.reference) and not _row(board["returns"], pickup.reference)
    assert re.search(r"late to collect: 2\d min", _row(board["pickups"], late.reference))
    assert "checked in online" not in _row(board["pickups"], late.reference)
    before = _row(board["returns"], back.reference)
    assert back.customer.full_name in before and back.car.plate in before
    assert "agreement failed" not in before
    assert _row(board["pickups"], gone.reference)

    # The pickup is handed over (now out, back this afternoon); the late customer checks in
    # online; the returning hirer's name, car plate and return time change and its agreement
    # fails; another booking is cancelled.
    pickup.transition(HireState.ACTIVE, by=staff_client.staff, why="handed over")
    pickup.end_at = now + timedelta(hours=5)
    pickup.occupancy.ends_at = pickup.end_at
    db.session.add(HireCheckin(hire_id=late.id, completed_at=now))
    back.customer.full_name, back.car.plate = "Robin Renamed", "NEW 123"
    back.end_at = now + timedelta(hours=1, minutes=17)
    back.occupancy.ends_at = back.end_at
    db.session.add(RentalAgreement(hire_id=back.id, state="failed", terms_version="t1"))
    gone.transition(HireState.CANCELLED, by=None, why="customer cancelled")
    db.session.commit()

    for headers in ({}, {"HX-Request": "true"}):  # the page, and the board refreshing itself
        board = _sections(staff_client.get("/counter/", headers=headers).get_data(as_text=True))
        assert not _row(board["pickups"], pickup.reference)
        assert local_time(pickup.end_at, fmt="%a %H:%M") in _row(board["returns"], pickup.reference)
        assert "checked in online" in _row(board["pickups"], late.reference)
        after = _row(board["returns"], back.reference)
        assert "Robin Renamed" in after and "NEW 123" in after and "agreement failed" in after
        assert local_time(back.end_at, fmt="%a %H:%M") in after
        assert before not in board["returns"]
        assert gone.reference not in "".join(board.values())

    # Out on hire and now overdue: it moves to the overdue list, marked so.
    back.end_at = now - timedelta(minutes=30)
    back.occupancy.ends_at = back.end_at
    db.session.commit()
    board = _sections(staff_client.get("/counter/").get_data(as_text=True))
    assert not _row(board["returns"], back.reference)
    assert "· overdue" in _row(board["overdue"], back.reference)

"""A hire moves only along the allowed transitions, and every move is recorded."""

from __future__ import annotations

import pytest

from app.extensions import db
from app.models import Hire, HireState, InvalidTransition
from tests import factories

# The lifecycle, written out here rather than read from the app's own table (which this checks).
STATES = ["held", "confirmed", "active", "returned", "closed", "cancelled", "expired", "no_show",
          "refused_at_pickup"]
ALLOWED = {
    ("held", "confirmed"), ("held", "cancelled"), ("held", "expired"),
    ("confirmed", "active"), ("confirmed", "cancelled"), ("confirmed", "no_show"),
    ("confirmed", "refused_at_pickup"),
    ("active", "returned"),
    ("returned", "closed"),
}  # every other move is refused: closed, cancelled, expired, no_show and refused_at_pickup are final


def test_the_states_are_the_ones_checked_here():
    assert sorted(s.value for s in HireState) == sorted(STATES)


def test_happy_path_is_recorded(app):
    staff = factories.make_user("staff")
    hire = factories.make_hire(state=HireState.HELD)
    for to in (HireState.CONFIRMED, HireState.ACTIVE, HireState.RETURNED, HireState.CLOSED):
        hire.transition(to, by=staff, why=f"to {to.value}")
    db.session.commit()
    changes = [(c.from_state, c.to_state, c.by_user_id) for c in hire.state_changes]
    assert changes == [("held", "confirmed", staff.id), ("confirmed", "active", staff.id),
                       ("active", "returned", staff.id), ("returned", "closed", staff.id)]
    assert hire.occupancy is None  # a returned hire no longer holds the car


@pytest.mark.parametrize(("start", "to"), [(a, b) for a in STATES for b in STATES],
                         ids=lambda state: state)
def test_only_allowed_transitions(start, to):
    hire = Hire(state=start)  # no database needed: the rule lives on the model
    if (start, to) in ALLOWED:
        hire.transition(HireState(to), by=None, why="test")
        assert hire.state == to
    else:
        with pytest.raises(InvalidTransition):
            hire.transition(HireState(to), by=None, why="test")
        assert hire.state == start

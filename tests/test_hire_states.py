"""A hire moves only along the allowed transitions, and every move is recorded."""

from __future__ import annotations

import pytest

from app.extensions import db
from app.models import TRANSITIONS, Hire, HireState, InvalidTransition
from tests import factories

ALL = list(HireState)


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


@pytest.mark.parametrize("start", ALL)
@pytest.mark.parametrize("to", ALL)
def test_only_allowed_transitions(start, to):
    hire = Hire(state=start.value)  # no database needed: the rule lives on the model
    if to in TRANSITIONS[start]:
        hire.transition(to, by=None, why="test")
        assert hire.state == to.value
    else:
        with pytest.raises(InvalidTransition):
            hire.transition(to, by=None, why="test")
        assert hire.state == start.value

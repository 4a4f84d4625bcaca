"""Every row whose `state` moves does so through its model's transition table and one
method (`move_to`, or `Hire.transition`): emails and Stripe's webhook events like hires,
payments and crypto payments (issue 16). Nothing outside app/models assigns `.state`.
"""

from __future__ import annotations

import ast
from datetime import datetime, timezone
from pathlib import Path

import pytest

from app.extensions import db
from app.models import OutboundEmail, StripeEvent
from app.models.mail import InvalidEmailTransition
from app.models.payments import InvalidStripeEventTransition

APP = Path(__file__).resolve().parent.parent / "app"
NOW = datetime(2030, 6, 1, 9, tzinfo=timezone.utc)


def _state_assignments(tree: ast.AST) -> list[int]:
    """Lines that set an attribute named `state` (`x.state = ...`, `x.state += ...`, a tuple
    target, or `setattr(x, "state", ...)`)."""
    found = []
    for node in ast.walk(tree):
        targets: list[ast.AST] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id == "setattr" and len(node.args) >= 2
              and isinstance(node.args[1], ast.Constant) and node.args[1].value == "state"):
            found.append(node.lineno)
        for target in targets:
            for part in ast.walk(target):
                if isinstance(part, ast.Attribute) and part.attr == "state" \
                        and isinstance(part.ctx, ast.Store):
                    found.append(node.lineno)
    return found


def test_nothing_outside_the_models_assigns_a_state():
    offenders = [f"{path.relative_to(APP.parent)}:{line}"
                 for path in sorted(APP.rglob("*.py")) if APP / "models" not in path.parents
                 for line in _state_assignments(ast.parse(path.read_text(), str(path)))]
    assert offenders == [], "move it through the model's move_to / transition instead"


def test_the_check_sees_an_assignment():
    assert _state_assignments(ast.parse("email.state = 'sent'\nrow.state, x = 'a', 1\n"
                                        "setattr(row, 'state', 'b')\n")) == [1, 2, 3]


def _email(key: str = "test:state-machine") -> OutboundEmail:
    email = OutboundEmail(idempotency_key=key, to_address="jane@example.com", subject="Hello",
                          body_text="Hello")
    db.session.add(email)
    db.session.commit()
    return email


def test_a_sent_email_records_when_and_stays_sent(app):
    email = _email()
    assert email.state == "queued"
    email.move_to("failed", error="connection refused")
    assert (email.state, email.last_error) == ("failed", "connection refused")
    email.move_to("sent", now=NOW)  # the queue's retry got it through
    db.session.commit()
    assert (email.state, email.last_error) == ("sent", "")
    assert email.sent_at == NOW
    with pytest.raises(InvalidEmailTransition):
        email.move_to("failed", error="too late")
    assert email.state == "sent" and email.last_error == ""


def test_a_webhook_event_is_applied_once(app):
    row = StripeEvent(event_id="evt_state_machine", type="refund.updated", created_at=NOW,
                      received_at=NOW, payload={})
    db.session.add(row)
    db.session.commit()
    assert row.state == "received" and row.processed_at is None
    row.move_to("ignored", now=NOW, outcome="not one of our payments")
    db.session.commit()
    assert (row.state, row.processed_at, row.outcome) == ("ignored", NOW, "not one of our payments")
    with pytest.raises(InvalidStripeEventTransition):
        row.move_to("processed", now=NOW, outcome="applied")
    assert row.state == "ignored"

"""The scheduler's tick also does payments' timed work: due deposit holds, once."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from app.extensions import db
from app.jobs.booking import tick
from app.models import Payment, utcnow
from tests.test_payments_card import customer, paid_hire, standin, stripe_app  # noqa: F401


def test_tick_places_a_due_deposit_hold_once(stripe_app, client, customer, standin):
    lead = stripe_app.config["DEPOSIT_HOLD_LEAD_DAYS"]
    due = paid_hire(client, standin, customer, start=utcnow() + timedelta(days=lead) - timedelta(hours=1))
    not_yet = paid_hire(client, standin, customer, start=utcnow() + timedelta(days=lead + 5))
    first, second = tick(), tick()
    assert (first["deposit_holds"], second["deposit_holds"]) == (1, 0)
    holds = db.session.scalars(select(Payment).where(Payment.kind == "deposit_hold")).all()
    assert [(h.hire_id, h.state) for h in holds] == [(due.id, "authorised")]
    assert not_yet.id not in {h.hire_id for h in holds}
    assert len(standin.requests("POST", "/v1/payment_intents")) == 1

"""Issue 14 §6: "My bookings" says how a booking that never went out ended, and what came back.

A cancelled booking used to sit under "Past" with its full price and no word of the refund.
Now it says when it was cancelled, what was paid, what was refunded and when (from the
payment records), and the same for a hold that expired or a hire refused at the counter.
"""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from app.extensions import db
from app.filters import local_time
from app.models import HireState, HireStateChange, Payment, utcnow
from tests import factories
from tests.conftest import post_form
from tests.test_payments_card import (customer, deliver, paid_hire, pay, standin,  # noqa: F401
                                      stripe_app)


def booking_text(client, hire) -> str:
    """The hire's entry in My bookings, as the customer reads it."""
    html = client.get("/book/mine").get_data(as_text=True)
    past = html[html.index("<h2>Past</h2>"):]
    entry = re.search(rf'<li class="booking" id="booking-{hire.reference}".*?</li>', past, re.S)
    assert entry, f"{hire.reference} is not listed under Past"
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", entry.group(0))).replace(" .", ".")


def when(value, hire) -> str:
    return local_time(value, hire.pickup_branch.timezone)


def ended_at(hire):
    return db.session.scalars(select(HireStateChange.at).where(
        HireStateChange.hire_id == hire.id, HireStateChange.to_state == hire.state)).one()


def test_a_cancelled_paid_booking_shows_when_and_the_refund_made(stripe_app, client, customer,
                                                                 standin):
    # Inside the free-cancellation window's end: the policy keeps a £50.00 fee of £117.00.
    hire = paid_hire(client, standin, customer, start=utcnow() + timedelta(hours=30))
    answer = post_form(client, f"/book/hires/{hire.reference}/cancel", {},
                       token_from=f"/book/hires/{hire.reference}/cancel")
    assert answer.status_code == 303, answer.get_data(as_text=True)
    db.session.expire_all()
    [refund] = db.session.scalars(select(Payment).where(Payment.hire_id == hire.id,
                                                        Payment.kind == "refund")).all()
    assert (refund.state, refund.amount_pence) == ("succeeded", 6700)
    made = [c.at for c in refund.state_changes if c.to_state == "succeeded"][-1]

    text = booking_text(client, hire)
    assert f"Cancelled on {when(ended_at(hire), hire)}." in text
    assert f"Paid £117.00 · refunded £67.00 on {when(made, hire)} · £50.00 kept." in text


def test_an_expired_hold_says_nothing_was_charged(client, auth):
    customer = auth.sign_in_as("customer")
    hire = factories.make_hire(customer=customer, state=HireState.HELD)
    hire.transition(HireState.EXPIRED, by=None, why="hold expired unpaid")
    db.session.commit()

    text = booking_text(client, hire)
    assert f"Hold expired on {when(ended_at(hire), hire)}." in text
    assert "Nothing was charged (the price was £117.00)." in text


def test_a_refund_still_on_its_way_says_so(client, auth):
    customer = auth.sign_in_as("customer")
    hire = factories.make_hire(customer=customer, state=HireState.CONFIRMED)
    charge = Payment(hire_id=hire.id, method="card", kind="charge", state="succeeded",
                     amount_pence=hire.total_pence, idempotency_key=f"hire:{hire.id}:checkout:1")
    db.session.add(charge)
    db.session.flush()
    asked = utcnow() - timedelta(minutes=5)
    db.session.add(Payment(hire_id=hire.id, method="card", kind="refund", state="pending",
                           amount_pence=hire.total_pence, parent_id=charge.id, created_at=asked,
                           idempotency_key=f"hire:{hire.id}:refused-refund"))
    hire.transition(HireState.REFUSED_AT_PICKUP, by=None, why="licence not shown")
    db.session.commit()

    text = booking_text(client, hire)
    assert f"Refused at pickup on {when(ended_at(hire), hire)}." in text
    assert f"Paid £117.00 · refund of £117.00 on its way (asked for on {when(asked, hire)})." in text
    assert "kept" not in text

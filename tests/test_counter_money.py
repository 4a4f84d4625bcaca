"""The counter moves money only through payments, exactly once, via the real Stripe SDK
against the stand-in: a refusal at pickup refunds in full; a settlement captures part of the
deposit hold and releases the rest."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from app.extensions import db
from app.models import Inspection, OutboundEmail, Payment, utcnow
from app import payments
from app.counter import inspections
from tests import factories
from tests.conftest import AuthActions, csrf_token
from tests.test_counter import PANELS, condition
from tests.test_payments_card import customer, paid_hire, standin, stripe_app  # noqa: F401


def staff_client(app):
    client = app.test_client()
    AuthActions(client).sign_in_as("staff")
    return client


def post(client, url, data):
    return client.post(url, data={"csrf_token": csrf_token(client, "/counter/"), **data})


def picked_up(hire) -> None:
    """The hire went out at its start with a full tank and 100 miles on the clock."""
    hire.transition(factories.HireState.ACTIVE, by=None, why="picked up")
    db.session.add(Inspection(hire_id=hire.id, kind="pickup", odometer_miles=100, fuel_eighths=8,
                              checklist={}, damages=[], waivers={}, charge_lines=[],
                              condition_recorded_at=hire.start_at))
    db.session.commit()


def kinds(hire) -> list[tuple[str, int, str]]:
    db.session.expire_all()
    return [(p.kind, p.amount_pence, p.state) for p in db.session.scalars(
        select(Payment).where(Payment.hire_id == hire.id).order_by(Payment.id))]


def test_refusal_at_pickup_refunds_once_and_frees_the_car(stripe_app, client, customer, standin):
    hire = paid_hire(client, standin, customer)
    staff = staff_client(stripe_app)
    url = f"/counter/hires/{hire.reference}/pickup/refuse"
    assert post(staff, url, {"reason": "licence expired yesterday"}).status_code == 303
    again = post(staff, url, {"reason": "double tap"})  # a second tablet, or a double tap
    assert again.status_code == 409
    db.session.expire_all()
    assert hire.state == "refused_at_pickup" and hire.occupancy is None
    refunds = [r for r in standin.objects("refund")]
    assert len(refunds) == 1 and refunds[0]["amount"] == hire.total_pence
    assert [k for k in kinds(hire) if k[0] == "refund"] == [("refund", hire.total_pence, "succeeded")]


def test_refusing_a_hire_nothing_was_paid_for_refunds_nothing_and_frees_the_car(stripe_app, client,
                                                                                 customer, standin):
    """A confirmed hire with no payment (confirmed by staff, say): refusing it is not a 500
    from asking a refund of money never taken."""
    hire = factories.make_hire(customer=customer, start=utcnow() + timedelta(hours=2))
    staff = staff_client(stripe_app)
    response = post(staff, f"/counter/hires/{hire.reference}/pickup/refuse", {"reason": "no licence"})
    assert response.status_code == 303
    db.session.expire_all()
    assert hire.state == "refused_at_pickup" and hire.occupancy is None
    assert standin.objects("refund") == [] and [k for k in kinds(hire) if k[0] == "refund"] == []


def test_settlement_captures_part_of_the_hold_and_releases_the_rest(stripe_app, client, customer, standin):
    hire = paid_hire(client, standin, customer, start=utcnow() - timedelta(days=3), days=3)
    hold = payments.place_deposit_hold(hire)
    staff = staff_client(stripe_app)
    # It was picked up three days ago with a full tank and 100 miles on the clock.
    picked_up(hire)
    ref = hire.reference
    assert post(staff, f"/counter/hires/{ref}/return/condition", condition(300, 6)).status_code == 303
    insp = inspections.inspection(hire, "return")
    owed = 2 * 1200 + 2000  # two eighths short plus the refuelling service
    assert post(staff, f"/counter/hires/{ref}/return/settle", {"version": str(insp.version)}).status_code == 303
    captures = standin.requests("POST", f"/v1/payment_intents/{hold.provider_ref}/capture")
    assert len(captures) == 1 and captures[0]["params"]["amount_to_capture"] == str(owed)
    assert ("capture", owed, "succeeded") in kinds(hire)
    assert ("release", hold.amount_pence - owed, "succeeded") in kinds(hire)
    db.session.expire_all()
    assert hire.state == "closed"  # money settled
    [receipt] = db.session.scalars(select(OutboundEmail).where(
        OutboundEmail.idempotency_key == f"hire:{hire.id}:return-receipt")).all()
    assert receipt.to_address == hire.customer.email
    assert "Fuel: 2/8 of a tank short" in receipt.body_text and "Deposit released: £" in receipt.body_text


def test_a_refund_the_settlement_cannot_make_is_left_to_staff_not_an_error(stripe_app, client,
                                                                          customer, standin):
    """Back two days early, but most of the price was given back already: the unused days'
    refund is more than is left. The return is recorded and staff are told; no 500."""
    from app.payments import request_refund
    hire = paid_hire(client, standin, customer, start=utcnow() - timedelta(days=1), days=3)
    request_refund(hire, hire.total_pence - 100, "goodwill", None)  # £1 left to refund
    staff = staff_client(stripe_app)
    picked_up(hire)
    ref = hire.reference
    assert post(staff, f"/counter/hires/{ref}/return/condition", condition(150, 8)).status_code == 303
    insp = inspections.inspection(hire, "return")
    answer = post(staff, f"/counter/hires/{ref}/return/settle", {"version": str(insp.version)})
    assert answer.status_code == 303
    page = staff.get(answer.headers["Location"]).get_data(as_text=True)
    assert "the payment needs attention" in page and "can be refunded" in page
    db.session.expire_all()
    assert hire.state == "returned"  # not closed: the money is not settled
    assert [k for k in kinds(hire) if k[0] == "refund"] == [("refund", hire.total_pence - 100, "succeeded")]

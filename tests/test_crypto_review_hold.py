"""A crypto payment that staff must review (issue 14, §5 and §6): the car stays held meanwhile,
the customer is told so instead of being asked to pay, and the queue never offers to accept a
payment for a booking that can no longer be confirmed.

Payments are real transactions on a local EVM, read by the real watcher (tests/crypto_chain.py).
"""

from __future__ import annotations

from datetime import timedelta

from app.booking.lifecycle import cancel_hire, expire_held_hires
from app.extensions import db
from app.models import HireState, utcnow
from app.payments import crypto
from tests import factories
from tests.conftest import post_form
from tests.crypto_chain import chain_env, settle_fully  # noqa: F401

REVIEW = "/pay/crypto/review"


def underpaid_hire(chain_env, customer=None, *, hold_minutes: int = 15):
    """A held hire paid half its price in ETH: the watcher sends the payment to staff review."""
    hire = factories.make_hire(state=HireState.HELD, customer=customer)
    hire.hold_expires_at = utcnow() + timedelta(minutes=hold_minutes)
    db.session.commit()
    quote = crypto.create_quote(hire, utcnow())
    chain_env.pay(quote, quote.amount_wei // 2)
    chain_env.scan()
    settle_fully(chain_env)
    db.session.expire_all()
    (payment,) = crypto.hire_payments(hire)
    assert (payment.state, payment.outcome) == ("review", "partial")
    return hire, payment


def test_a_hold_under_review_keeps_its_car_for_a_bounded_time(app, chain_env):
    hire, _payment = underpaid_hire(chain_env)
    bound = timedelta(hours=app.config["CRYPTO_REVIEW_HOLD_HOURS"])
    end = hire.hold_expires_at
    assert expire_held_hires(end + timedelta(minutes=1)) == []
    assert expire_held_hires(end + bound - timedelta(minutes=1)) == []
    db.session.expire_all()
    assert hire.state == HireState.HELD.value
    assert expire_held_hires(end + bound + timedelta(minutes=1)) == [hire.id]


def test_once_staff_refund_the_payment_the_hold_runs_out_as_usual(app, chain_env):
    staff = factories.make_user("staff")
    hire, payment = underpaid_hire(chain_env)
    crypto.refund_reviewed(payment.id, staff, utcnow())
    assert expire_held_hires(hire.hold_expires_at + timedelta(minutes=1)) == [hire.id]


def test_the_customer_is_told_the_payment_is_being_reviewed_not_asked_to_pay(app, chain_env, client, auth):
    customer = auth.sign_in_as("customer")
    hire, _payment = underpaid_hire(chain_env, customer)
    other = factories.make_hire(state=HireState.HELD, customer=customer,
                                start=hire.start_at + timedelta(days=30))
    other.hold_expires_at = utcnow() + timedelta(minutes=15)
    db.session.commit()

    mine = client.get("/book/mine").get_data(as_text=True)
    reviewed = mine.split(f'id="booking-{hire.reference}"')[1].split("</li>")[0]
    unpaid = mine.split(f'id="booking-{other.reference}"')[1].split("</li>")[0]
    assert "Your payment is being reviewed" in reviewed and "Pay now" not in reviewed
    assert "Pay now" in unpaid and "being reviewed" not in unpaid  # an ordinary hold still can

    # Past the 15 minutes the hire is still held, and the page still says why.
    expire_held_hires(hire.hold_expires_at + timedelta(minutes=1))
    page = client.get(f"/book/hires/{hire.reference}").get_data(as_text=True)
    assert "Your payment is being reviewed" in page
    assert "Pay £" not in page and "expired" not in page.lower()


def test_the_review_queue_offers_only_the_refund_for_an_expired_or_cancelled_booking(
        app, chain_env, client, auth):
    auth.sign_in_as("staff")
    held, held_payment = underpaid_hire(chain_env)
    expired, expired_payment = underpaid_hire(chain_env)
    cancelled, cancelled_payment = underpaid_hire(chain_env)
    expired.transition(HireState.EXPIRED, by=None, why="hold ran out")
    db.session.commit()
    cancel_hire(cancelled, by=cancelled.customer, now=utcnow())

    page = client.get(REVIEW).get_data(as_text=True)
    rows = {p.id: page.split(f'id="crypto-review-{p.id}"')[1].split("</tr>")[0]
            for p in (held_payment, expired_payment, cancelled_payment)}
    assert "Accept for this booking" in rows[held_payment.id]
    for payment, state in ((expired_payment, "expired"), (cancelled_payment, "cancelled")):
        assert "Accept for this booking" not in rows[payment.id]
        assert "Refund in full" in rows[payment.id]
        assert f"The booking is {state}: it cannot be confirmed" in rows[payment.id]

    # The refund it offers works.
    refund = post_form(client, f"{REVIEW}/{expired_payment.id}/refund", {}, token_from=REVIEW)
    assert refund.status_code == 303
    db.session.expire_all()
    assert expired_payment.state == "returned"


def test_the_card_payment_is_refused_while_a_crypto_payment_is_reviewed(app, chain_env, client, auth):
    """The pay page offers no card while staff review a crypto payment, and posting the card
    step anyway (an old tab) is refused with the reason instead of charging the customer twice."""
    from devtools.stripe_standin import start
    standin = start()
    try:
        app.config.update(STRIPE_API_BASE=standin.url, STRIPE_SECRET_KEY="sk_test_review",
                          STRIPE_WEBHOOK_SECRET=standin.webhook_secret)
        customer = auth.sign_in_as("customer")
        hire, _payment = underpaid_hire(chain_env, customer)
        page = client.get(f"/pay/{hire.reference}").get_data(as_text=True)
        assert "our staff are reviewing it" in page and "Pay by card" not in page
        response = post_form(client, f"/pay/{hire.reference}/card",
                             {"amount_pence": str(hire.total_pence)})
        assert response.status_code == 422
        assert "our staff are reviewing it" in response.get_data(as_text=True)
        assert standin.objects("checkout.session") == []
    finally:
        standin.stop()

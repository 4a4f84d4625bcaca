"""A hire paid in ETH has no card to hold a deposit on: the deposit is paid with the price and
goes back in ETH, less what the return costs (issue 7), or in full when the hire ends early."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from app.extensions import db
from app.jobs import chain as chain_jobs
from app.jobs.booking import tick
from app.models import HireState, OutboundEmail, Payment, utcnow
from app.models.crypto import CryptoRefund
from app.payments import crypto
from app import payments
from app.counter import inspections, pickup
from tests import factories
from tests.conftest import AuthActions
from tests.crypto_chain import CONFIRMATIONS, chain_env  # noqa: F401
from tests.test_counter import condition
from tests.test_counter_money import picked_up, post, staff_client
from tests.test_crypto_refunds import paid_hire


def rows(hire, kind):
    db.session.expire_all()
    return db.session.scalars(select(Payment).where(Payment.hire_id == hire.id, Payment.kind == kind)
                              .order_by(Payment.id)).all()


def refunds(hire):
    db.session.expire_all()
    return db.session.scalars(select(CryptoRefund).where(CryptoRefund.hire_id == hire.id)
                              .order_by(CryptoRefund.id)).all()


def send(env, refund, address):
    crypto.confirm_refund_address(refund, refund.hire.customer, address, utcnow())
    chain_jobs.send_crypto_refund(refund.id)
    env.mine(CONFIRMATIONS)
    env.scan()


def test_the_deposit_is_paid_with_the_price_and_kept_apart_from_it(app, chain_env):
    hire, quote = paid_hire(chain_env)
    [charge] = rows(hire, "charge")
    [deposit] = rows(hire, "deposit_hold")
    assert charge.amount_pence == hire.total_pence  # the price: what revenue reports count
    assert (deposit.method, deposit.state, deposit.amount_pence) == ("crypto", "succeeded", hire.deposit_pence)
    assert deposit.parent_id == charge.id
    assert payments.amount_due_pence(hire) == 0
    # At pickup the counter finds the deposit already in hand: no card hold is asked for.
    assert payments.ensure_deposit_hold(hire, by=factories.make_user("staff")).id == deposit.id
    assert len(rows(hire, "deposit_hold")) == 1
    assert crypto.refundable(hire)[:2] == (quote.amount_wei, hire.total_pence + hire.deposit_pence)
    labels = [payments.describe(p) for p in payments.payments_of(hire)]
    assert "Deposit paid in ETH with the price" in labels


def test_the_pay_page_says_what_the_eth_is_made_of(app, chain_env):
    hire = factories.make_hire(state=HireState.HELD)
    client = app.test_client()
    AuthActions(client).sign_in(hire.customer.email)
    page = client.get(f"/pay/{hire.reference}/crypto").get_data(as_text=True)
    assert "£117.00 for the hire" in page and "£250.00 refundable deposit" in page and "£367.00" in page


def test_return_keeps_the_charges_and_sends_the_rest_of_the_deposit_back_in_eth(app, chain_env):
    hire, quote = paid_hire(chain_env, start=utcnow() - timedelta(days=3), days=3)
    # Picked up three days ago with a full tank and 100 miles on the clock.
    picked_up(hire)
    staff = staff_client(app)
    ref = hire.reference
    assert post(staff, f"/counter/hires/{ref}/return/condition", condition(300, 6)).status_code == 303
    owed = 2 * app.config["FUEL_PRICE_PER_EIGHTH_PENCE"] + app.config["REFUELLING_FEE_PENCE"]
    version = inspections.inspection(hire, "return").version
    assert post(staff, f"/counter/hires/{ref}/return/settle", {"version": str(version)}).status_code == 303

    [kept] = rows(hire, "capture")
    assert (kept.method, kept.amount_pence, kept.state) == ("crypto", owed, "succeeded")
    [refund] = refunds(hire)
    back = hire.deposit_pence - owed
    assert refund.amount_pence == back and refund.state == "awaiting_address"
    assert refund.payment.parent_id == rows(hire, "deposit_hold")[0].id  # the deposit, not the price
    # The ETH sent back is the same share of what was paid as the pence are of its value.
    assert refund.amount_wei == quote.amount_wei * back // quote.amount_pence
    [receipt] = db.session.scalars(select(OutboundEmail).where(
        OutboundEmail.idempotency_key == f"hire:{hire.id}:return-receipt")).all()
    assert "Deposit returned in ETH" in receipt.body_text and "Taken from your deposit" in receipt.body_text
    db.session.expire_all()
    assert hire.state == "returned"  # money not settled until the ETH is back

    destination = "0x" + "6a" * 20
    before = chain_env.balance(chain_env.w3.to_checksum_address(destination))
    send(chain_env, refund, destination)
    assert chain_env.balance(chain_env.w3.to_checksum_address(destination)) - before == refund.amount_wei
    assert tick()["closed"] == 1  # the scheduler closes it once the refund is confirmed
    db.session.expire_all()
    assert hire.state == "closed"
    # What stays with us is the price (staff could still refund it) and what the counter kept.
    wei_left, pence_left, _ = crypto.refundable(hire)
    assert pence_left == hire.total_pence
    assert wei_left == quote.amount_wei - refund.amount_wei - quote.amount_wei * hire.deposit_pence // quote.amount_pence * owed // hire.deposit_pence
    assert tick()["closed"] == 0


def test_cancelling_a_crypto_hire_returns_the_whole_deposit_and_the_policy_refund(app, chain_env):
    hire, quote = paid_hire(chain_env, start=utcnow() + timedelta(days=10))
    staff = factories.make_user("staff")
    from app.booking.lifecycle import cancel_hire
    assert cancel_hire(hire, by=hire.customer, now=utcnow()) == hire.total_pence  # free cancellation
    found = refunds(hire)
    assert sorted(r.amount_pence for r in found) == sorted([hire.total_pence, hire.deposit_pence])
    assert sum(r.amount_wei for r in found) == quote.amount_wei  # every wei goes back, no more
    # Asking again (a double tap, a retried job) makes no second refund.
    payments.release_deposit(hire, staff, reason="again")
    assert len(refunds(hire)) == 2


def test_refusal_at_pickup_of_a_crypto_hire_returns_price_and_deposit_once(app, chain_env):
    hire, quote = paid_hire(chain_env, start=utcnow() + timedelta(hours=1))
    staff = factories.make_user("staff")
    pickup.refuse_at_pickup(hire, by=staff, now=utcnow(), reason="licence expired")
    found = refunds(hire)
    assert sorted(r.amount_pence for r in found) == sorted([hire.total_pence, hire.deposit_pence])
    assert sum(r.amount_wei for r in found) == quote.amount_wei


def test_a_crypto_hire_nobody_collected_refunds_price_less_the_fee_and_the_deposit_once(app, chain_env):
    """No-show (issue 14): the same crypto refund path as a cancellation, once however often
    the scheduler runs."""
    hire, quote = paid_hire(chain_env, start=utcnow() - timedelta(minutes=5))
    at = (hire.start_at + timedelta(minutes=app.config["NO_SHOW_GRACE_MINUTES"])).isoformat()
    assert [tick(at)["no_shows"], tick(at)["no_shows"]] == [1, 0]
    db.session.expire_all()
    assert hire.state == "no_show" and hire.occupancy is None
    fee = app.config["NO_SHOW_FEE_PENCE"]
    found = refunds(hire)
    assert sorted(r.amount_pence for r in found) == sorted([hire.total_pence - fee, hire.deposit_pence])
    # What stays with us is the fee's share of the ETH; the rest goes back.
    wei_left, pence_left, _ = crypto.refundable(hire)
    assert pence_left == fee and wei_left == quote.amount_wei - sum(r.amount_wei for r in found) > 0

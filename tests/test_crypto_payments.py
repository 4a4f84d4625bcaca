"""Crypto payments end to end on a real EVM (eth-tester): quote, pay, watch, settle.

Each test pays through the committed AcmePayments contract with a locally signed
transaction and lets the real watcher job (`scan_chain`) read the chain through web3.
"""

from __future__ import annotations

import warnings
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import HireState, OutboundEmail, Payment, utcnow
from app.models.crypto import ChainPayment, CryptoQuote, CryptoRefund
from app.payments import crypto
from tests import factories
from tests.crypto_chain import CONFIRMATIONS, ETH, chain_env, deploy, settle_fully  # noqa: F401


def test_a_warning_in_a_crypto_test_still_fails_it(chain_env):
    # pytest.ini makes every warning an error; eth-tester's own filter must not switch that off.
    with pytest.raises(UserWarning, match="after the chain"):
        warnings.warn("raised after the chain was built", UserWarning)


def held_hire(**kwargs):
    return factories.make_hire(state=HireState.HELD, **kwargs)


def payments_of(hire):
    return db.session.scalars(select(ChainPayment).where(ChainPayment.hire_id == hire.id)).all()


def crypto_rows(hire, kind="charge"):
    return db.session.scalars(select(Payment).where(Payment.hire_id == hire.id, Payment.method == "crypto",
                                                    Payment.kind == kind)).all()


def test_a_quote_locks_the_rate_its_source_time_and_the_exact_wei(app, chain_env):
    hire = held_hire()
    now = utcnow()
    quote = crypto.create_quote(hire, now)
    rate = app.config["CRYPTO_FIXED_RATE_PENCE_PER_ETH"]
    # No card to hold the deposit on: the price and the refundable deposit are paid together.
    assert hire.deposit_pence > 0
    assert quote.amount_pence == hire.total_pence + hire.deposit_pence
    assert quote.deposit_pence == hire.deposit_pence
    assert quote.rate_pence_per_eth == rate and quote.rate_source == app.config["CRYPTO_RATE_SOURCE"]
    assert quote.rate_at == now
    assert quote.expires_at == now + timedelta(minutes=app.config["QUOTE_MINUTES"])
    # Exact integer arithmetic, rounded up so the ETH always covers the price.
    assert quote.amount_wei == -(-quote.amount_pence * ETH // rate)
    assert quote.amount_wei * rate >= quote.amount_pence * ETH > (quote.amount_wei - 1) * rate
    assert len(quote.booking_ref) == 66
    # Asking again while it holds gives the same price; the rate changing does not move it.
    app.config["CRYPTO_FIXED_RATE_PENCE_PER_ETH"] = rate * 2
    assert crypto.create_quote(hire, now + timedelta(minutes=1)).id == quote.id
    db.session.expire_all()
    assert db.session.get(CryptoQuote, quote.id).amount_wei == quote.amount_wei


def test_a_quote_never_outlives_the_hold_and_only_held_hires_get_one(app, chain_env):
    now = utcnow()
    hire = held_hire()
    hire.hold_expires_at = now + timedelta(minutes=4)
    db.session.commit()
    assert crypto.create_quote(hire, now).expires_at == hire.hold_expires_at
    # A confirmed hire that owes nothing gets none (one owing a difference does: see
    # tests/test_crypto_difference.py); nor does a cancelled one.
    confirmed = factories.make_hire(state=HireState.CONFIRMED)
    db.session.add(Payment(hire_id=confirmed.id, method="card", kind="charge", state="succeeded",
                           amount_pence=confirmed.total_pence, currency="GBP", idempotency_key="paid-in-full"))
    db.session.commit()
    with pytest.raises(crypto.CryptoError, match="nothing left to pay"):
        crypto.create_quote(confirmed, now)
    with pytest.raises(crypto.CryptoError, match="not waiting for payment"):
        crypto.create_quote(factories.make_hire(state=HireState.CANCELLED), now)


def test_exact_payment_is_seen_then_confirmed_after_confirmations(app, chain_env):
    hire = held_hire()
    quote = crypto.create_quote(hire, utcnow())
    merchant_before = chain_env.balance(chain_env.merchant)
    tx_hash, _ = chain_env.pay(quote)

    chain_env.scan()
    (payment,) = payments_of(hire)
    assert payment.state == "processing" and payment.tx_hash == tx_hash.lower()
    status = crypto.payment_status(hire, utcnow())
    assert status.stage == "seen" and status.confirmations(payment) == 1
    assert hire.state == HireState.HELD.value

    for expected in range(2, CONFIRMATIONS):
        chain_env.mine(1)
        chain_env.scan()
        db.session.expire_all()
        assert payment.state == "processing"
        assert crypto.payment_status(hire, utcnow()).confirmations(payment) == expected
    chain_env.mine(1)
    chain_env.scan()
    db.session.expire_all()

    assert payment.state == "settled" and payment.outcome == "exact"
    assert hire.state == HireState.CONFIRMED.value
    assert crypto.payment_status(hire, utcnow()).stage == "confirmed"
    (charge,) = crypto_rows(hire)
    assert (charge.state, charge.amount_pence, charge.provider_ref) == ("succeeded", hire.total_pence, payment.tx_hash)
    assert charge.details["wei"] == str(quote.amount_wei)
    assert chain_env.balance(chain_env.merchant) - merchant_before == quote.amount_wei
    assert chain_env.balance(chain_env.contract.address) == 0
    assert crypto_rows(hire, "refund") == []

    # Scanning the same blocks again changes nothing: each (tx, log index) counts once.
    with app.app_context():
        crypto.lock_cursor(crypto.payments_cursor_key(), 0, utcnow()).last_block = 0
        db.session.commit()
    chain_env.scan()
    db.session.expire_all()
    assert len(payments_of(hire)) == 1 and len(crypto_rows(hire)) == 1
    assert db.session.scalar(select(OutboundEmail.id).where(
        OutboundEmail.to_address == hire.customer.email).limit(1)) is not None


def test_underpaid_within_the_tolerance_is_accepted(app, chain_env):
    hire = held_hire()
    quote = crypto.create_quote(hire, utcnow())
    short = crypto.tolerance_wei(quote)
    assert short > 0
    chain_env.pay(quote, quote.amount_wei - short)
    chain_env.scan()
    settle_fully(chain_env)
    db.session.expire_all()
    (payment,) = payments_of(hire)
    assert (payment.state, payment.outcome) == ("settled", "within_tolerance")
    assert hire.state == HireState.CONFIRMED.value
    assert crypto_rows(hire)[0].amount_pence == hire.total_pence


def test_underpaid_beyond_the_tolerance_is_partial_and_goes_to_staff_review(app, chain_env):
    hire = held_hire()
    quote = crypto.create_quote(hire, utcnow())
    chain_env.pay(quote, quote.amount_wei - crypto.tolerance_wei(quote) - 1)
    chain_env.scan()
    settle_fully(chain_env)
    db.session.expire_all()
    (payment,) = payments_of(hire)
    assert (payment.state, payment.outcome) == ("review", "partial")
    assert "Received" in payment.review_reason
    assert hire.state == HireState.HELD.value
    assert crypto_rows(hire)[0].state == "review"
    assert crypto.payment_status(hire, utcnow()).stage == "review"
    assert [p.id for p in crypto.review_queue()] == [payment.id]


def test_overpaid_is_confirmed_and_the_excess_refunded_to_a_confirmed_address(app, chain_env):
    hire = held_hire()
    quote = crypto.create_quote(hire, utcnow())
    excess = ETH // 100
    chain_env.pay(quote, quote.amount_wei + excess)
    chain_env.scan()
    settle_fully(chain_env)
    db.session.expire_all()
    (payment,) = payments_of(hire)
    assert (payment.state, payment.outcome) == ("settled", "overpaid")
    assert hire.state == HireState.CONFIRMED.value
    (refund,) = db.session.scalars(select(CryptoRefund)).all()
    assert refund.amount_wei == excess
    # Offered, not used: nothing is sent until the customer confirms the address.
    assert refund.state == "awaiting_address" and refund.to_address == ""
    assert refund.suggested_address == chain_env.customer.address
    (charge,) = crypto_rows(hire)
    (refund_row,) = crypto_rows(hire, "refund")
    assert refund_row.parent_id == charge.id and refund_row.state == "pending"
    assert charge.amount_pence - refund_row.amount_pence == hire.total_pence
    email = db.session.scalar(select(OutboundEmail).where(
        OutboundEmail.idempotency_key == f"crypto-refund-address:{refund.id}"))
    assert email is not None and f"/pay/{hire.reference}/crypto/refunds/{refund.id}" in email.body_text


def test_paid_after_the_quote_expired_is_late_and_never_accepted_at_the_old_rate(app, chain_env):
    hire = held_hire()
    long_ago = utcnow() - timedelta(minutes=app.config["QUOTE_MINUTES"] + 5)
    quote = crypto.create_quote(hire, long_ago)
    assert crypto.payment_status(hire, utcnow()).stage == "expired"
    chain_env.pay(quote)  # the exact amount, but too late
    chain_env.scan()
    settle_fully(chain_env)
    db.session.expire_all()
    (payment,) = payments_of(hire)
    assert (payment.state, payment.outcome) == ("review", "late")
    assert "not accepted at the old rate" in payment.review_reason
    assert hire.state == HireState.HELD.value
    assert quote.state == "review"
    assert crypto_rows(hire)[0].state == "review"


def test_one_transaction_can_never_pay_two_bookings(app, chain_env):
    first, second = held_hire(), held_hire()
    quote_a, quote_b = crypto.create_quote(first, utcnow()), crypto.create_quote(second, utcnow())
    batch, _ = deploy(chain_env.w3, "BatchPayer", sender=chain_env.owner)
    tx = batch.functions.payTwo(chain_env.contract.address, bytes.fromhex(quote_a.booking_ref[2:]),
                                quote_a.amount_wei, bytes.fromhex(quote_b.booking_ref[2:]),
                                quote_b.amount_wei).transact(
        {"from": chain_env.owner, "value": quote_a.amount_wei + quote_b.amount_wei})
    chain_env.scan()
    settle_fully(chain_env)
    db.session.expire_all()
    seen = db.session.scalars(select(ChainPayment).order_by(ChainPayment.log_index)).all()
    assert [p.tx_hash for p in seen] == [tx.to_0x_hex().lower()] * 2
    assert {(p.state, p.outcome) for p in seen} == {("review", "several_bookings")}
    assert first.state == second.state == HireState.HELD.value


def test_a_transaction_paying_one_booking_cannot_be_claimed_for_another(app, chain_env):
    customer = factories.make_user()
    mine, other = held_hire(customer=customer), held_hire(customer=customer)
    quote_mine = crypto.create_quote(mine, utcnow())
    quote_other = crypto.create_quote(other, utcnow())
    tx_hash, _ = chain_env.pay(quote_mine)
    # The wallet report for the other booking names the same transaction: shown, never paid.
    crypto.report_wallet_tx(other, quote_other.id, tx_hash, utcnow())
    chain_env.scan()
    settle_fully(chain_env)
    db.session.expire_all()
    assert mine.state == HireState.CONFIRMED.value
    assert other.state == HireState.HELD.value
    assert payments_of(other) == [] and crypto_rows(other) == []


def test_paying_an_already_paid_booking_again_is_refunded_in_full(app, chain_env):
    hire = held_hire()
    quote = crypto.create_quote(hire, utcnow())
    chain_env.pay(quote)
    chain_env.pay(quote)  # a second press in another wallet: the same booking paid twice
    chain_env.scan()
    settle_fully(chain_env)
    db.session.expire_all()
    first, again = payments_of(hire)
    assert (first.outcome, again.outcome) == ("exact", "duplicate")
    assert hire.state == HireState.CONFIRMED.value
    (refund,) = db.session.scalars(select(CryptoRefund)).all()
    assert refund.amount_wei == again.amount_wei and refund.chain_payment_id == again.id


def test_a_payment_that_vanishes_in_a_reorg_is_never_settled(app, chain_env):
    hire = held_hire()
    quote = crypto.create_quote(hire, utcnow())
    snapshot = chain_env.tester.take_snapshot()
    tx_hash, raw = chain_env.pay(quote)
    chain_env.scan()
    (payment,) = payments_of(hire)
    assert payment.state == "processing"
    first_block_hash = payment.block_hash

    # The block with the payment is replaced by a longer chain without it.
    chain_env.tester.revert_to_snapshot(snapshot)
    chain_env.mine(CONFIRMATIONS + 2)
    chain_env.scan()
    db.session.expire_all()
    assert payment.state == "vanished"
    assert hire.state == HireState.HELD.value
    assert crypto_rows(hire) == []
    assert crypto.payment_status(hire, utcnow()).stage == "vanished"

    # The same signed transaction is mined again in another block: watched afresh from there.
    chain_env.w3.eth.send_raw_transaction(raw)
    chain_env.scan()
    db.session.expire_all()
    assert payment.state == "processing" and payment.block_hash != first_block_hash
    settle_fully(chain_env)
    db.session.expire_all()
    assert payment.state == "settled" and hire.state == HireState.CONFIRMED.value
    assert len(payments_of(hire)) == 1


def test_a_reorg_that_moves_the_payment_restarts_its_confirmations(app, chain_env):
    hire = held_hire()
    quote = crypto.create_quote(hire, utcnow())
    snapshot = chain_env.tester.take_snapshot()
    _, raw = chain_env.pay(quote)
    chain_env.mine(CONFIRMATIONS - 2)
    chain_env.scan()
    (payment,) = payments_of(hire)
    old_block = payment.block_number
    chain_env.tester.revert_to_snapshot(snapshot)
    chain_env.mine(2)
    chain_env.w3.eth.send_raw_transaction(raw)  # re-included two blocks later
    chain_env.scan()
    db.session.expire_all()
    assert payment.block_number == old_block + 2
    assert payment.state == "processing"
    settle_fully(chain_env)
    db.session.expire_all()
    assert payment.state == "settled"


def test_payment_for_a_booking_no_longer_held_goes_to_review(app, chain_env):
    hire = held_hire()
    quote = crypto.create_quote(hire, utcnow())
    hire.transition(HireState.EXPIRED, by=None, why="hold ran out")
    db.session.commit()
    chain_env.pay(quote)
    chain_env.scan()
    settle_fully(chain_env)
    db.session.expire_all()
    (payment,) = payments_of(hire)
    assert (payment.state, payment.outcome) == ("review", "not_payable")


def test_a_payment_with_an_unknown_reference_is_kept_for_staff(app, chain_env):
    chain_env.pay("0x" + "42" * 32, ETH // 1000)
    chain_env.scan()
    settle_fully(chain_env)
    (payment,) = db.session.scalars(select(ChainPayment)).all()
    assert (payment.state, payment.outcome, payment.hire_id) == ("review", "unknown_booking", None)


def test_staff_accept_a_partial_payment_and_the_hire_is_confirmed(app, chain_env):
    staff = factories.make_user("staff")
    hire = held_hire()
    quote = crypto.create_quote(hire, utcnow())
    chain_env.pay(quote, quote.amount_wei // 2)
    chain_env.scan()
    settle_fully(chain_env)
    (payment,) = payments_of(hire)
    crypto.accept_reviewed(payment.id, staff, utcnow())
    db.session.expire_all()
    assert payment.state == "settled" and payment.reviewed_by_id == staff.id
    assert hire.state == HireState.CONFIRMED.value
    assert crypto_rows(hire)[0].state == "succeeded"
    with pytest.raises(crypto.CryptoError):
        crypto.accept_reviewed(payment.id, staff, utcnow())


def test_nothing_is_watched_or_offered_without_a_configured_chain(app):
    hire = held_hire()
    assert not crypto.available()
    assert crypto.quote_for_page(hire, utcnow()) is None
    assert crypto.payment_status(hire, utcnow()).stage == "unavailable"
    with pytest.raises(crypto.CryptoUnavailable):
        crypto.create_quote(hire, utcnow())


def test_the_watcher_reads_long_ranges_in_steps_and_remembers_where_it_stopped(app, chain_env):
    app.config["CHAIN_SCAN_MAX_BLOCKS"] = 2
    hires = [held_hire() for _ in range(3)]
    for hire in hires:
        chain_env.pay(crypto.create_quote(hire, utcnow()))
        chain_env.mine(3)  # spread over many more blocks than one step reads
    result = chain_env.scan()
    assert result["logs"] == 3
    head = chain_env.w3.eth.block_number
    assert crypto.last_scanned_block() == head
    settle_fully(chain_env)
    db.session.expire_all()
    assert {h.state for h in hires} == {HireState.CONFIRMED.value}
    assert len(db.session.scalars(select(ChainPayment)).all()) == 3


def test_a_hold_whose_payment_is_on_the_chain_waits_for_its_confirmations(app, chain_env):
    from app.booking.lifecycle import expire_held_hires
    now = utcnow()
    paying, idle = held_hire(), held_hire()
    for hire in (paying, idle):
        hire.hold_expires_at = now + timedelta(minutes=10)
    db.session.commit()
    quote = crypto.create_quote(paying, now)
    chain_env.pay(quote, quote.amount_wei)
    chain_env.scan()  # seen, not yet confirmed
    later = now + timedelta(minutes=11)
    assert expire_held_hires(later) == [idle.id]  # the unpaid one lets its car go
    db.session.expire_all()
    assert paying.state == HireState.HELD.value
    settle_fully(chain_env)
    db.session.expire_all()
    assert paying.state == HireState.CONFIRMED.value  # paid, not lost to the clock


def test_the_grace_for_a_payment_on_its_way_is_bounded(app, chain_env):
    from app.booking.lifecycle import expire_held_hires
    now = utcnow()
    hire = held_hire()
    hire.hold_expires_at = now + timedelta(minutes=10)
    db.session.commit()
    quote = crypto.create_quote(hire, now)
    chain_env.pay(quote, quote.amount_wei)
    chain_env.scan()
    grace = app.config["CRYPTO_IN_FLIGHT_GRACE_MINUTES"]
    assert expire_held_hires(now + timedelta(minutes=10 + grace - 1)) == []
    assert expire_held_hires(now + timedelta(minutes=10 + grace + 1)) == [hire.id]

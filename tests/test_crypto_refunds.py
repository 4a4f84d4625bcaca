"""Crypto refunds from the hot wallet: to a confirmed address, exactly once, nonce-safe."""

from __future__ import annotations

import pytest
from eth_utils import to_checksum_address
from sqlalchemy import select

from app.extensions import db
from app.integrations import chain
from app.jobs import chain as chain_jobs
from app.models import HireState, Payment, utcnow
from app.models.crypto import CryptoRefund
from app.payments import crypto
from tests import factories
from tests.crypto_chain import CONFIRMATIONS, ETH, chain_env, settle_fully  # noqa: F401


def paid_hire(env, extra_wei=0, **hire_fields):
    hire = factories.make_hire(state=HireState.HELD, **hire_fields)
    quote = crypto.create_quote(hire, utcnow())
    env.pay(quote, quote.amount_wei + extra_wei)
    env.scan()
    settle_fully(env)
    db.session.expire_all()
    assert hire.state == HireState.CONFIRMED.value
    return hire, quote


def confirm_address(refund, address):
    return crypto.confirm_refund_address(refund, refund.hire.customer, address, utcnow())


def test_the_refund_goes_only_to_the_address_the_customer_confirms(app, chain_env):
    hire, _ = paid_hire(chain_env, extra_wei=ETH // 50)
    (refund,) = db.session.scalars(select(CryptoRefund)).all()
    assert not chain_jobs.send_crypto_refund(refund.id)  # not confirmed yet: nothing is sent
    assert refund.state == "awaiting_address" and refund.tx_hash == ""

    stranger = factories.make_user()
    with pytest.raises(crypto.CryptoError):
        crypto.confirm_refund_address(refund, stranger, chain_env.owner, utcnow())
    for bad in ("0x123", "0x" + "0" * 40, "not an address"):
        with pytest.raises(crypto.CryptoError):
            confirm_address(refund, bad)

    destination = "0x" + "5e" * 20
    confirm_address(refund, destination)
    tx_hash = chain_jobs.send_crypto_refund(refund.id)
    assert chain_env.balance(to_checksum_address(destination)) == ETH // 50
    db.session.expire_all()
    assert refund.state == "sent" and refund.tx_hash == tx_hash and refund.nonce == 0
    assert refund.payment.state == "processing"

    chain_env.mine(CONFIRMATIONS)
    chain_env.scan()
    db.session.expire_all()
    assert refund.state == "confirmed" and refund.payment.state == "succeeded"


def test_sending_again_never_sends_twice(app, chain_env):
    paid_hire(chain_env, extra_wei=ETH // 50)
    (refund,) = db.session.scalars(select(CryptoRefund)).all()
    destination = to_checksum_address("0x" + "77" * 20)
    confirm_address(refund, destination)
    first = chain_jobs.send_crypto_refund(refund.id)
    second = chain_jobs.send_crypto_refund(refund.id)
    assert first == second
    chain_env.mine(CONFIRMATIONS)
    chain_env.scan()
    chain_jobs.send_crypto_refund(refund.id)
    assert chain_env.balance(destination) == ETH // 50
    assert chain_env.w3.eth.get_transaction_count(chain_env.hot_wallet.address) == 1


def test_a_job_killed_between_signing_and_recording_resends_the_same_transaction(app, chain_env):
    paid_hire(chain_env, extra_wei=ETH // 50)
    (refund,) = db.session.scalars(select(CryptoRefund)).all()
    destination = to_checksum_address("0x" + "78" * 20)
    confirm_address(refund, destination)
    client = chain.client()

    # Killed after the node took the transaction, before we recorded "sent".
    chain_jobs._sign(client, refund)
    db.session.commit()
    client.send_raw(refund.raw_tx)
    signed_hash = refund.tx_hash

    assert chain_jobs.send_crypto_refund(refund.id) == signed_hash  # the retry
    db.session.expire_all()
    assert refund.state == "sent"
    assert chain_env.balance(destination) == ETH // 50
    assert chain_env.w3.eth.get_transaction_count(chain_env.hot_wallet.address) == 1


def test_a_signed_refund_the_node_never_got_is_broadcast_by_the_retry(app, chain_env):
    paid_hire(chain_env, extra_wei=ETH // 50)
    (refund,) = db.session.scalars(select(CryptoRefund)).all()
    destination = to_checksum_address("0x" + "79" * 20)
    confirm_address(refund, destination)
    chain_jobs._sign(chain.client(), refund)  # killed after signing: nothing broadcast
    db.session.commit()
    signed_hash = refund.tx_hash
    assert chain_env.balance(destination) == 0

    chain_env.scan()  # the watcher notices the unsent refund and sends that very transaction
    db.session.expire_all()
    assert refund.state == "sent" and refund.tx_hash == signed_hash
    assert chain_env.balance(destination) == ETH // 50


def test_each_refund_gets_its_own_nonce(app, chain_env):
    destinations = []
    for n in range(2):
        paid_hire(chain_env, extra_wei=ETH // 40)
    refunds = db.session.scalars(select(CryptoRefund).order_by(CryptoRefund.id)).all()
    for n, refund in enumerate(refunds):
        destinations.append(to_checksum_address("0x" + f"{0x60 + n:02x}" * 20))
        confirm_address(refund, destinations[-1])
    for refund in refunds:
        chain_jobs._sign(chain.client(), refund)  # both signed before either is broadcast
        db.session.commit()
    assert sorted(r.nonce for r in refunds) == [0, 1]
    for refund in refunds:
        chain_jobs.send_crypto_refund(refund.id)
    assert [chain_env.balance(d) for d in destinations] == [ETH // 40] * 2


def test_request_crypto_refund_is_idempotent_and_bounded_by_what_was_paid(app, chain_env):
    hire, quote = paid_hire(chain_env)
    staff = factories.make_user("staff")
    half = hire.total_pence // 2
    refund = crypto.request_crypto_refund(hire, half, "cancelled: policy refund", staff)
    again = crypto.request_crypto_refund(hire, half, "cancelled: policy refund", staff)
    assert again.id == refund.id
    # What was paid in ETH is the price and the deposit that came with it.
    assert refund.amount_wei == quote.amount_wei * half // quote.amount_pence
    assert refund.state == "awaiting_address" and refund.suggested_address == chain_env.customer.address
    assert refund.payment.kind == "refund" and refund.payment.amount_pence == half
    assert refund.payment.requested_by_id == staff.id
    with pytest.raises(crypto.CryptoError):
        crypto.request_crypto_refund(hire, quote.amount_pence, "too much", staff)
    rest = crypto.request_crypto_refund(hire, quote.amount_pence - half, "the rest", staff)
    assert refund.amount_wei + rest.amount_wei == quote.amount_wei  # every wei back, no more
    assert len(db.session.scalars(select(Payment).where(Payment.kind == "refund")).all()) == 2


def test_no_hot_wallet_key_means_no_refund_and_a_visible_reason(app, chain_env):
    paid_hire(chain_env, extra_wei=ETH // 50)
    (refund,) = db.session.scalars(select(CryptoRefund)).all()
    confirm_address(refund, "0x" + "5f" * 20)
    app.config["CHAIN_HOT_WALLET_KEY"] = ""
    with pytest.raises(chain_jobs.RefundNotSent):
        chain_jobs.send_crypto_refund(refund.id)
    db.session.expire_all()
    assert refund.state == "queued" and "CHAIN_HOT_WALLET_KEY" in refund.last_error


def test_the_public_development_keys_are_refused_in_production(app, chain_env):
    app.config.update(ENV_NAME="production", CHAIN_HOT_WALLET_KEY=chain.dev_chain_keys()[9])
    with pytest.raises(chain_jobs.RefundNotSent):
        chain_jobs.hot_wallet()

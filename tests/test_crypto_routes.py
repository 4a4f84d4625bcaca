"""The crypto payment pages: what the customer and staff see and can do over HTTP."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from app import create_app
from app.extensions import db
from app.models import HireState, utcnow
from app.models.crypto import CryptoQuote, CryptoRefund
from app.payments import crypto
from tests import factories
from tests.conftest import csrf_token, make_test_config, post_form
from tests.crypto_chain import ETH, chain_env, settle_fully  # noqa: F401

HX = {"HX-Request": "true"}


def page_url(hire) -> str:
    return f"/pay/{hire.reference}/crypto"


def test_the_customer_sees_the_eth_price_and_the_wallet_button(app, chain_env, client, auth):
    customer = auth.sign_in_as("customer")
    hire = factories.make_hire(state=HireState.HELD, customer=customer)
    response = client.get(page_url(hire))
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    quote = db.session.scalars(select(CryptoQuote)).one()
    assert f"{crypto.format_eth(quote.amount_wei)} ETH" in html
    assert "Pay with wallet" in html and 'id="wallet-panel"' in html
    assert f'data-value="{hex(quote.amount_wei)}"' in html
    assert f'data-contract="{quote.contract_address}"' in html
    assert 'data-data="0x' in html and quote.booking_ref[2:] in html
    assert "js/wallet.js" in html and "<script>" not in html  # no inline script (CSP)
    assert quote.rate_source in html
    # Reloading shows the same locked price.
    client.get(page_url(hire))
    assert len(db.session.scalars(select(CryptoQuote)).all()) == 1


def test_only_the_customer_who_owns_the_hire_can_pay_it(app, chain_env, client, auth):
    owner = factories.make_user()
    hire = factories.make_hire(state=HireState.HELD, customer=owner)
    auth.sign_in_as("customer")
    assert client.get(page_url(hire)).status_code == 404
    assert client.get(f"{page_url(hire)}/status", headers=HX).status_code == 404
    assert db.session.scalars(select(CryptoQuote)).all() == []


def test_a_booking_not_waiting_for_payment_offers_no_button(app, chain_env, client, auth):
    customer = auth.sign_in_as("customer")
    hire = factories.make_hire(state=HireState.CANCELLED, customer=customer, occupy=False)
    html = client.get(page_url(hire)).get_data(as_text=True)
    assert "Pay with wallet" not in html and "not waiting for a payment" in html


def test_the_status_fragment_follows_the_payment_until_confirmed(app, chain_env, client, auth):
    customer = auth.sign_in_as("customer")
    hire = factories.make_hire(state=HireState.HELD, customer=customer)
    client.get(page_url(hire))
    quote = db.session.scalars(select(CryptoQuote)).one()

    fragment = client.get(f"{page_url(hire)}/status", headers=HX).get_data(as_text=True)
    assert 'data-stage="waiting"' in fragment and "hx-get" in fragment and "<html" not in fragment

    chain_env.pay(quote)
    fragment = client.get(f"{page_url(hire)}/status", headers=HX).get_data(as_text=True)  # starts a scan
    assert 'data-stage="seen"' in fragment and "1 of 3 confirmations" in fragment

    chain_env.mine(3)
    fragment = client.get(f"{page_url(hire)}/status", headers=HX).get_data(as_text=True)
    assert 'data-stage="confirmed"' in fragment
    assert "hx-get" not in fragment  # final: it stops polling
    db.session.expire_all()
    assert hire.state == HireState.CONFIRMED.value
    # Without htmx the fragment's URL leads back to the page.
    assert client.get(f"{page_url(hire)}/status").status_code == 302


def test_the_wallet_reports_its_transaction_and_the_page_says_sent(app, chain_env, client, auth):
    customer = auth.sign_in_as("customer")
    hire = factories.make_hire(state=HireState.HELD, customer=customer)
    client.get(page_url(hire))
    quote = db.session.scalars(select(CryptoQuote)).one()
    token = csrf_token(client, page_url(hire))
    bad = client.post(f"{page_url(hire)}/sent", data={"quote_id": quote.id, "tx_hash": "0x12"},
                      headers={"X-CSRFToken": token})
    assert bad.status_code == 422 and "tx_hash" in bad.get_json()["errors"]
    tx_hash = "0x" + "ab" * 32
    ok = client.post(f"{page_url(hire)}/sent", data={"quote_id": quote.id, "tx_hash": tx_hash},
                     headers={"X-CSRFToken": token})
    assert ok.status_code == 200 and ok.headers["HX-Trigger"] == "crypto-status-changed"
    fragment = client.get(f"{page_url(hire)}/status", headers=HX).get_data(as_text=True)
    assert 'data-stage="sent"' in fragment and tx_hash in fragment
    # The button is not offered again for this price: one press, one payment.
    assert "Pay with wallet" not in client.get(page_url(hire)).get_data(as_text=True)
    # Without the CSRF token the report is refused.
    assert client.post(f"{page_url(hire)}/sent", data={"quote_id": quote.id, "tx_hash": tx_hash}).status_code == 400


def test_an_expired_price_offers_a_new_one(app, chain_env, client, auth):
    customer = auth.sign_in_as("customer")
    hire = factories.make_hire(state=HireState.HELD, customer=customer)
    client.get(page_url(hire))
    quote = db.session.scalars(select(CryptoQuote)).one()
    quote.created_at = quote.rate_at = utcnow() - timedelta(minutes=30)
    quote.expires_at = utcnow() - timedelta(minutes=15)
    db.session.commit()
    html = client.get(page_url(hire)).get_data(as_text=True)
    assert "Get a new price" in html and "Pay with wallet" not in html
    response = post_form(client, f"{page_url(hire)}/quote", {}, token_from=page_url(hire))
    assert response.status_code == 303
    quotes = db.session.scalars(select(CryptoQuote).order_by(CryptoQuote.id)).all()
    assert len(quotes) == 2 and quotes[1].booking_ref != quotes[0].booking_ref
    assert "Pay with wallet" in client.get(page_url(hire)).get_data(as_text=True)


def test_the_customer_confirms_the_refund_address_and_the_refund_is_sent(app, chain_env, client, auth):
    customer = auth.sign_in_as("customer")
    hire = factories.make_hire(state=HireState.HELD, customer=customer)
    quote = crypto.create_quote(hire, utcnow())
    chain_env.pay(quote, quote.amount_wei + ETH // 20)
    chain_env.scan()
    settle_fully(chain_env)
    refund = db.session.scalars(select(CryptoRefund)).one()
    url = f"{page_url(hire)}/refunds/{refund.id}"

    fragment = client.get(f"{page_url(hire)}/status", headers=HX).get_data(as_text=True)
    assert url in fragment
    form = client.get(url).get_data(as_text=True)
    assert chain_env.customer.address in form  # offered, to be confirmed

    invalid = post_form(client, url, {"address": "0x1234", "confirm": "y"}, headers=HX)
    assert invalid.status_code == 422 and "40 hexadecimal" in invalid.get_data(as_text=True)
    unconfirmed = post_form(client, url, {"address": chain_env.customer.address})
    assert unconfirmed.status_code == 422 and "Tick the box" in unconfirmed.get_data(as_text=True)
    before = chain_env.balance(chain_env.customer.address)
    done = post_form(client, url, {"address": chain_env.customer.address, "confirm": "y"})
    assert done.status_code == 303
    db.session.expire_all()
    assert refund.state == "sent"  # the job ran (in-process in tests)
    assert chain_env.balance(chain_env.customer.address) - before == ETH // 20

    other = factories.make_user()
    other_client = app.test_client()
    from tests.conftest import AuthActions
    AuthActions(other_client).sign_in(other.email)
    assert other_client.get(url).status_code == 404


def test_staff_review_lists_partial_payments_and_can_accept_or_refund(app, chain_env, client, auth):
    hires = [factories.make_hire(state=HireState.HELD) for _ in range(2)]
    for hire in hires:
        quote = crypto.create_quote(hire, utcnow())
        chain_env.pay(quote, quote.amount_wei // 2)
    chain_env.scan()
    settle_fully(chain_env)
    auth.sign_in_as("staff")
    page = client.get("/pay/crypto/review").get_data(as_text=True)
    assert hires[0].reference in page and hires[1].reference in page and "partial" in page
    first, second = crypto.review_queue()

    assert post_form(client, f"/pay/crypto/review/{first.id}/accept", {},
                     token_from="/pay/crypto/review").status_code == 303
    assert post_form(client, f"/pay/crypto/review/{second.id}/refund", {},
                     token_from="/pay/crypto/review").status_code == 303
    db.session.expire_all()
    assert first.state == "settled" and first.hire.state == HireState.CONFIRMED.value
    assert second.state == "returned" and second.hire.state == HireState.HELD.value
    refund = db.session.scalars(select(CryptoRefund)).one()
    assert refund.amount_wei == second.amount_wei and refund.requested_by_id is not None
    assert "Nothing to review" in client.get("/pay/crypto/review").get_data(as_text=True)


def test_the_demo_wallet_does_not_exist_outside_development(app, client, auth):
    auth.sign_in_as("customer")
    response = client.post("/pay/crypto/demo-wallet", json={"method": "eth_accounts"},
                           headers={"X-CSRFToken": csrf_token(client, "/")})
    assert response.status_code == 404


def test_production_refuses_to_start_with_the_demo_wallet(app):
    with pytest.raises(RuntimeError, match="demo wallet"):
        create_app(make_test_config(ENV_NAME="production", SECRET_KEY="x" * 40, MAIL_BACKEND="smtp",
                                    CRYPTO_DEMO_WALLET=True))


def test_the_demo_wallet_only_pays_acme_bookings(make_app, chain_env):
    dev = make_app(ENV_NAME="development", CRYPTO_DEMO_WALLET=True,
                   CRYPTO_DEMO_WALLET_ADDRESS=chain_env.owner, **{
                       k: chain_env.app.config[k] for k in ("CHAIN_CONTRACT_ADDRESS", "CHAIN_ID")})
    from app.integrations import chain
    chain.use_provider(dev, chain_env.w3.provider)
    with dev.app_context():
        client = dev.test_client()
        from tests.conftest import AuthActions
        customer = factories.make_user()
        AuthActions(client).sign_in(customer.email)
        token = csrf_token(client, "/")

        def ask(method, params=None):
            return client.post("/pay/crypto/demo-wallet", json={"method": method, "params": params or []},
                               headers={"X-CSRFToken": token}).get_json()

        assert ask("eth_requestAccounts") == {"result": [chain_env.owner]}
        assert ask("eth_chainId") == {"result": hex(chain_env.w3.eth.chain_id)}
        assert ask("eth_sign")["error"]["code"] == 4200
        stray = ask("eth_sendTransaction", [{"from": chain_env.owner, "to": chain_env.merchant, "value": "0x1"}])
        assert stray["error"]["code"] == 4001
        hire = factories.make_hire(state=HireState.HELD)
        quote = crypto.create_quote(hire, utcnow())
        from app.integrations.chain import pay_calldata
        sent = ask("eth_sendTransaction", [{"from": chain_env.owner, "to": quote.contract_address,
                                           "value": hex(quote.amount_wei), "data": pay_calldata(quote.booking_ref)}])
        assert re.fullmatch(r"0x[0-9a-f]{64}", sent["result"])
        receipt = chain_env.w3.eth.get_transaction_receipt(sent["result"])
        assert receipt.status == 1
        db.session.remove()


def test_a_hold_that_ran_out_is_said_plainly_and_offers_no_button(app, chain_env, client, auth):
    customer = auth.sign_in_as("customer")
    hire = factories.make_hire(state=HireState.HELD, customer=customer)
    hire.hold_expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    html = client.get(page_url(hire)).get_data(as_text=True)
    assert "hold on this car has run out" in html and "Pay with wallet" not in html
    assert db.session.scalars(select(CryptoQuote)).all() == []

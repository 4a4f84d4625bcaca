"""Crypto payment in real Chromium: the real wallet.js against a real local chain (ganache).

The page gets a minimal EIP-1193 provider (`window.ethereum`) injected before it loads. It
forwards each request to the ganache node's JSON-RPC, where the test customer's account is
unlocked; the forwarding goes through Playwright (expose_function), because the page's CSP
rightly lets it talk only to the portal. So the page runs exactly as with a real wallet:
eth_requestAccounts, eth_chainId, eth_sendTransaction calling pay(bookingRef).
"""

from __future__ import annotations

import json

import pytest
import requests
from playwright.sync_api import expect

from app.extensions import db
from app.models import HireState
from app.models.crypto import CryptoQuote
from devtools.chain import CUSTOMER, LocalChain, deploy, free_port, start_node
from tests import factories
from tests.browser.conftest import PHONE, TABLET, browser_sign_in

pytestmark = [pytest.mark.browser, pytest.mark.postgres]

# Enough blocks (one a second) that the "seen" stage lasts several of the page's 1-second polls.
CONFIRMATIONS = 5
SETTLE_TIMEOUT_MS = 30_000

INJECTED_WALLET = """
(() => {
  const forward = async (method, params) => {
    const answer = JSON.parse(await window.__acmeTestWalletRpc(JSON.stringify({method, params})));
    if (answer.error) { const e = new Error(answer.error.message); e.code = answer.error.code; throw e; }
    return answer.result;
  };
  window.ethereum = {
    isAcmeTestWallet: true,
    request: ({method, params}) =>
      forward(method === "eth_requestAccounts" ? "eth_accounts" : method, params || [])
        .then((result) => method === "eth_requestAccounts" ? result.slice(%(account)d, %(account)d + 1) : result),
  };
})();
"""


@pytest.fixture(scope="module")
def ganache():
    """One node for the module; each test deploys its own contract on it."""
    chain = start_node(free_port(), block_time=1)
    try:
        yield chain
    finally:
        chain.stop()  # the node process we started, by its own pid


@pytest.fixture
def crypto_server(make_live_server, ganache: LocalChain):
    address, block = deploy(ganache.url)
    return make_live_server(CHAIN_RPC_URL=ganache.url, CHAIN_ID=1337, CHAIN_CONTRACT_ADDRESS=address,
                            CHAIN_START_BLOCK=block, CONFIRMATIONS=CONFIRMATIONS,
                            CHAIN_SCAN_INTERVAL_SECONDS=1, CRYPTO_STATUS_POLL_SECONDS=1)


def inject_wallet(page, chain: LocalChain) -> None:
    def forward(payload: str) -> str:
        request = json.loads(payload)
        answer = requests.post(chain.url, json={"jsonrpc": "2.0", "id": 1, **request}, timeout=10).json()
        return json.dumps(answer)

    page.expose_function("__acmeTestWalletRpc", forward)
    page.add_init_script(INJECTED_WALLET % {"account": CUSTOMER})


def balance(chain: LocalChain, address: str) -> int:
    answer = requests.post(chain.url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_getBalance",
                                            "params": [address, "latest"]}, timeout=10).json()
    return int(answer["result"], 16)


@pytest.mark.parametrize("size", [PHONE, TABLET], ids=["phone", "tablet"])
def test_pay_with_the_browser_wallet_and_watch_it_confirm(app, crypto_server, ganache, new_page, size):
    customer = factories.make_user()
    hire = factories.make_hire(state=HireState.HELD, customer=customer)
    page = new_page(*size)
    inject_wallet(page, ganache)
    browser_sign_in(page, crypto_server.url, customer.email)

    page.goto(f"{crypto_server.url}/pay/{hire.reference}/crypto")
    quote = db.session.query(CryptoQuote).one()
    expect(page.locator(".crypto-amount")).to_contain_text(" ETH")
    expect(page.locator("#crypto-status")).to_have_attribute("data-stage", "waiting")
    merchant = ganache.accounts[1]
    merchant_before = balance(ganache, merchant)

    page.get_by_role("button", name="Pay with wallet").click()
    expect(page.locator("#wallet-message")).to_contain_text("Sent")
    expect(page.get_by_role("button", name="Pay with wallet")).to_be_hidden()
    expect(page.locator("#crypto-status")).to_have_attribute("data-stage", "seen", timeout=SETTLE_TIMEOUT_MS)
    expect(page.locator(".crypto-confirmations")).to_contain_text(f"of {CONFIRMATIONS} confirmations")
    expect(page.locator("#crypto-status")).to_have_attribute("data-stage", "confirmed", timeout=SETTLE_TIMEOUT_MS)
    expect(page.locator("#crypto-status")).to_contain_text("Confirmed")

    db.session.expire_all()
    assert hire.state == HireState.CONFIRMED.value
    assert balance(ganache, merchant) - merchant_before == quote.amount_wei  # the exact wei
    assert page.console_errors == []


def test_a_browser_without_a_wallet_is_told_what_to_do(app, crypto_server, new_page):
    customer = factories.make_user()
    hire = factories.make_hire(state=HireState.HELD, customer=customer)
    page = new_page(*PHONE)
    browser_sign_in(page, crypto_server.url, customer.email)
    page.goto(f"{crypto_server.url}/pay/{hire.reference}/crypto")
    page.get_by_role("button", name="Pay with wallet").click()
    expect(page.locator("#wallet-message")).to_contain_text("No browser wallet found")
    expect(page.locator("#wallet-message")).to_contain_text("pay by card")
    expect(page.get_by_role("button", name="Use the demo wallet (development only)")).to_have_count(0)
    assert hire.state == HireState.HELD.value
    assert page.console_errors == []

"""A real (in-memory) Ethereum chain for the crypto payment tests: eth-tester's py-evm.

`chain_env` deploys the committed AcmePayments artifact, funds a hot wallet and a customer
wallet with local keys (so raw signed transactions can be replayed after a reorg), and
points the app at the chain through web3's EthereumTesterProvider: the same web3 calls as
in production, against a real EVM. Import the fixture into a test module to use it.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from typing import Any, Optional

import pytest
from eth_account import Account
from flask import Flask
from web3 import EthereumTesterProvider, Web3

from app.integrations import chain
from app.jobs.chain import scan_chain
from app.models.crypto import CryptoQuote

CONFIRMATIONS = 3
ARTIFACTS = chain.ARTIFACT_PATH.parent
ETH = 10**18


def load_artifact(name: str) -> dict[str, Any]:
    with open(ARTIFACTS / f"{name}.json", encoding="utf-8") as f:
        return json.load(f)


@dataclass
class ChainEnv:
    app: Flask
    w3: Web3
    tester: Any
    contract: Any
    owner: str
    merchant: str
    customer: Any  # eth_account LocalAccount: signs its own transactions
    hot_wallet: Any

    def mine(self, blocks: int = 1) -> None:
        self.tester.mine_blocks(blocks)

    def pay(self, quote_or_ref: CryptoQuote | str, wei: Optional[int] = None, *,
            sender: Any = None) -> tuple[str, bytes]:
        """Call pay(bookingRef) from a local-key wallet; returns (tx hash, raw signed tx)."""
        sender = sender or self.customer
        ref = quote_or_ref.booking_ref if isinstance(quote_or_ref, CryptoQuote) else quote_or_ref
        value = wei if wei is not None else quote_or_ref.amount_wei
        tx = self.contract.functions.pay(bytes.fromhex(ref[2:])).build_transaction({
            "from": sender.address, "value": value, "nonce": self.w3.eth.get_transaction_count(sender.address),
            "gas": 100_000, "gasPrice": self.w3.eth.gas_price, "chainId": self.w3.eth.chain_id,
        })
        signed = sender.sign_transaction(tx)
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        return tx_hash.to_0x_hex(), bytes(signed.raw_transaction)

    def scan(self) -> Optional[dict]:
        with self.app.app_context():
            return scan_chain()

    def balance(self, address: str) -> int:
        return self.w3.eth.get_balance(address)


def chain_provider() -> EthereumTesterProvider:
    """A fresh in-memory chain, built without changing the test's warning policy.

    eth-tester calls `warnings.simplefilter("default")` each time it picks its backend, which
    would leave warnings as mere output (not failures) for the rest of the test.
    """
    with warnings.catch_warnings():
        return EthereumTesterProvider()


def deploy(w3: Web3, name: str, *args, sender: str) -> Any:
    artifact = load_artifact(name)
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    receipt = w3.eth.wait_for_transaction_receipt(factory.constructor(*args).transact({"from": sender}))
    return w3.eth.contract(address=receipt.contractAddress, abi=artifact["abi"]), receipt.blockNumber


@pytest.fixture
def chain_env(app) -> ChainEnv:
    provider = chain_provider()
    w3 = Web3(provider)
    owner, merchant, funder = w3.eth.accounts[0], w3.eth.accounts[1], w3.eth.accounts[2]
    contract, block = deploy(w3, "AcmePayments", merchant, sender=owner)
    customer, hot_wallet = Account.create(), Account.create()
    for account in (customer, hot_wallet):
        w3.eth.send_transaction({"from": funder, "to": account.address, "value": 100 * ETH})
    app.config.update(CHAIN_CONTRACT_ADDRESS=contract.address, CHAIN_ID=w3.eth.chain_id,
                      CHAIN_START_BLOCK=block, CONFIRMATIONS=CONFIRMATIONS,
                      CHAIN_SCAN_INTERVAL_SECONDS=0, CHAIN_REORG_DEPTH=6,
                      CHAIN_HOT_WALLET_KEY=hot_wallet.key.to_0x_hex())
    chain.use_provider(app, provider)
    return ChainEnv(app, w3, provider.ethereum_tester, contract, owner, merchant, customer, hot_wallet)


def settle_fully(env: ChainEnv) -> None:
    """Mine enough blocks on top of everything and scan."""
    env.mine(CONFIRMATIONS)
    env.scan()

"""Client for the blockchain node (JSON-RPC through web3), used only by jobs.

What the portal asks of the chain: the head block, the payment contract's `Paid` logs over
a block range, a transaction's receipt (to re-check a payment before settling it), a
block's time, and for refunds the hot wallet's nonce and the broadcast of a transaction
signed here. Every HTTP call has a timeout (CHAIN_RPC_TIMEOUT_SECONDS) and web3's bounded
retries with backoff for idempotent methods (CHAIN_RPC_ATTEMPTS, CHAIN_RPC_BACKOFF_SECONDS).

Configuration: CHAIN_RPC_URL, CHAIN_ID, CHAIN_CONTRACT_ADDRESS. Tests point the client at
an in-memory chain instead with `use_provider(app, EthereumTesterProvider())`: the same
web3 library, talking to a real EVM.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Optional

import requests
from eth_account import Account
from eth_utils import to_checksum_address
from flask import Flask, current_app
from web3 import HTTPProvider, Web3
from web3.exceptions import TransactionNotFound, Web3Exception
from web3.providers.rpc.utils import ExceptionRetryConfiguration

from ..config import BASE_DIR
from ..settings import settings_of

ARTIFACT_PATH = BASE_DIR / "contracts" / "build" / "AcmePayments.json"
PAID_EVENT_SIGNATURE = "Paid(bytes32,address,uint256)"
PROVIDER_OVERRIDE = "acme_chain_provider"
# Keys of the local development chains (ganache --wallet.deterministic, eth-tester): public
# knowledge, so they must never hold real money.
_DEV_MNEMONIC = "myth like bonus scare over problem client lizard pioneer submit female collect"


class ChainError(Exception):
    """The node could not be reached or gave no usable answer (worth retrying later)."""


class ChainRefused(Exception):
    """The node refused what we sent (e.g. a transaction it will never accept)."""


@dataclass(frozen=True)
class PaidLog:
    """One `Paid(bookingRef, payer, amount)` event of the payment contract."""

    tx_hash: str
    log_index: int
    block_number: int
    block_hash: str
    contract_address: str
    booking_ref: str  # "0x" + 64 hex digits
    payer: str
    amount_wei: int


@dataclass(frozen=True)
class Receipt:
    tx_hash: str
    succeeded: bool
    block_number: int
    block_hash: str
    paid_logs: tuple[PaidLog, ...]


@lru_cache(maxsize=1)
def contract_artifact() -> dict[str, Any]:
    """The committed ABI and bytecode (contracts/build), proven equal to a fresh compile."""
    with open(ARTIFACT_PATH, encoding="utf-8") as f:
        return json.load(f)


def paid_topic() -> str:
    return Web3.keccak(text=PAID_EVENT_SIGNATURE).to_0x_hex()


def use_provider(app: Flask, provider: Any) -> None:
    """Talk to this web3 provider instead of CHAIN_RPC_URL (tests: EthereumTesterProvider)."""
    app.extensions[PROVIDER_OVERRIDE] = provider


def is_configured(app: Optional[Flask] = None) -> bool:
    app = app or current_app
    payments = settings_of(app).payments
    has_node = bool(payments.chain_rpc_url) or PROVIDER_OVERRIDE in app.extensions
    return has_node and bool(payments.chain_contract_address)


def _hex(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    text = str(value)
    return text if text.startswith("0x") else "0x" + text


def booking_ref_bytes(booking_ref: str) -> bytes:
    raw = bytes.fromhex(booking_ref.removeprefix("0x"))
    if len(raw) != 32:
        raise ValueError("a booking reference is 32 bytes")
    return raw


def pay_calldata(booking_ref: str) -> str:
    """The `data` of a transaction calling pay(bookingRef): built here, sent by the wallet."""
    contract = Web3().eth.contract(abi=contract_artifact()["abi"])
    return contract.encode_abi("pay", args=[booking_ref_bytes(booking_ref)])


def dev_chain_keys(count: int = 10) -> list[str]:
    """Private keys of ganache's deterministic accounts (development and tests only)."""
    Account.enable_unaudited_hdwallet_features()
    return [Account.from_mnemonic(_DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}").key.to_0x_hex()
            for i in range(count)]


def is_public_dev_key(key: str) -> bool:
    """True for keys anyone can look up (ganache's deterministic accounts)."""
    normalised = key.lower().removeprefix("0x")
    return any(normalised == k.lower().removeprefix("0x") for k in dev_chain_keys())


class ChainClient:
    """A thin wrapper over web3 for the payment contract. Raises ChainError on RPC failures."""

    def __init__(self, w3: Web3, chain_id: int, contract_address: str):
        self.w3 = w3
        self.chain_id = chain_id
        self.contract_address = to_checksum_address(contract_address)
        self._contract = w3.eth.contract(address=self.contract_address,
                                         abi=contract_artifact()["abi"])

    # --- reading -------------------------------------------------------------------
    def head(self) -> int:
        return self._call(lambda: self.w3.eth.block_number)

    def block_hash(self, number: int) -> Optional[str]:
        block = self._call(lambda: self._get_block(number))
        return None if block is None else _hex(block["hash"])

    def block_time(self, number: int) -> datetime:
        block = self._call(lambda: self.w3.eth.get_block(number))
        return datetime.fromtimestamp(block["timestamp"], tz=timezone.utc)

    def paid_logs(self, from_block: int, to_block: int) -> list[PaidLog]:
        """The contract's `Paid` logs in [from_block, to_block], in chain order."""
        if to_block < from_block:
            return []
        # Hex-string topics: eth-tester ignores HexBytes ones.
        logs = self._call(lambda: self.w3.eth.get_logs({
            "fromBlock": from_block, "toBlock": to_block, "address": self.contract_address,
            "topics": [paid_topic()],
        }))
        return [self._decode(log) for log in logs]

    def receipt(self, tx_hash: str) -> Optional[Receipt]:
        """The transaction's receipt on the current canonical chain, or None if it has none."""
        def fetch():
            try:
                return self.w3.eth.get_transaction_receipt(tx_hash)
            except TransactionNotFound:
                return None
        raw = self._call(fetch)
        if raw is None or raw.get("blockNumber") is None:
            return None
        topic = paid_topic()
        logs = tuple(self._decode(log) for log in raw["logs"]
                     if to_checksum_address(log["address"]) == self.contract_address
                     and log["topics"] and _hex(log["topics"][0]) == topic)
        return Receipt(tx_hash=_hex(raw["transactionHash"]), succeeded=raw["status"] == 1,
                       block_number=raw["blockNumber"], block_hash=_hex(raw["blockHash"]),
                       paid_logs=logs)

    def transaction_known(self, tx_hash: str) -> bool:
        """Whether the node has the transaction at all (mined or waiting in its pool)."""
        def fetch():
            try:
                self.w3.eth.get_transaction(tx_hash)
                return True
            except TransactionNotFound:
                return False
        return self._call(fetch)

    def balance(self, address: str) -> int:
        return self._call(lambda: self.w3.eth.get_balance(to_checksum_address(address)))

    # --- sending (refunds from the hot wallet) ----------------------------------------
    def pending_nonce(self, address: str) -> int:
        return self._call(lambda: self.w3.eth.get_transaction_count(
            to_checksum_address(address), "pending"))

    def transfer_fields(self, sender: str, to: str, value: int, max_gas: int) -> dict[str, Any]:
        """Gas and fee fields for a plain transfer (legacy pricing: every node accepts it)."""
        tx = {"from": to_checksum_address(sender), "to": to_checksum_address(to), "value": value}
        gas = self._call(lambda: self.w3.eth.estimate_gas(tx))
        if gas > max_gas:
            raise ChainRefused(f"sending to {to} needs {gas} gas, more than the {max_gas} allowed")
        gas_price = self._call(lambda: self.w3.eth.gas_price)
        return {"gas": gas, "gasPrice": gas_price, "chainId": self.chain_id}

    def send_raw(self, raw_tx: str) -> str:
        """Broadcast a signed transaction; the node may already have it (then that is fine)."""
        try:
            return _hex(self.w3.eth.send_raw_transaction(raw_tx))
        except (requests.RequestException, OSError) as exc:
            raise ChainError(f"{type(exc).__name__}: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - any other answer is the node's refusal
            # Nodes answer a duplicate with "already known" / "nonce too low"; the caller
            # then looks the transaction up by its hash to tell "ours" from "someone else's".
            raise ChainRefused(str(exc)[:300]) from exc

    # --- helpers ---------------------------------------------------------------------
    def _get_block(self, number: int):
        try:
            return self.w3.eth.get_block(number)
        except Web3Exception:
            return None

    def _decode(self, log: Any) -> PaidLog:
        event = self._contract.events.Paid().process_log(log)
        return PaidLog(
            tx_hash=_hex(log["transactionHash"]), log_index=int(log["logIndex"]),
            block_number=int(log["blockNumber"]), block_hash=_hex(log["blockHash"]),
            contract_address=to_checksum_address(log["address"]),
            booking_ref=_hex(event["args"]["bookingRef"]),
            payer=to_checksum_address(event["args"]["payer"]), amount_wei=int(event["args"]["amount"]),
        )

    @staticmethod
    def _call(fn):
        try:
            return fn()
        except (requests.RequestException, OSError, Web3Exception) as exc:
            raise ChainError(f"{type(exc).__name__}: {exc}"[:300]) from exc


def make_web3(app: Optional[Flask] = None) -> Web3:
    app = app or current_app
    provider = app.extensions.get(PROVIDER_OVERRIDE)
    if provider is None:
        payments = settings_of(app).payments
        provider = HTTPProvider(
            payments.chain_rpc_url,
            request_kwargs={"timeout": payments.chain_rpc_timeout_seconds},
            exception_retry_configuration=ExceptionRetryConfiguration(
                errors=(requests.ConnectionError, requests.Timeout),
                # web3 calls it "retries" but counts every attempt; 0 would mean no call at all.
                retries=max(1, payments.chain_rpc_attempts), backoff_factor=payments.chain_rpc_backoff_seconds),
        )
    return Web3(provider)


def client(app: Optional[Flask] = None) -> ChainClient:
    """The client for the configured chain and payment contract."""
    app = app or current_app
    if not is_configured(app):
        raise ChainError("no chain configured (CHAIN_RPC_URL and CHAIN_CONTRACT_ADDRESS)")
    payments = settings_of(app).payments
    return ChainClient(make_web3(app), payments.chain_id, payments.chain_contract_address)


def demo_wallet_send(tx: dict[str, Any], app: Optional[Flask] = None) -> str:
    """Send a transaction from the local node's unlocked demo account (development only).

    Stands in for a browser wallet, which would do this with its own node. Raises
    ChainError when the node is unreachable, ChainRefused when it will not take it.
    """
    w3 = make_web3(app)
    fields = {"from": to_checksum_address(tx["from"]), "to": to_checksum_address(tx["to"]),
              "value": int(str(tx.get("value", "0x0")), 16), "data": tx.get("data", "0x")}
    try:
        return _hex(w3.eth.send_transaction(fields))
    except (requests.RequestException, OSError) as exc:
        raise ChainError(f"{type(exc).__name__}: {exc}"[:300]) from exc
    except Exception as exc:  # noqa: BLE001 - whatever else the node said, it said no
        raise ChainRefused(str(exc)[:300]) from exc

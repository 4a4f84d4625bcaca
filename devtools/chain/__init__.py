"""A local Ethereum chain for the demo and the browser test: ganache (npm) + the payment contract.

Never used in production. `start_node` runs `node contracts/node_modules/.bin/ganache` itself
(no npx wrapper, so the process id we hold is the node's and stopping it stops the chain);
`deploy` puts the committed AcmePayments artifact on it. Ganache's deterministic accounts:

    0  owner (deploys the contract)        1  merchant wallet (receives payments)
    2  the demo / test customer's wallet   9  the hot wallet that sends refunds

Their keys are public knowledge (ganache's fixed mnemonic): development only.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import requests

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ROOT / "contracts"
GANACHE = CONTRACTS / "node_modules" / ".bin" / "ganache"
ARTIFACT = CONTRACTS / "build" / "AcmePayments.json"
CHAIN_ID = 1337
OWNER, MERCHANT, CUSTOMER, HOT_WALLET = 0, 1, 2, 9
START_TIMEOUT_SECONDS = 60
RPC_TIMEOUT_SECONDS = 5


class ChainToolError(Exception):
    pass


@dataclass
class LocalChain:
    url: str
    process: Optional[subprocess.Popen]
    accounts: list[str]

    @property
    def pid(self) -> Optional[int]:
        return self.process.pid if self.process else None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rpc(url: str, method: str, params: list | None = None):
    answer = requests.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []},
                           timeout=RPC_TIMEOUT_SECONDS).json()
    if "error" in answer:
        raise ChainToolError(f"{method}: {answer['error']}")
    return answer["result"]


def answers(url: str) -> bool:
    try:
        return int(rpc(url, "eth_chainId"), 16) == CHAIN_ID
    except (requests.RequestException, ValueError, ChainToolError):
        return False


def start_node(port: int, *, block_time: float = 1, db_path: Optional[Path] = None,
               log_path: Optional[Path] = None, detach: bool = False) -> LocalChain:
    """Start ganache on 127.0.0.1:port and wait until it answers.

    `block_time` > 0 mines a block every so many seconds even when idle, so that payments
    gather confirmations; `db_path` keeps the chain across restarts (the demo's SQLite data
    refers to it); `detach` lets it outlive this process (the demo).
    """
    node = shutil.which("node")
    if node is None:
        raise ChainToolError("Node.js is not installed (apt-get install nodejs)")
    if not GANACHE.exists():
        raise ChainToolError("ganache is not installed: run `npm ci` in contracts/")
    args = [node, str(GANACHE), "--host", "127.0.0.1", "--port", str(port),
            "--chain.chainId", str(CHAIN_ID), "--wallet.deterministic", "--logging.quiet"]
    if block_time > 0:
        args += ["--miner.blockTime", str(block_time)]
    if db_path is not None:
        db_path.mkdir(parents=True, exist_ok=True)
        args += ["--database.dbPath", str(db_path)]
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=detach)
    finally:
        if log_path:
            log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ChainToolError(f"ganache exited with {process.returncode}")
        if answers(url):
            return LocalChain(url, process, rpc(url, "eth_accounts"))
        time.sleep(0.2)
    process.kill()
    raise ChainToolError(f"ganache did not answer on {url} within {START_TIMEOUT_SECONDS} s")


def deploy(url: str) -> tuple[str, int]:
    """Deploy AcmePayments (owner: account 0, merchant: account 1); returns (address, block)."""
    from web3 import HTTPProvider, Web3

    artifact = json.loads(ARTIFACT.read_text())
    w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": RPC_TIMEOUT_SECONDS}))
    accounts = w3.eth.accounts
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    tx = factory.constructor(accounts[MERCHANT]).transact({"from": accounts[OWNER]})
    receipt = w3.eth.wait_for_transaction_receipt(tx, timeout=30, poll_latency=0.2)
    return receipt.contractAddress, receipt.blockNumber


def has_code(url: str, address: str) -> bool:
    return rpc(url, "eth_getCode", [address, "latest"]) not in ("0x", "0x0", None)


# --- the demo: a chain that outlives the command, kept in instance/ ---------------------------

INSTANCE = ROOT / "instance"
STATE_FILE = INSTANCE / "dev-chain.json"
PID_FILE = INSTANCE / "dev-chain.pid"


def up(port: int = 8545) -> dict:
    """Make sure the demo chain runs with the contract on it; returns the settings for the app."""
    from app.integrations.chain import dev_chain_keys

    url = f"http://127.0.0.1:{port}"
    if not answers(url):
        chain = start_node(port, block_time=1, db_path=INSTANCE / "dev-chain-db",
                           log_path=INSTANCE / "dev-chain.log", detach=True)
        PID_FILE.write_text(str(chain.pid))
    state = json.loads(STATE_FILE.read_text()) if STATE_FILE.exists() else {}
    if not state.get("contract") or not has_code(url, state["contract"]):
        address, block = deploy(url)
        state = {"contract": address, "start_block": block}
        STATE_FILE.write_text(json.dumps(state))
    accounts = rpc(url, "eth_accounts")
    return {
        "CHAIN_RPC_URL": url,
        "CHAIN_ID": str(CHAIN_ID),
        "CHAIN_NAME": "Local ganache chain (development)",
        "CHAIN_CONTRACT_ADDRESS": state["contract"],
        "CHAIN_START_BLOCK": str(state["start_block"]),
        "CHAIN_HOT_WALLET_KEY": dev_chain_keys()[HOT_WALLET],
        "FLASK_CONFIRMATIONS": "2",
        "FLASK_CHAIN_SCAN_INTERVAL_SECONDS": "2",
        "FLASK_CRYPTO_DEMO_WALLET": "true",
        "FLASK_CRYPTO_DEMO_WALLET_ADDRESS": accounts[CUSTOMER],
    }


def down() -> bool:
    """Stop the demo chain started by `up` (by its recorded process id only)."""
    if not PID_FILE.exists():
        return False
    pid = int(PID_FILE.read_text().strip())
    PID_FILE.unlink()
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True

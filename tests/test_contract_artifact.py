"""The payment contract: the committed artifact is what the source compiles to, and the
contract does what the portal relies on (run on a real EVM: eth-tester's py-evm)."""

from __future__ import annotations

import json
import shutil
import subprocess
import warnings

import pytest
from eth_tester.exceptions import TransactionFailed
from web3 import Web3

from app.config import BASE_DIR
from app.integrations import chain
from tests.crypto_chain import chain_provider, deploy, load_artifact

CONTRACTS = BASE_DIR / "contracts"
REF = bytes.fromhex("ab" * 32)


def fresh_compile() -> dict:
    node = shutil.which("node")
    assert node, "node is not installed: the contract artifact test needs Node.js (apt-get install nodejs)"
    assert (CONTRACTS / "node_modules" / "solc").is_dir(), (
        "contracts/node_modules is missing: run `npm ci` in contracts/ (solc-js compiles the contract)")
    done = subprocess.run([node, "build.js", "--print"], cwd=CONTRACTS, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_committed_artifacts_equal_a_fresh_compile_of_the_source():
    compiled = fresh_compile()
    for name in ("AcmePayments", "BatchPayer"):
        committed = load_artifact(name)
        assert committed == compiled[name], f"contracts/build/{name}.json is stale: run `npm run build` in contracts/"
    artifact = load_artifact("AcmePayments")
    assert artifact["settings"]["evmVersion"] == "paris"
    assert artifact["compiler"]["version"].startswith("0.8.")


def test_the_app_reads_the_committed_artifact():
    assert chain.contract_artifact()["abi"] == load_artifact("AcmePayments")["abi"]
    assert chain.pay_calldata("0x" + "ab" * 32) == "0x" + Web3.keccak(text="pay(bytes32)")[:4].hex() + "ab" * 32


@pytest.fixture
def evm():
    w3 = Web3(chain_provider())
    owner, merchant, payer, stranger = w3.eth.accounts[:4]
    contract, _ = deploy(w3, "AcmePayments", merchant, sender=owner)
    return w3, contract, owner, merchant, payer, stranger


def test_a_warning_after_the_chain_is_built_still_fails_the_test(evm):
    # pytest.ini makes every warning an error; building the chain must not switch that off.
    with pytest.raises(UserWarning, match="after the chain"):
        warnings.warn("raised after the chain was built", UserWarning)


def test_pay_forwards_everything_to_the_merchant_and_announces_it(evm):
    w3, contract, owner, merchant, payer, _ = evm
    before = w3.eth.get_balance(merchant)
    tx = contract.functions.pay(REF).transact({"from": payer, "value": 12345})
    receipt = w3.eth.get_transaction_receipt(tx)
    assert w3.eth.get_balance(merchant) - before == 12345
    assert w3.eth.get_balance(contract.address) == 0  # holds nothing
    (event,) = contract.events.Paid().process_receipt(receipt)
    assert event["args"] == {"bookingRef": REF, "payer": payer, "amount": 12345}
    # bookingRef and payer are indexed topics, so the watcher can filter on them.
    assert [t.to_0x_hex() for t in receipt["logs"][0]["topics"][1:]] == [
        "0x" + REF.hex(), "0x" + "00" * 12 + payer[2:].lower()]


def test_plain_transfers_and_empty_payments_are_refused(evm):
    w3, contract, _, merchant, payer, _ = evm
    before = w3.eth.get_balance(merchant)
    with pytest.raises(TransactionFailed):
        w3.eth.send_transaction({"from": payer, "to": contract.address, "value": 1000})
    with pytest.raises(TransactionFailed):
        w3.eth.send_transaction({"from": payer, "to": contract.address, "value": 1000, "data": "0xdeadbeef"})
    with pytest.raises(TransactionFailed):
        contract.functions.pay(REF).transact({"from": payer, "value": 0})
    assert w3.eth.get_balance(merchant) == before
    assert w3.eth.get_balance(contract.address) == 0


def test_settings_are_the_owners_only(evm):
    w3, contract, owner, merchant, payer, stranger = evm
    for call in (contract.functions.setMerchant(stranger), contract.functions.setPaused(True),
                 contract.functions.transferOwnership(stranger), contract.functions.sweep()):
        with pytest.raises(TransactionFailed):
            call.transact({"from": stranger})
    assert contract.functions.merchant().call() == merchant
    assert contract.functions.owner().call() == owner

    contract.functions.setPaused(True).transact({"from": owner})
    with pytest.raises(TransactionFailed):
        contract.functions.pay(REF).transact({"from": payer, "value": 1})
    contract.functions.setPaused(False).transact({"from": owner})

    contract.functions.setMerchant(stranger).transact({"from": owner})
    before = w3.eth.get_balance(stranger)
    contract.functions.pay(REF).transact({"from": payer, "value": 777})
    assert w3.eth.get_balance(stranger) - before == 777

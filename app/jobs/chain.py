"""The chain watcher and the refund sender: the only code that talks to the chain.

`scan_chain` reads the payment contract's `Paid` logs over block ranges from where the last
scan stopped (looking CHAIN_REORG_DEPTH blocks back again, to notice reorganisations),
records each (tx hash, log index) once as "processing", and settles a payment once it is
CONFIRMATIONS blocks deep, after re-reading its receipt from the chain: a payment whose
transaction is gone (a reorg) is never settled. It also follows refunds until confirmed.

`send_crypto_refund` sends one refund from the hot wallet, exactly once: under a lock it
picks the nonce, signs, and stores the signed transaction before broadcasting it, so a retry
(or a crash between the two) broadcasts the very same transaction, never a second one.

Both are idempotent and safe to run at once (row locks on PostgreSQL, and a process lock
for the in-process pool). Production runs `flask payments chain-watch` as a service (see
app/payments/crypto_routes.py); on the embedded default the payment page's status polls
start a scan when one is due.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Optional

from eth_account import Account
from flask import current_app
from sqlalchemy import func, select

from ..extensions import db
from ..integrations import chain
from ..logging_setup import log
from ..metrics import record_chain_scan
from ..models import utcnow
from ..models.crypto import ChainPayment, CryptoRefund
from ..payments import crypto
from ..production import is_production_like
from ..queueing import enqueue, task
from ..settings import settings

_scan_lock = threading.Lock()
_send_lock = threading.Lock()


class RefundNotSent(Exception):
    """The refund could not be sent now; the job's retries (or the next scan) try again."""



@task
def scan_chain() -> Optional[dict]:
    """One pass of the watcher: new logs, settlements, refund follow-up."""
    if not crypto.available():
        return None
    if not _scan_lock.acquire(blocking=False):
        return None  # a scan is already running in this process
    try:
        now = utcnow()
        try:
            return _scan(chain.client(), now)
        except chain.ChainError:
            # Node down: still count this as a scan, so status polls back off for an interval
            # instead of queueing a scan each; the queue's bounded retries try again.
            db.session.rollback()
            cfg = settings()
            crypto.lock_cursor(crypto.payments_cursor_key(), cfg.payments.chain_start_block, now).updated_at = now
            db.session.commit()
            raise
    finally:
        _scan_lock.release()


def _scan(client: chain.ChainClient, now: datetime) -> dict:
    cfg = settings()
    key, step = crypto.payments_cursor_key(), cfg.payments.chain_scan_max_blocks
    cursor = crypto.lock_cursor(key, cfg.payments.chain_start_block, now)
    head = client.head()
    start = max(cfg.payments.chain_start_block, cursor.last_block + 1 - cfg.payments.chain_reorg_depth)
    if head < cursor.last_block:  # the chain itself got shorter: read it again from there
        cursor.last_block = head
    seen = 0
    for first in range(start, head + 1, step):
        last = min(first + step - 1, head)
        for found in client.paid_logs(first, last):
            crypto.record_seen(found, now)
            seen += 1
        # Progress is kept per range, so a long catch-up that fails resumes where it stopped.
        cursor = crypto.lock_cursor(key, cfg.payments.chain_start_block, now)
        cursor.last_block, cursor.updated_at = max(cursor.last_block, last), now
        db.session.commit()
    cursor = crypto.lock_cursor(key, cfg.payments.chain_start_block, now)
    cursor.updated_at = now
    db.session.commit()
    record_chain_scan(head, cursor.last_block)  # what the "chain watcher behind" alert reads

    to_check = db.session.scalars(select(ChainPayment.id).where(
        ChainPayment.state.in_(("processing", "vanished"))).order_by(ChainPayment.id)).all()
    settled = sum(1 for payment_id in to_check if check_payment(client, payment_id, head, now))
    follow_up_refunds(client, head, now)
    return {"head": head, "logs": seen, "settled": settled}


def check_payment(client: chain.ChainClient, payment_id: int, head: int, now: datetime) -> bool:
    """Re-read the payment's receipt; settle it when deep enough. True when settled."""
    payment = db.session.scalar(select(ChainPayment).where(ChainPayment.id == payment_id)
                                .with_for_update())
    if payment is None or payment.state not in ("processing", "vanished"):
        db.session.rollback()
        return False
    receipt = client.receipt(payment.tx_hash)
    found = None
    if receipt is not None and receipt.succeeded:
        found = next((log_ for log_ in receipt.paid_logs
                      if log_.log_index == payment.log_index
                      and log_.booking_ref.lower() == payment.booking_ref
                      and log_.amount_wei == payment.amount_wei), None)
    if found is None:
        crypto.mark_vanished(payment)
        db.session.commit()
        return False
    if found.block_hash.lower() != payment.block_hash or payment.state == "vanished":
        crypto.move_block(payment, found)
    confirmations = payment.confirmations(head)
    # The block must still be the canonical one at its height, as the receipt says.
    if (confirmations < settings().payments.confirmations
            or client.block_hash(payment.block_number) != payment.block_hash):
        db.session.commit()
        return False
    settlement = crypto.settle(payment, paid_at=client.block_time(payment.block_number),
                               refs_in_tx={log_.booking_ref for log_ in receipt.paid_logs}, now=now)
    hire = payment.quote.hire if payment.quote else None
    refund = settlement.refund
    if settlement.confirm_hire and hire is not None:
        crypto.confirm_paid_hire(hire, now, amount_pence=settlement.paid_pence,  # commits everything above
                                 payment_key=settlement.payment_key)
    else:
        db.session.commit()
    if refund is not None:
        crypto.ask_for_refund_address(refund)
    return True


# --- refunds --------------------------------------------------------------------------------

def follow_up_refunds(client: chain.ChainClient, head: int, now: datetime) -> None:
    """Queued refunds get sent; sent ones are confirmed once deep enough."""
    pending = db.session.scalars(select(CryptoRefund).where(
        CryptoRefund.state.in_(("queued", "signed", "sent"))).order_by(CryptoRefund.id)).all()
    for refund in pending:
        if refund.state in ("queued", "signed"):
            enqueue(send_crypto_refund, refund.id, job_id=f"crypto-refund-{refund.id}")
            continue
        receipt = client.receipt(refund.tx_hash)
        if receipt is None:
            if not client.transaction_known(refund.tx_hash):
                _rebroadcast(client, refund)  # dropped from the node's pool: the same tx again
            continue
        if receipt.block_number + settings().payments.confirmations - 1 <= head:
            refund = db.session.scalar(select(CryptoRefund).where(CryptoRefund.id == refund.id)
                                       .with_for_update())
            if refund.state != "sent":
                db.session.rollback()
                continue
            if receipt.succeeded:
                refund.move_to("confirmed")
                refund.confirmed_at = now
                if refund.payment is not None and refund.payment.can_move_to("succeeded"):
                    refund.payment.move_to("succeeded", why=f"refund confirmed on chain ({refund.tx_hash})",
                                           now=now)
            else:
                refund.move_to("failed")
                refund.last_error = "the refund transaction reverted"
                if refund.payment is not None and refund.payment.can_move_to("failed"):
                    refund.payment.move_to("failed", why="refund transaction reverted", now=now)
            db.session.commit()


def hot_wallet():
    """The refund account, from CHAIN_HOT_WALLET_KEY; the public dev keys are refused in production."""
    key = settings().payments.chain_hot_wallet_key
    if not key:
        raise RefundNotSent("no hot wallet key configured (CHAIN_HOT_WALLET_KEY)")
    if is_production_like(current_app.config["ENV_NAME"]) and chain.is_public_dev_key(key):
        raise RefundNotSent("refusing a publicly known development key in production")
    return Account.from_key(key)


@task
def send_crypto_refund(refund_id: int) -> Optional[str]:
    """Send one refund from the hot wallet exactly once; returns its transaction hash."""
    with _send_lock:
        client = chain.client()
        refund = db.session.scalar(select(CryptoRefund).where(CryptoRefund.id == refund_id)
                                   .with_for_update())
        if refund is None or refund.state not in ("queued", "signed"):
            db.session.rollback()
            return refund.tx_hash if refund else None
        refund.attempts += 1
        if refund.state == "queued":
            try:
                _sign(client, refund)
            except (RefundNotSent, chain.ChainRefused, chain.ChainError) as exc:
                db.session.rollback()
                _note_error(refund_id, str(exc))
                raise RefundNotSent(str(exc)) from exc
        db.session.commit()  # the signed transaction is durable before it leaves
        return _broadcast(client, refund_id)


def _sign(client: chain.ChainClient, refund: CryptoRefund) -> None:
    """Pick the nonce (under the hot wallet's lock) and sign; stored by the caller's commit."""
    account = hot_wallet()
    cfg = settings()
    crypto.lock_cursor(crypto.cursor_key("hot-wallet", cfg.payments.chain_id, account.address), 0, utcnow())
    used = db.session.scalar(select(func.max(CryptoRefund.nonce))
                             .where(CryptoRefund.from_address == account.address))
    nonce = max(client.pending_nonce(account.address), -1 if used is None else used + 1)
    tx = {"to": refund.to_address, "value": refund.amount_wei, "nonce": nonce,
          **client.transfer_fields(account.address, refund.to_address, refund.amount_wei,
                                   cfg.payments.chain_refund_max_gas)}
    signed = account.sign_transaction(tx)
    refund.from_address = account.address
    refund.nonce = nonce
    refund.raw_tx = signed.raw_transaction.to_0x_hex()
    refund.tx_hash = signed.hash.to_0x_hex().lower()
    refund.move_to("signed")
    log().info("crypto refund signed", refund_id=refund.id, nonce=nonce, tx_hash=refund.tx_hash)


def _broadcast(client: chain.ChainClient, refund_id: int) -> str:
    refund = db.session.get(CryptoRefund, refund_id)
    try:
        client.send_raw(refund.raw_tx)
    except chain.ChainRefused as exc:
        # Already in the pool or mined (a retry after a crash): that is our transaction.
        if client.receipt(refund.tx_hash) is None and not client.transaction_known(refund.tx_hash):
            _note_error(refund_id, f"the node refused the refund: {exc}")
            raise RefundNotSent(str(exc)) from exc
    except chain.ChainError as exc:
        _note_error(refund_id, str(exc))
        raise RefundNotSent(str(exc)) from exc
    refund = db.session.scalar(select(CryptoRefund).where(CryptoRefund.id == refund_id).with_for_update())
    if refund.state == "signed":
        refund.move_to("sent")
        refund.sent_at, refund.last_error = utcnow(), ""
        if refund.payment is not None and refund.payment.can_move_to("processing"):
            refund.payment.move_to("processing", why=f"refund sent ({refund.tx_hash})")
    db.session.commit()
    log().info("crypto refund sent", refund_id=refund_id, tx_hash=refund.tx_hash)
    return refund.tx_hash


def _rebroadcast(client: chain.ChainClient, refund: CryptoRefund) -> None:
    try:
        client.send_raw(refund.raw_tx)
        log().warning("crypto refund rebroadcast", refund_id=refund.id, tx_hash=refund.tx_hash)
    except (chain.ChainRefused, chain.ChainError) as exc:
        log().warning("crypto refund rebroadcast failed", refund_id=refund.id, error=str(exc))


def _note_error(refund_id: int, message: str) -> None:
    refund = db.session.get(CryptoRefund, refund_id)
    if refund is not None:
        refund.last_error = message[:300]
        db.session.commit()
    log().warning("crypto refund not sent", refund_id=refund_id, error=message)



def watch(interval: float) -> None:
    """Scan for ever, surviving node outages (`flask payments chain-watch`)."""
    while True:
        try:
            scan_chain()
        except chain.ChainError as exc:
            log().warning("chain scan failed", error=str(exc))
        except Exception:
            db.session.rollback()
            log().exception("chain scan crashed")
        db.session.remove()
        time.sleep(interval)

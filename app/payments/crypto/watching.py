"""Watching the chain: what a payment seen on chain means, once it is confirmed deep enough.

app/jobs/chain.py reads the contract's `Paid` logs (through app/integrations/chain.py) and
hands them here: `record_seen` (once per transaction and log), `move_block`/`mark_vanished`
(reorganisations), then `settle` applies BTCPay Server's invoice rules (see the package
docstring) and records the money in the hire's Payment rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Optional


from sqlalchemy import select

from ... import events
from ...extensions import db
from ...integrations import chain
from ...logging_setup import log
from ...models import Hire, HireState, Payment
from ...models.crypto import ChainCursor, ChainPayment, CryptoQuote, CryptoRefund
from ...queueing import enqueue
from ...settings import settings
from .quotes import (DIFFERENCE, DIFFERENCE_HIRE_STATES, PAID_HIRE_STATES, available, difference_owed,
                     format_eth, pence_for_wei, tolerance_wei, watch_needed)
from .refunds import new_refund


def lock_cursor(key: str, start_block: int, now: datetime) -> ChainCursor:
    """The cursor row under a row lock (PostgreSQL): one scanner per contract at a time."""
    cursor = db.session.scalar(select(ChainCursor).where(ChainCursor.key == key).with_for_update())
    if cursor is None:
        cursor = ChainCursor(key=key, last_block=start_block - 1, updated_at=now)
        db.session.add(cursor)
        db.session.flush()
    return cursor


def record_seen(found: chain.PaidLog, now: datetime) -> ChainPayment:
    """Record a `Paid` log once per (tx hash, log index): "seen on chain", processing.

    Seen again in another block (a reorganisation moved it), the block is updated and the
    confirmations start again from there.
    """
    tx_hash = found.tx_hash.lower()
    payment = db.session.scalar(select(ChainPayment).where(ChainPayment.tx_hash == tx_hash,
                                                           ChainPayment.log_index == found.log_index))
    if payment is not None:
        if payment.block_hash != found.block_hash.lower():
            move_block(payment, found)
        return payment
    quote = db.session.scalar(select(CryptoQuote).where(CryptoQuote.booking_ref == found.booking_ref.lower()))
    payment = ChainPayment(
        chain_id=settings().payments.chain_id, contract_address=found.contract_address,
        tx_hash=tx_hash, log_index=found.log_index, block_number=found.block_number,
        block_hash=found.block_hash.lower(), booking_ref=found.booking_ref.lower(),
        payer=found.payer, amount_wei=found.amount_wei, quote=quote,
        hire_id=quote.hire_id if quote else None, state="processing", seen_at=now,
    )
    db.session.add(payment)
    db.session.flush()
    log().info("crypto payment seen", chain_payment_id=payment.id, tx_hash=tx_hash,
               log_index=found.log_index, block=found.block_number, wei=str(found.amount_wei))
    return payment


def move_block(payment: ChainPayment, found: chain.PaidLog) -> None:
    """The log is now in another block (reorg): wait for confirmations from there."""
    log().warning("crypto payment moved block", chain_payment_id=payment.id,
                  old_block=payment.block_number, new_block=found.block_number)
    payment.block_number = found.block_number
    payment.block_hash = found.block_hash.lower()
    if payment.state == "vanished":
        payment.move_to("processing")


def mark_vanished(payment: ChainPayment) -> None:
    """Its transaction is no longer on the chain: never settle it; keep watching for it."""
    if payment.state == "processing":
        log().warning("crypto payment vanished", chain_payment_id=payment.id, tx_hash=payment.tx_hash)
        payment.move_to("vanished")


# One scan queued at a time, whoever asks (status polls, the watcher): RQ refuses a second job
# with the same id while the first waits.
SCAN_JOB_ID = "chain-scan"


def request_scan(now: datetime) -> bool:
    """Enqueue a scan if one is due (called from status polls). Cheap: reads two rows."""
    if not available() or not watch_needed(now):
        return False
    enqueue("app.jobs.chain.scan_chain", job_id=SCAN_JOB_ID)
    return True


def queue_refund(refund: CryptoRefund) -> None:
    """After the customer confirmed the address: send it from a job."""
    enqueue("app.jobs.chain.send_crypto_refund", refund.id, job_id=f"crypto-refund-{refund.id}")


@dataclass
class Settlement:
    payment: ChainPayment
    confirm_hire: bool = False
    refund: Optional[CryptoRefund] = None
    # What the payment brought towards the price, in pence at the quote (not the wei, not
    # the deposit), and its key: the hire lifecycle invoices a difference with them.
    paid_pence: int = 0
    payment_key: str = ""


def settle(payment: ChainPayment, *, paid_at: datetime, refs_in_tx: set[str], now: datetime) -> Settlement:
    """Apply the rules to a payment confirmed CONFIRMATIONS deep (its receipt re-checked).

    Does not commit. When `Settlement.confirm_hire` is set, the caller confirms the hire
    (which commits); a refund it names waits for the customer's address.
    """
    result = Settlement(payment)
    payment.paid_at = paid_at
    payment.settled_at = now
    quote = payment.quote
    if quote is None:
        _to_review(payment, "unknown_booking", "No price quote has this booking reference.", now)
        return result
    hire = quote.hire
    tolerance = tolerance_wei(quote)
    value_pence = pence_for_wei(payment.amount_wei, quote.rate_pence_per_eth)
    difference = quote.purpose == DIFFERENCE  # what a confirmed hire still owes
    already_paid = quote.state == "paid" or (hire.state in PAID_HIRE_STATES and not difference)

    if len({r.lower() for r in refs_in_tx}) > 1:
        _to_review(payment, "several_bookings",
                   "One transaction paid several bookings; staff decide which booking it pays.", now)
    elif already_paid:
        payment.move_to("settled")
        payment.outcome = "duplicate"
        charge = _record_charge(payment, quote, "succeeded", value_pence, now,
                                "paid again: the booking was already paid; refunded in full")
        result.refund = new_refund(hire, payment.amount_wei, value_pence,
                                    "Paid twice: this payment is returned in full",
                                    key=f"crypto:duplicate:cp{payment.id}", charge=charge,
                                    chain_payment=payment, by=None, now=now)
    elif paid_at > quote.expires_at:
        _to_review(payment, "late",
                   f"Paid at {paid_at:%Y-%m-%d %H:%M:%S} UTC, after the price expired at "
                   f"{quote.expires_at:%Y-%m-%d %H:%M:%S} UTC; not accepted at the old rate.", now)
    elif difference and hire.hire_state not in DIFFERENCE_HIRE_STATES:
        _to_review(payment, "not_payable", f"The booking was {hire.state} when the payment arrived.", now)
    elif difference and difference_owed(hire) < quote.amount_pence:
        _to_review(payment, "not_payable",
                   f"The booking owed {difference_owed(hire) / 100:.2f} when this payment of "
                   f"{quote.amount_pence / 100:.2f} arrived (it changed meanwhile).", now)
    elif not difference and hire.hire_state != HireState.HELD:
        _to_review(payment, "not_payable", f"The booking was {hire.state} when the payment arrived.", now)
    elif payment.amount_wei < quote.amount_wei - tolerance:
        _to_review(payment, "partial",
                   f"Received {format_eth(payment.amount_wei)} of {format_eth(quote.amount_wei)} ETH.", now)
    else:
        excess = payment.amount_wei - quote.amount_wei
        payment.move_to("settled")
        payment.outcome = ("exact" if excess == 0 else "overpaid" if excess > 0 else "within_tolerance")
        quote.move_to("paid")
        paid_pence = max(value_pence, quote.amount_pence)
        charge = _record_charge(payment, quote, "succeeded", paid_pence - quote.deposit_pence, now,
                                f"paid in ETH ({payment.outcome})")
        if quote.deposit_pence:
            record_deposit(payment, quote, charge, quote.deposit_pence, paid_pence, now)
        if excess >= settings().payments.crypto_min_refund_wei:
            result.refund = new_refund(
                hire, excess, pence_for_wei(excess, quote.rate_pence_per_eth),
                "Overpaid: the amount above the price is returned",
                key=f"crypto:excess:cp{payment.id}", charge=charge, chain_payment=payment,
                by=None, now=now)
        result.confirm_hire = True
        result.paid_pence = quote.amount_pence - quote.deposit_pence
        result.payment_key = charge.idempotency_key
    log().info("crypto payment settled", chain_payment_id=payment.id, state=payment.state,
               outcome=payment.outcome)
    return result


def _to_review(payment: ChainPayment, outcome: str, reason: str, now: datetime) -> None:
    payment.move_to("review")
    payment.outcome, payment.review_reason = outcome, reason[:300]
    quote = payment.quote
    if quote is None:
        return
    if quote.state == "open":
        quote.move_to("review")
    _record_charge(payment, quote, "review",
                   pence_for_wei(payment.amount_wei, quote.rate_pence_per_eth), now, reason)


def _record_charge(payment: ChainPayment, quote: CryptoQuote, state: str, amount_pence: int,
                   now: datetime, why: str) -> Payment:
    """The payment's row in the hire's money record (the receipt lists it)."""
    charge = Payment(
        hire_id=quote.hire_id, method="crypto", kind="charge", state="pending",
        amount_pence=amount_pence, currency=quote.currency,
        idempotency_key=f"crypto:{payment.tx_hash}:{payment.log_index}", provider_ref=payment.tx_hash,
        details={"wei": str(payment.amount_wei), "quote_id": quote.id,
                 "quoted_wei": str(quote.amount_wei), "rate_pence_per_eth": quote.rate_pence_per_eth,
                 "rate_source": quote.rate_source, "rate_at": quote.rate_at.isoformat(),
                 "tx_hash": payment.tx_hash, "log_index": payment.log_index,
                 "payer": payment.payer, "chain_id": payment.chain_id},
        created_at=now,
    )
    db.session.add(charge)
    charge.move_to(state, why=why, now=now)
    payment.payment = charge
    return charge


def record_deposit(payment: ChainPayment, quote: CryptoQuote, charge: Payment, pence: int,
                    paid_pence: int, now: datetime) -> Payment:
    """The deposit that came with the price: held by us (not the card network) until the return.
    Its ETH is the same share of the payment as `pence` is of the `paid_pence` it was worth."""
    wei = payment.amount_wei * pence // paid_pence
    deposit = Payment(
        hire_id=quote.hire_id, method="crypto", kind="deposit_hold", state="pending",
        amount_pence=pence, currency=quote.currency, parent=charge,
        idempotency_key=f"deposit:{payment.tx_hash}:{payment.log_index}",
        provider_ref=payment.tx_hash, reason="deposit",
        details={"purpose": "deposit", "wei": str(wei), "quote_id": quote.id,
                 "rate_pence_per_eth": quote.rate_pence_per_eth},
        created_at=now,
    )
    db.session.add(deposit)
    deposit.move_to("succeeded", why="deposit received in ETH with the price; returned less charges "
                                      "after the hire", now=now)
    return deposit


def confirm_paid_hire(hire: Hire, now: datetime, *, amount_pence: int = 0, payment_key: str = "") -> None:
    """Report the rental paid, with what this payment brought towards the price (pence at the
    quote) and its key; the hire lifecycle confirms a held hire, or invoices the difference a
    confirmed one paid, as for a card (commits; emails once)."""
    events.report(events.rental_paid, hire, now=now, amount_pence=amount_pence, payment_key=payment_key)


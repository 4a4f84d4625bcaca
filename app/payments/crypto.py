"""Crypto payment rules: ETH quotes, what a payment seen on chain means, refunds, staff review.

Plain functions over the session. They take what they need (`now`, `user`, data the chain
job read) and raise `CryptoError` with a message meant for the person. Nothing here talks
to the chain: app/jobs/chain.py does, through app/integrations/chain.py, and hands the
results to these functions.

The rules follow BTCPay Server's invoices:
- a quote locks the ETH amount for QUOTE_MINUTES; fiat stays the price of record;
- paid in full (or short by no more than CRYPTO_UNDERPAID_TOLERANCE_BPS): settled, the
  hire is confirmed;
- overpaid: settled, and the excess is refunded to an address the customer confirms;
- underpaid beyond the tolerance: "partial", sent to staff review;
- paid after the quote expired: "late", staff review; never accepted at the old rate;
- one transaction can never pay two bookings: a transaction naming several goes to review;
- paying a quote (or a hire) already paid: the whole payment is refunded.

There is no card to hold a deposit on, so a quote asks for the price plus the hire's
refundable deposit. Once paid, the deposit is a `deposit_hold` Payment (already received,
so "succeeded") under the rental charge; the counter keeps what the return costs and sends
the rest back (`services.capture_deposit`), and a cancellation returns all of it.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Iterable, Optional

from flask import current_app
from sqlalchemy import func, select

from ..extensions import db
from ..integrations import chain
from ..logging_setup import log
from ..models import Hire, HireState, Payment, User
from ..models.crypto import ChainCursor, ChainPayment, CryptoQuote, CryptoRefund

WEI_PER_ETH = 10**18
BPS = 10_000
PAID_HIRE_STATES = frozenset({HireState.CONFIRMED.value, HireState.ACTIVE.value,
                              HireState.RETURNED.value, HireState.CLOSED.value})


class CryptoError(Exception):
    """A refusal to show the person as it is."""


class CryptoUnavailable(CryptoError):
    """Crypto payment is not configured here."""


# --- amounts -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rate:
    pence_per_eth: int
    source: str
    at: datetime


def current_rate(now: datetime) -> Rate:
    """The GBP/ETH rate to quote at: the configured rate, named as such."""
    cfg = current_app.config
    return Rate(cfg["CRYPTO_FIXED_RATE_PENCE_PER_ETH"], cfg["CRYPTO_RATE_SOURCE"][:120], now)


def wei_for_pence(pence: int, pence_per_eth: int) -> int:
    """The ETH amount (wei) worth `pence`, rounded up so that it always covers the price."""
    return -(-pence * WEI_PER_ETH // pence_per_eth)


def pence_for_wei(wei: int, pence_per_eth: int) -> int:
    """What `wei` is worth at the rate, rounded down."""
    return wei * pence_per_eth // WEI_PER_ETH


def format_eth(wei: int) -> str:
    """Exact: 18 decimals, trailing zeros dropped (never a float)."""
    whole, frac = divmod(wei, WEI_PER_ETH)
    digits = f"{frac:018d}".rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)


def tolerance_wei(quote: CryptoQuote) -> int:
    return quote.amount_wei * current_app.config["CRYPTO_UNDERPAID_TOLERANCE_BPS"] // BPS


# --- quotes -----------------------------------------------------------------------------------

def available() -> bool:
    return chain.is_configured()


def customer_hire(reference: str, user: User) -> Optional[Hire]:
    """The customer's own hire with this reference, or None (never someone else's)."""
    return db.session.scalar(select(Hire).where(Hire.reference == reference,
                                                Hire.customer_id == user.id))


def latest_quote(hire: Hire) -> Optional[CryptoQuote]:
    return db.session.scalar(select(CryptoQuote).where(CryptoQuote.hire_id == hire.id)
                             .order_by(CryptoQuote.id.desc()).limit(1))


def hire_payments(hire: Hire) -> list[ChainPayment]:
    return list(db.session.scalars(select(ChainPayment).where(ChainPayment.hire_id == hire.id)
                                   .order_by(ChainPayment.id)))


def crypto_payment_in_flight(hire: Hire, now: Optional[datetime] = None) -> bool:
    """A payment for this hire is on its way: do not expire its hold yet.

    True while a payment seen on chain is not settled, and (given `now`) for QUOTE_MINUTES
    after the customer's wallet reported sending one that the watcher has not seen yet.
    """
    if any(p.state in ("processing", "vanished") for p in hire_payments(hire)):
        return True
    quote = latest_quote(hire)
    if now is None or quote is None or not quote.wallet_tx_hash or quote.payments:
        return False
    grace = timedelta(minutes=current_app.config["QUOTE_MINUTES"])
    return quote.wallet_reported_at is not None and now - quote.wallet_reported_at < grace


def hires_under_review(hire_ids: Iterable[int]) -> set[int]:
    """The hires among `hire_ids` with a payment waiting for staff to decide on it."""
    ids = list(hire_ids)
    if not ids:
        return set()
    return set(db.session.scalars(select(ChainPayment.hire_id).where(
        ChainPayment.hire_id.in_(ids), ChainPayment.state == "review")))


def payment_keeps_hold(hire: Hire, now: datetime) -> bool:
    """Whether a crypto payment keeps this held hire's car past the hold's end.

    One on its way keeps it for CRYPTO_IN_FLIGHT_GRACE_MINUTES (the confirmations arrive);
    one staff are reviewing, for CRYPTO_REVIEW_HOLD_HOURS (staff accept or refund it):
    the customer has paid something and must not lose the car to the clock meanwhile.
    """
    cfg = current_app.config
    if hire.hold_expires_at is None:
        return False
    overdue = now - hire.hold_expires_at
    in_flight_grace = timedelta(minutes=cfg["CRYPTO_IN_FLIGHT_GRACE_MINUTES"])
    review_bound = timedelta(hours=cfg["CRYPTO_REVIEW_HOLD_HOURS"])
    return ((overdue < in_flight_grace and crypto_payment_in_flight(hire, now))
            or (overdue < review_bound and bool(hires_under_review([hire.id]))))


def quote_for_page(hire: Hire, now: datetime) -> Optional[CryptoQuote]:
    """The quote the payment page shows: the latest, or a first one for a held hire."""
    quote = latest_quote(hire)
    if quote is None and hire.hire_state == HireState.HELD and available():
        try:
            quote = create_quote(hire, now)
        except CryptoError:
            return None
    return quote


def create_quote(hire: Hire, now: datetime) -> CryptoQuote:
    """Lock an ETH price for the hire for QUOTE_MINUTES (never past the hold). Commits.

    While the latest quote is still open it is returned unchanged, so asking twice gives
    one price. A new one is refused while a payment is on its way.
    """
    cfg = current_app.config
    if not available():
        raise CryptoUnavailable("Paying with crypto is not available at the moment. Please pay by card.")
    if hire.hire_state != HireState.HELD:
        raise CryptoError("This booking is not waiting for payment.")
    if hire.total_pence <= 0:
        raise CryptoError("This booking has nothing to pay.")
    if hire.hold_expires_at is not None and hire.hold_expires_at <= now:
        raise CryptoError("The hold on this car has run out. Please book again.")
    latest = latest_quote(hire)
    if latest is not None and latest.state == "open" and not latest.is_expired(now):
        return latest
    if crypto_payment_in_flight(hire):
        raise CryptoError("A payment for this booking is on its way: wait for it to be confirmed.")
    if latest is not None and latest.state != "open":
        raise CryptoError("A payment for this booking has already arrived.")
    rate = current_rate(now)
    amount_pence = hire.total_pence + hire.deposit_pence
    expires_at = now + timedelta(minutes=cfg["QUOTE_MINUTES"])
    if hire.hold_expires_at is not None:
        expires_at = min(expires_at, hire.hold_expires_at)
    quote = CryptoQuote(
        hire_id=hire.id, booking_ref="0x" + secrets.token_hex(32), chain_id=cfg["CHAIN_ID"],
        contract_address=cfg["CHAIN_CONTRACT_ADDRESS"], amount_pence=amount_pence,
        deposit_pence=hire.deposit_pence, currency=hire.currency,
        rate_pence_per_eth=rate.pence_per_eth, rate_source=rate.source,
        rate_at=rate.at, amount_wei=wei_for_pence(amount_pence, rate.pence_per_eth),
        created_at=now, expires_at=expires_at, state="open",
    )
    db.session.add(quote)
    db.session.commit()
    log().info("crypto quote", hire_id=hire.id, quote_id=quote.id, wei=str(quote.amount_wei),
               rate=rate.pence_per_eth, expires_at=expires_at.isoformat())
    return quote


def report_wallet_tx(hire: Hire, quote_id: int, tx_hash: str, now: datetime) -> CryptoQuote:
    """Remember the hash the customer's wallet gave back, to show "sent". Commits.

    It is never trusted for money: only the contract's logs, read by the watcher, pay.
    """
    quote = db.session.scalar(select(CryptoQuote).where(CryptoQuote.id == quote_id,
                                                        CryptoQuote.hire_id == hire.id))
    if quote is None:
        raise CryptoError("That price is not one of this booking's.")
    quote.wallet_tx_hash = tx_hash.lower()
    quote.wallet_reported_at = now
    db.session.commit()
    return quote


# --- what the customer sees ---------------------------------------------------------------------

@dataclass
class PaymentStatus:
    """Everything the self-replacing status fragment shows."""

    # unavailable, not_payable, hold_expired, waiting, sent, expired, seen, vanished, review, confirmed
    stage: str
    quote: Optional[CryptoQuote]
    head: int
    confirmations_needed: int
    payments: list[ChainPayment] = field(default_factory=list)
    refunds: list[CryptoRefund] = field(default_factory=list)

    @property
    def final(self) -> bool:
        busy_refunds = any(r.state in ("queued", "signed", "sent") for r in self.refunds)
        # A transaction the wallet reported may still arrive: keep watching for it.
        awaited = self.quote is not None and bool(self.quote.wallet_tx_hash)
        return ((self.stage in ("unavailable", "not_payable", "confirmed", "review")
                 or (self.stage == "hold_expired" and not awaited)) and not busy_refunds)

    @property
    def can_pay(self) -> bool:
        return self.stage == "waiting"

    def confirmations(self, payment: ChainPayment) -> int:
        return min(payment.confirmations(self.head), self.confirmations_needed)

    @property
    def refunds_awaiting_address(self) -> list[CryptoRefund]:
        return [r for r in self.refunds if r.state == "awaiting_address"]


def cursor_key(purpose: str, chain_id: int, address: str) -> str:
    return f"{purpose}:{chain_id}:{address.lower()}"


def payments_cursor_key() -> str:
    cfg = current_app.config
    return cursor_key("payments", cfg["CHAIN_ID"], cfg["CHAIN_CONTRACT_ADDRESS"])


def last_scanned_block() -> int:
    cursor = db.session.scalar(select(ChainCursor).where(ChainCursor.key == payments_cursor_key()))
    return cursor.last_block if cursor else -1


def payment_status(hire: Hire, now: datetime) -> PaymentStatus:
    """Where the crypto payment of this hire stands, from what the watcher has recorded."""
    cfg = current_app.config
    quote = latest_quote(hire)
    payments = hire_payments(hire)
    refunds = list(db.session.scalars(select(CryptoRefund).where(CryptoRefund.hire_id == hire.id)
                                      .order_by(CryptoRefund.id)))
    status = PaymentStatus("waiting", quote, last_scanned_block(), cfg["CONFIRMATIONS"],
                           payments, refunds)
    states = {p.state for p in payments}
    if hire.state in PAID_HIRE_STATES:
        status.stage = "confirmed"
    elif "review" in states or (quote is not None and quote.state == "review"):
        status.stage = "review"
    elif "processing" in states:
        status.stage = "seen"
    elif "vanished" in states:
        status.stage = "vanished"
    elif hire.hire_state != HireState.HELD:
        status.stage = "not_payable"
    elif hire.hold_expires_at is not None and hire.hold_expires_at <= now:
        status.stage = "hold_expired"
    elif not available():
        status.stage = "unavailable"
    elif quote is None:
        status.stage = "unavailable"
    elif quote.wallet_tx_hash and not quote.is_expired(now):
        status.stage = "sent"
    elif quote.is_expired(now):
        status.stage = "expired"
    return status


def watch_needed(now: datetime) -> bool:
    """Whether a scan is due: something is being waited for and the last scan is old."""
    cfg = current_app.config
    cursor = db.session.scalar(select(ChainCursor).where(ChainCursor.key == payments_cursor_key()))
    if cursor is not None and now - cursor.updated_at < timedelta(seconds=cfg["CHAIN_SCAN_INTERVAL_SECONDS"]):
        return False
    waiting = db.session.scalar(select(CryptoQuote.id).where(CryptoQuote.state == "open",
                                                             CryptoQuote.expires_at > now - timedelta(hours=1)).limit(1))
    unsettled = db.session.scalar(select(ChainPayment.id).where(
        ChainPayment.state.in_(("processing", "vanished"))).limit(1))
    refunding = db.session.scalar(select(CryptoRefund.id).where(
        CryptoRefund.state.in_(("queued", "signed", "sent"))).limit(1))
    return any(x is not None for x in (waiting, unsettled, refunding))


# --- the watcher's findings -------------------------------------------------------------------

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
        chain_id=current_app.config["CHAIN_ID"], contract_address=found.contract_address,
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
        payment.state = "processing"


def mark_vanished(payment: ChainPayment) -> None:
    """Its transaction is no longer on the chain: never settle it; keep watching for it."""
    if payment.state == "processing":
        log().warning("crypto payment vanished", chain_payment_id=payment.id, tx_hash=payment.tx_hash)
        payment.state = "vanished"


@dataclass
class Settlement:
    payment: ChainPayment
    confirm_hire: bool = False
    refund: Optional[CryptoRefund] = None


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
    already_paid = quote.state == "paid" or hire.state in PAID_HIRE_STATES

    if len({r.lower() for r in refs_in_tx}) > 1:
        _to_review(payment, "several_bookings",
                   "One transaction paid several bookings; staff decide which booking it pays.", now)
    elif already_paid:
        payment.state, payment.outcome = "settled", "duplicate"
        charge = _record_charge(payment, quote, "succeeded", value_pence, now,
                                "paid again: the booking was already paid; refunded in full")
        result.refund = _new_refund(hire, payment.amount_wei, value_pence,
                                    "Paid twice: this payment is returned in full",
                                    key=f"crypto:duplicate:cp{payment.id}", charge=charge,
                                    chain_payment=payment, by=None, now=now)
    elif paid_at > quote.expires_at:
        _to_review(payment, "late",
                   f"Paid at {paid_at:%Y-%m-%d %H:%M:%S} UTC, after the price expired at "
                   f"{quote.expires_at:%Y-%m-%d %H:%M:%S} UTC; not accepted at the old rate.", now)
    elif hire.hire_state != HireState.HELD:
        _to_review(payment, "not_payable", f"The booking was {hire.state} when the payment arrived.", now)
    elif payment.amount_wei < quote.amount_wei - tolerance:
        _to_review(payment, "partial",
                   f"Received {format_eth(payment.amount_wei)} of {format_eth(quote.amount_wei)} ETH.", now)
    else:
        excess = payment.amount_wei - quote.amount_wei
        payment.state = "settled"
        payment.outcome = ("exact" if excess == 0 else "overpaid" if excess > 0 else "within_tolerance")
        quote.state = "paid"
        paid_pence = max(value_pence, quote.amount_pence)
        charge = _record_charge(payment, quote, "succeeded", paid_pence - quote.deposit_pence, now,
                                f"paid in ETH ({payment.outcome})")
        if quote.deposit_pence:
            _record_deposit(payment, quote, charge, quote.deposit_pence, paid_pence, now)
        if excess >= current_app.config["CRYPTO_MIN_REFUND_WEI"]:
            result.refund = _new_refund(
                hire, excess, pence_for_wei(excess, quote.rate_pence_per_eth),
                "Overpaid: the amount above the price is returned",
                key=f"crypto:excess:cp{payment.id}", charge=charge, chain_payment=payment,
                by=None, now=now)
        result.confirm_hire = True
    log().info("crypto payment settled", chain_payment_id=payment.id, state=payment.state,
               outcome=payment.outcome)
    return result


def _to_review(payment: ChainPayment, outcome: str, reason: str, now: datetime) -> None:
    payment.state, payment.outcome, payment.review_reason = "review", outcome, reason[:300]
    quote = payment.quote
    if quote is None:
        return
    if quote.state == "open":
        quote.state = "review"
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


def _record_deposit(payment: ChainPayment, quote: CryptoQuote, charge: Payment, pence: int,
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


def confirm_paid_hire(hire: Hire, now: datetime) -> None:
    """held -> confirmed through booking's `confirm_hire` (commits; emails once)."""
    from ..booking.services import confirm_hire
    confirm_hire(hire, by=None, now=now)


# --- refunds -----------------------------------------------------------------------------------

def _default_refund_key(hire: Hire, amount_pence: int, reason: str) -> str:
    digest = hashlib.sha256(reason.encode()).hexdigest()[:12]
    return f"hire:{hire.id}:crypto-refund:{amount_pence}:{digest}"


def _new_refund(hire: Hire, amount_wei: int, amount_pence: int, reason: str, *, key: str,
                charge: Optional[Payment], chain_payment: Optional[ChainPayment],
                by: Optional[User], now: datetime) -> CryptoRefund:
    existing = db.session.scalar(select(CryptoRefund).where(CryptoRefund.idempotency_key == key))
    if existing is not None:
        return existing
    record = Payment(hire_id=hire.id, method="crypto", kind="refund", state="pending",
                     amount_pence=amount_pence, currency=hire.currency, idempotency_key=f"refund:{key}",
                     parent=charge, reason=reason[:200], requested_by_id=by.id if by else None,
                     details={"wei": str(amount_wei)}, created_at=now)
    refund = CryptoRefund(
        hire_id=hire.id, chain_payment=chain_payment, payment=record, idempotency_key=key,
        amount_wei=amount_wei, amount_pence=amount_pence, reason=reason[:300],
        state="awaiting_address", suggested_address=chain_payment.payer if chain_payment else "",
        requested_by_id=by.id if by else None, created_at=now,
    )
    db.session.add_all([record, refund])
    db.session.flush()
    log().info("crypto refund requested", refund_id=refund.id, hire_id=hire.id, wei=str(amount_wei))
    return refund


def refundable(hire: Hire) -> tuple[int, int, str]:
    """(wei still refundable, the pence it was worth, the payer to suggest) for the hire.

    What was received (price and deposit) less what went back and what the counter kept
    of the deposit.
    """
    accepted = [p for p in hire_payments(hire)
                if p.state in ("settled", "returned") and p.payment is not None
                and p.payment.kind == "charge" and p.payment.state == "succeeded"]
    charge_ids = {p.payment.id for p in accepted}
    money_rows = db.session.scalars(select(Payment).where(
        Payment.hire_id == hire.id, Payment.method == "crypto", Payment.state == "succeeded",
        Payment.kind.in_(("deposit_hold", "capture")))).all()
    deposits = [p for p in money_rows if p.kind == "deposit_hold" and p.parent_id in charge_ids]
    kept = [p for p in money_rows if p.kind == "capture"]
    received_wei = sum(p.amount_wei for p in accepted)
    received_pence = (sum(p.payment.amount_pence for p in accepted)
                      + sum(p.amount_pence for p in deposits))
    refunded = db.session.scalars(select(CryptoRefund).where(
        CryptoRefund.hire_id == hire.id, CryptoRefund.state != "failed")).all()
    refunded_wei = sum(r.amount_wei for r in refunded) + sum(int(p.details.get("wei", 0)) for p in kept)
    refunded_pence = sum(r.amount_pence for r in refunded) + sum(p.amount_pence for p in kept)
    payer = accepted[-1].payer if accepted else ""
    return received_wei - refunded_wei, received_pence - refunded_pence, payer


def request_crypto_refund(hire: Hire, amount_pence: int, reason: str, by: Optional[User], *,
                          idempotency_key: Optional[str] = None, now: Optional[datetime] = None,
                          parent: Optional[Payment] = None) -> CryptoRefund:
    """Give back `amount_pence` of what the customer paid in ETH. Commits; emails the customer.

    The ETH amount is the same share of the ETH received as `amount_pence` is of its value
    at the rate the customer paid (so a full refund returns every wei). It is sent only once
    the customer confirms the address (never blindly to the sender). The same request
    twice (same hire, amount and reason, or the same `idempotency_key`) makes one refund.
    `parent` names what is given back (the deposit); by default, the latest charge.
    """
    from ..models import utcnow
    now = now or utcnow()
    key = idempotency_key or _default_refund_key(hire, amount_pence, reason)
    existing = db.session.scalar(select(CryptoRefund).where(CryptoRefund.idempotency_key == key))
    if existing is not None:
        return existing
    if amount_pence <= 0:
        raise CryptoError("A refund must be more than nothing.")
    wei_left, pence_left, payer = refundable(hire)
    if wei_left <= 0 or pence_left <= 0:
        raise CryptoError("Nothing paid in crypto is left to refund on this booking.")
    if amount_pence > pence_left:
        raise CryptoError(f"At most {pence_left} pence paid in crypto is left to refund.")
    amount_wei = wei_left if amount_pence == pence_left else wei_left * amount_pence // pence_left
    charge = parent or next((p.payment for p in reversed(hire_payments(hire))
                             if p.payment is not None and p.payment.state == "succeeded"), None)
    refund = _new_refund(hire, amount_wei, amount_pence, reason, key=key, charge=charge,
                         chain_payment=None, by=by, now=now)
    refund.suggested_address = payer
    db.session.commit()
    ask_for_refund_address(refund)
    return refund


def ask_for_refund_address(refund: CryptoRefund) -> None:
    """Email the customer a link to confirm where the ETH goes (once per refund)."""
    from ..mail import queue_email
    hire = refund.hire
    # Jobs have no request to build URLs from: the page's path (payments.crypto_refund_address).
    link = (f"{current_app.config['PUBLIC_BASE_URL'].rstrip('/')}/pay/{hire.reference}"
            f"/crypto/refunds/{refund.id}")
    queue_email(
        key=f"crypto-refund-address:{refund.id}", to=hire.customer.email,
        subject=f"Confirm where to send your refund for booking {hire.reference}",
        body=(f"Hello {hire.customer.full_name},\n\n"
              f"We owe you {format_eth(refund.amount_wei)} ETH for booking {hire.reference} "
              f"({refund.reason}).\n\nWe send it only to an address you confirm. Please confirm "
              f"it here:\n{link}\n\nACME Rentals\n"),
    )


def confirm_refund_address(refund: CryptoRefund, user: User, address: str, now: datetime) -> CryptoRefund:
    """The customer confirms the address: the refund is queued for the hot wallet. Commits."""
    from eth_utils import is_address, to_checksum_address
    if refund.hire.customer_id != user.id:
        raise CryptoError("That refund is not yours.")
    if refund.state != "awaiting_address":
        raise CryptoError("This refund's address is already confirmed.")
    if not is_address(address):
        raise CryptoError("Enter an Ethereum address: 0x followed by 40 hexadecimal characters.")
    if int(address, 16) == 0:
        raise CryptoError("That address would burn the money. Enter your own address.")
    refund.to_address = to_checksum_address(address)
    refund.address_confirmed_at = now
    refund.state = "queued"
    db.session.commit()
    log().info("crypto refund address confirmed", refund_id=refund.id)
    return refund


# --- staff review --------------------------------------------------------------------------------

def review_queue() -> list[ChainPayment]:
    return list(db.session.scalars(select(ChainPayment).where(ChainPayment.state == "review")
                                   .order_by(ChainPayment.id)))


def review_count() -> int:
    """How many payments wait for a person to decide (the staff navigation shows it)."""
    return db.session.scalar(select(func.count(ChainPayment.id)).where(ChainPayment.state == "review"))


def value_now_pence(payment: ChainPayment, now: datetime) -> int:
    """What a payment is worth at today's rate (late payments are judged at this)."""
    return pence_for_wei(payment.amount_wei, current_rate(now).pence_per_eth)


def can_accept(payment: ChainPayment) -> bool:
    """A reviewed payment can pay its booking only while that booking still waits for payment
    (and so still holds its car); for an expired or cancelled one, staff refund it."""
    return payment.quote is not None and payment.quote.hire.hire_state == HireState.HELD


def _reviewable(payment_id: int) -> ChainPayment:
    payment = db.session.scalar(select(ChainPayment).where(ChainPayment.id == payment_id).with_for_update())
    if payment is None or payment.state != "review":
        raise CryptoError("That payment is no longer waiting for review.")
    if payment.quote is None or payment.payment is None:
        raise CryptoError("This payment names no booking: refund it by hand from the merchant wallet.")
    return payment


def accept_reviewed(payment_id: int, by: User, now: datetime) -> ChainPayment:
    """Staff accept a reviewed payment as paying its booking; the hire is confirmed. Commits."""
    from ..audit import record
    payment = _reviewable(payment_id)
    hire = payment.quote.hire
    if not can_accept(payment):
        raise CryptoError(f"The booking is {hire.state}: it cannot be confirmed. Refund the payment instead.")
    old = {"state": payment.state, "outcome": payment.outcome}
    payment.state = "settled"
    payment.reviewed_by_id, payment.reviewed_at = by.id, now
    payment.quote.state = "paid"
    charge = payment.payment
    # What came beyond the price is the deposit, up to the quote's.
    deposit = min(payment.quote.deposit_pence,
                  max(charge.amount_pence - (payment.quote.amount_pence - payment.quote.deposit_pence), 0))
    if deposit:
        charge.amount_pence -= deposit
        _record_deposit(payment, payment.quote, charge, deposit, charge.amount_pence + deposit, now)
    charge.move_to("succeeded", why=f"accepted by staff after review ({payment.outcome})", now=now, by=by)
    record(by, "crypto_payment.accepted", payment, old, {"state": "settled", "hire": hire.reference})
    db.session.flush()
    confirm_paid_hire(hire, now)
    return payment


def refund_reviewed(payment_id: int, by: User, now: datetime) -> CryptoRefund:
    """Staff send a reviewed payment back in full (to an address the customer confirms). Commits."""
    from ..audit import record
    payment = _reviewable(payment_id)
    old = {"state": payment.state, "outcome": payment.outcome}
    payment.state = "returned"
    payment.reviewed_by_id, payment.reviewed_at = by.id, now
    payment.payment.move_to("succeeded", why="received; returned in full after staff review",
                            now=now, by=by)
    refund = _new_refund(payment.quote.hire, payment.amount_wei, payment.payment.amount_pence,
                         f"Returned after review: {payment.review_reason}"[:300],
                         key=f"crypto:returned:cp{payment.id}", charge=payment.payment,
                         chain_payment=payment, by=by, now=now)
    record(by, "crypto_payment.returned", payment, old, {"state": "returned", "refund_id": refund.id})
    db.session.commit()
    ask_for_refund_address(refund)
    return refund

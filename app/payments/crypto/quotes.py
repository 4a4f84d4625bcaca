"""Crypto quotes and what the customer sees: ETH amounts, quotes, payments on their way, status.

A quote locks the ETH amount (the price plus the refundable deposit) for QUOTE_MINUTES; fiat
stays the price of record. Nothing here moves money: the customer's wallet pays the
contract, and watching.py reads what arrived. `payment_status` is what the self-replacing
status fragment shows; `payment_keeps_hold` tells the scheduler not to expire a hold a
payment is on its way for.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Iterable, Optional


from sqlalchemy import select

from ...extensions import db
from ...integrations import chain
from ...logging_setup import log
from ...models import Hire, HireState
from ...models.crypto import ChainCursor, ChainPayment, CryptoQuote, CryptoRefund
from ...settings import settings
from ..ledger import amount_due_pence


WEI_PER_ETH = 10**18
BPS = 10_000
PAID_HIRE_STATES = frozenset({HireState.CONFIRMED.value, HireState.ACTIVE.value,
                              HireState.RETURNED.value, HireState.CLOSED.value})
# A hire in these states may owe a difference (a dearer change, an extension left to pay).
DIFFERENCE_HIRE_STATES = frozenset({HireState.CONFIRMED, HireState.ACTIVE})
RENTAL, DIFFERENCE = "rental", "difference"


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
    cfg = settings()
    return Rate(cfg.payments.crypto_fixed_rate_pence_per_eth, cfg.payments.crypto_rate_source[:120], now)


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
    return quote.amount_wei * settings().payments.crypto_underpaid_tolerance_bps // BPS


# --- quotes -----------------------------------------------------------------------------------

def available() -> bool:
    return chain.is_configured()


def difference_owed(hire: Hire) -> int:
    """What a confirmed or active hire still owes towards its price (0 for any other)."""
    if hire.hire_state not in DIFFERENCE_HIRE_STATES:
        return 0
    return amount_due_pence(hire)


def _payable_difference_quote(quote: Optional[CryptoQuote], owed: int) -> bool:
    return (quote is not None and quote.purpose == DIFFERENCE and quote.state == "open"
            and quote.amount_pence == owed)


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
    grace = timedelta(minutes=settings().payments.quote_minutes)
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
    cfg = settings()
    if hire.hold_expires_at is None:
        return False
    overdue = now - hire.hold_expires_at
    in_flight_grace = timedelta(minutes=cfg.payments.crypto_in_flight_grace_minutes)
    review_bound = timedelta(hours=cfg.payments.crypto_review_hold_hours)
    return ((overdue < in_flight_grace and crypto_payment_in_flight(hire, now))
            or (overdue < review_bound and bool(hires_under_review([hire.id]))))


def quote_for_page(hire: Hire, now: datetime) -> Optional[CryptoQuote]:
    """The quote the payment page shows: the latest, or a first one for a held hire, or one
    for the difference a confirmed hire owes (when the latest is not that)."""
    quote = latest_quote(hire)
    owed = difference_owed(hire)
    wanted = (quote is None and hire.hire_state == HireState.HELD) or (
        owed > 0 and not (_payable_difference_quote(quote, owed) and not quote.is_expired(now))
        and (quote is None or quote.state != "review"))
    if wanted and available():
        try:
            quote = create_quote(hire, now)
        except CryptoError:
            return None
    return quote


def create_quote(hire: Hire, now: datetime) -> CryptoQuote:
    """Lock an ETH price for the hire for QUOTE_MINUTES (never past the hold). Commits.

    While the latest quote is still open it is returned unchanged, so asking twice gives
    one price. A new one is refused while a payment is on its way.

    A confirmed or active hire that owes a difference (a dearer change, an extension not
    charged to a card) gets a "difference" quote for exactly what it owes, no deposit (the
    one paid with the rental, or the card's hold, still stands).
    """
    cfg = settings()
    if not available():
        raise CryptoUnavailable("Paying with crypto is not available at the moment. Please pay by card.")
    owed = difference_owed(hire)
    if hire.hire_state in DIFFERENCE_HIRE_STATES:
        if owed <= 0:
            raise CryptoError("This booking has nothing left to pay.")
    elif hire.hire_state != HireState.HELD:
        raise CryptoError("This booking is not waiting for payment.")
    elif hire.total_pence <= 0:
        raise CryptoError("This booking has nothing to pay.")
    elif hire.hold_expires_at is not None and hire.hold_expires_at <= now:
        raise CryptoError("The hold on this car has run out. Please book again.")
    latest = latest_quote(hire)
    if owed:
        if _payable_difference_quote(latest, owed) and not latest.is_expired(now):
            return latest
        if crypto_payment_in_flight(hire):
            raise CryptoError("A payment for this booking is on its way: wait for it to be confirmed.")
        if latest is not None and latest.state == "review":
            raise CryptoError("A payment for this booking is with our staff for review: wait for their decision.")
    else:
        if latest is not None and latest.state == "open" and not latest.is_expired(now):
            return latest
        if crypto_payment_in_flight(hire):
            raise CryptoError("A payment for this booking is on its way: wait for it to be confirmed.")
        if latest is not None and latest.state != "open":
            raise CryptoError("A payment for this booking has already arrived.")
    rate = current_rate(now)
    deposit = 0 if owed else hire.deposit_pence
    amount_pence = owed or hire.total_pence + hire.deposit_pence
    expires_at = now + timedelta(minutes=cfg.payments.quote_minutes)
    if hire.hold_expires_at is not None and not owed:
        expires_at = min(expires_at, hire.hold_expires_at)
    quote = CryptoQuote(
        hire_id=hire.id, booking_ref="0x" + secrets.token_hex(32), chain_id=cfg.payments.chain_id,
        contract_address=cfg.payments.chain_contract_address, amount_pence=amount_pence,
        deposit_pence=deposit, purpose=DIFFERENCE if owed else RENTAL, currency=hire.currency,
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
    cfg = settings()
    return cursor_key("payments", cfg.payments.chain_id, cfg.payments.chain_contract_address)


def last_scanned_block() -> int:
    cursor = db.session.scalar(select(ChainCursor).where(ChainCursor.key == payments_cursor_key()))
    return cursor.last_block if cursor else -1


def payment_status(hire: Hire, now: datetime) -> PaymentStatus:
    """Where the crypto payment of this hire stands, from what the watcher has recorded."""
    cfg = settings()
    quote = latest_quote(hire)
    payments = hire_payments(hire)
    refunds = list(db.session.scalars(select(CryptoRefund).where(CryptoRefund.hire_id == hire.id)
                                      .order_by(CryptoRefund.id)))
    status = PaymentStatus("waiting", quote, last_scanned_block(), cfg.payments.confirmations,
                           payments, refunds)
    states = {p.state for p in payments}
    owed = difference_owed(hire)
    if hire.state in PAID_HIRE_STATES and not owed:
        status.stage = "confirmed"
    elif "review" in states or (quote is not None and quote.state == "review"):
        status.stage = "review"
    elif "processing" in states:
        status.stage = "seen"
    elif "vanished" in states:
        status.stage = "vanished"
    elif hire.hire_state != HireState.HELD and not owed:
        status.stage = "not_payable"
    elif owed and not _payable_difference_quote(quote, owed):
        status.stage = "unavailable"  # the page makes the difference's quote; never pay an old one
    elif not owed and hire.hold_expires_at is not None and hire.hold_expires_at <= now:
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
    cfg = settings()
    cursor = db.session.scalar(select(ChainCursor).where(ChainCursor.key == payments_cursor_key()))
    if cursor is not None and now - cursor.updated_at < timedelta(seconds=cfg.payments.chain_scan_interval_seconds):
        return False
    waiting = db.session.scalar(select(CryptoQuote.id).where(CryptoQuote.state == "open",
                                                             CryptoQuote.expires_at > now - timedelta(hours=1)).limit(1))
    unsettled = db.session.scalar(select(ChainPayment.id).where(
        ChainPayment.state.in_(("processing", "vanished"))).limit(1))
    refunding = db.session.scalar(select(CryptoRefund.id).where(
        CryptoRefund.state.in_(("queued", "signed", "sent"))).limit(1))
    return any(x is not None for x in (waiting, unsettled, refunding))


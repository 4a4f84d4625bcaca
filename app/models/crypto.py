"""Crypto payments: price quotes in ETH, payments seen on chain, the watcher's cursor, refunds.

Fiat stays the price of record. A `CryptoQuote` locks the ETH amount for a hire for a
while and carries the 32-byte reference the customer's wallet passes to the payment
contract's `pay(bookingRef)`. The chain watcher records every `Paid` log once, as a
`ChainPayment` keyed by (transaction hash, log index), and settles it after enough
confirmations. Refunds are sent from the hot wallet and recorded as `CryptoRefund`s.

Each of the three moves like a hire or a payment: one transition table per model
(`QUOTE_TRANSITIONS`, `CHAIN_PAYMENT_TRANSITIONS`, `REFUND_TRANSITIONS`) and one method,
`move_to`, that checks the move against it and makes it (`InvalidCryptoTransition`
otherwise): the mixin of app/models/state_machine.py. Their history is the watcher's logs and the staff audit records (no history
table of their own).
"""

from __future__ import annotations

from datetime import datetime
from typing import Mapping, Optional

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from ..extensions import db
from .hires import Hire
from .payments import Payment
from .state_machine import InvalidStateTransition, StateMachine
from .types import UTCDateTime, utcnow
from .users import User

# 2**256 has 78 decimal digits.
WEI_DIGITS = 78


class Wei(TypeDecorator):
    """An amount of wei: an unbounded integer, stored as its decimal digits.

    A wei amount overflows a 64-bit integer above about 9.2 ETH, and SQLite has no exact
    wide numeric type, so the digits are stored as text on every database. Amounts are
    never compared in SQL, only in Python.
    """

    impl = String(WEI_DIGITS)
    cache_ok = True

    def process_bind_param(self, value: int | None, dialect):
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"wei must be a non-negative int, not {value!r}")
        return str(value)

    def process_result_value(self, value: str | None, dialect):
        return None if value is None else int(value)


QUOTE_STATES = ("open", "paid", "review")
CHAIN_PAYMENT_STATES = ("processing", "vanished", "settled", "review", "returned")
CHAIN_PAYMENT_OUTCOMES = ("", "exact", "within_tolerance", "overpaid", "duplicate", "partial",
                          "late", "several_bookings", "unknown_booking", "not_payable")
REFUND_STATES = ("awaiting_address", "queued", "signed", "sent", "confirmed", "failed")

# A quote is paid by a settled payment; one with a payment under review waits for staff.
QUOTE_TRANSITIONS: Mapping[str, frozenset[str]] = {
    "open": frozenset({"paid", "review"}),
    "review": frozenset({"paid"}),
    "paid": frozenset(),
}
# Seen on chain (processing); gone in a reorganisation (vanished) until seen again; settled
# once deep enough, or to staff review, who accept it (settled) or send it back (returned).
CHAIN_PAYMENT_TRANSITIONS: Mapping[str, frozenset[str]] = {
    "processing": frozenset({"vanished", "settled", "review"}),
    "vanished": frozenset({"processing"}),
    "review": frozenset({"settled", "returned"}),
    "settled": frozenset(),
    "returned": frozenset(),
}
# The customer confirms the address (queued); the hot wallet signs, then broadcasts (sent);
# the chain confirms it, or it reverted (failed).
REFUND_TRANSITIONS: Mapping[str, frozenset[str]] = {
    "awaiting_address": frozenset({"queued"}),
    "queued": frozenset({"signed"}),
    "signed": frozenset({"sent"}),
    "sent": frozenset({"confirmed", "failed"}),
    "confirmed": frozenset(),
    "failed": frozenset(),
}


class InvalidCryptoTransition(InvalidStateTransition):
    """A quote, chain payment or crypto refund was asked to move outside its table."""


class _Transitions(StateMachine):
    """The crypto models' state machine: their refusals are InvalidCryptoTransition."""

    InvalidTransition = InvalidCryptoTransition


class CryptoQuote(_Transitions, db.Model):
    """The ETH price of one hire at a rate locked until `expires_at`."""

    __tablename__ = "crypto_quotes"
    TRANSITIONS = QUOTE_TRANSITIONS
    __table_args__ = (
        CheckConstraint(f"state IN {QUOTE_STATES!r}", name="state_known"),
        CheckConstraint("amount_pence > 0", name="amount_positive"),
        CheckConstraint("deposit_pence >= 0", name="deposit_not_negative"),
        CheckConstraint("rate_pence_per_eth > 0", name="rate_positive"),
        CheckConstraint("expires_at > created_at", name="expires_after_created"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    hire_id: Mapped[int] = mapped_column(ForeignKey("hires.id"), index=True)
    # "0x" + 64 hex digits: the bytes32 passed to pay(); random, so it names this quote only.
    booking_ref: Mapped[str] = mapped_column(String(66), unique=True)
    chain_id: Mapped[int] = mapped_column(BigInteger)  # chain ids exceed 32 bits
    contract_address: Mapped[str] = mapped_column(String(42))
    amount_pence: Mapped[int]  # the fiat price of record at the time of the quote, deposit included
    # The refundable deposit inside amount_pence: there is no card to hold it on, so it is paid
    # with the price and returned less any charges when the car comes back.
    deposit_pence: Mapped[int] = mapped_column(default=0, server_default="0")
    # "rental": the price (and deposit) of a held hire; "difference": what a confirmed or
    # active hire still owes (a dearer change, an extension), no deposit.
    purpose: Mapped[str] = mapped_column(String(10), default="rental", server_default="rental")
    currency: Mapped[str] = mapped_column(String(3), default="GBP")
    rate_pence_per_eth: Mapped[int]
    rate_source: Mapped[str] = mapped_column(String(120))
    rate_at: Mapped[datetime] = mapped_column(UTCDateTime())
    amount_wei: Mapped[int] = mapped_column(Wei())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    state: Mapped[str] = mapped_column(String(12), default="open")
    # What the customer's wallet said it sent: shown to the customer, never trusted for money.
    wallet_tx_hash: Mapped[str] = mapped_column(String(66), default="")
    wallet_reported_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())

    hire: Mapped[Hire] = relationship()
    payments: Mapped[list["ChainPayment"]] = relationship(
        back_populates="quote", order_by="ChainPayment.id")

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires_at


class ChainPayment(_Transitions, db.Model):
    """One `Paid` log of the payment contract, recorded once, followed until settled."""

    __tablename__ = "chain_payments"
    TRANSITIONS = CHAIN_PAYMENT_TRANSITIONS
    __table_args__ = (
        UniqueConstraint("tx_hash", "log_index"),
        CheckConstraint(f"state IN {CHAIN_PAYMENT_STATES!r}", name="state_known"),
        CheckConstraint(f"outcome IN {CHAIN_PAYMENT_OUTCOMES!r}", name="outcome_known"),
        CheckConstraint("log_index >= 0", name="log_index_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    chain_id: Mapped[int] = mapped_column(BigInteger)  # chain ids exceed 32 bits
    contract_address: Mapped[str] = mapped_column(String(42))
    tx_hash: Mapped[str] = mapped_column(String(66))
    log_index: Mapped[int]
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str] = mapped_column(String(66))
    booking_ref: Mapped[str] = mapped_column(String(66), index=True)
    payer: Mapped[str] = mapped_column(String(42))
    amount_wei: Mapped[int] = mapped_column(Wei())
    quote_id: Mapped[Optional[int]] = mapped_column(ForeignKey("crypto_quotes.id"), index=True)
    hire_id: Mapped[Optional[int]] = mapped_column(ForeignKey("hires.id"), index=True)
    state: Mapped[str] = mapped_column(String(12), default="processing")
    outcome: Mapped[str] = mapped_column(String(20), default="")
    review_reason: Mapped[str] = mapped_column(String(300), default="")
    paid_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())  # the block's time
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    settled_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    reviewed_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    reviewed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    payment_id: Mapped[Optional[int]] = mapped_column(ForeignKey("payments.id"))

    quote: Mapped[Optional[CryptoQuote]] = relationship(back_populates="payments")
    hire: Mapped[Optional[Hire]] = relationship()
    payment: Mapped[Optional[Payment]] = relationship()
    reviewed_by: Mapped[Optional[User]] = relationship()

    def confirmations(self, head: int) -> int:
        """Blocks on top of the payment's, its own included (0 when not yet mined)."""
        return max(0, head - self.block_number + 1)


class ChainCursor(db.Model):
    """How far the watcher has read a contract's logs; also the lock that serialises it."""

    __tablename__ = "chain_cursors"

    id: Mapped[int] = mapped_column(primary_key=True)
    # "<purpose>:<chain id>:<address>", e.g. "payments:1337:0xabc..." or "hot-wallet:1:0xdef..."
    key: Mapped[str] = mapped_column(String(120), unique=True)
    last_block: Mapped[int] = mapped_column(BigInteger, default=-1)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CryptoRefund(_Transitions, db.Model):
    """ETH going back to a customer, sent from the hot wallet exactly once.

    The signed transaction is stored before it is broadcast, so a retried job sends the
    very same transaction (same nonce, same hash) instead of signing a second one.
    """

    __tablename__ = "crypto_refunds"
    TRANSITIONS = REFUND_TRANSITIONS
    __table_args__ = (
        # One nonce, one transaction: two refunds can never be signed with the same nonce.
        UniqueConstraint("from_address", "nonce"),
        CheckConstraint(f"state IN {REFUND_STATES!r}", name="state_known"),
        CheckConstraint("amount_pence >= 0", name="amount_pence_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    hire_id: Mapped[int] = mapped_column(ForeignKey("hires.id"), index=True)
    chain_payment_id: Mapped[Optional[int]] = mapped_column(ForeignKey("chain_payments.id"))
    payment_id: Mapped[Optional[int]] = mapped_column(ForeignKey("payments.id"))
    idempotency_key: Mapped[str] = mapped_column(String(80), unique=True)
    amount_wei: Mapped[int] = mapped_column(Wei())
    amount_pence: Mapped[int]  # its value at the rate the customer paid
    reason: Mapped[str] = mapped_column(String(300))
    state: Mapped[str] = mapped_column(String(16), default="awaiting_address")
    # Offered to the customer to confirm (the payer), never used without that confirmation.
    suggested_address: Mapped[str] = mapped_column(String(42), default="")
    to_address: Mapped[str] = mapped_column(String(42), default="")
    address_confirmed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    from_address: Mapped[Optional[str]] = mapped_column(String(42))
    nonce: Mapped[Optional[int]]
    raw_tx: Mapped[str] = mapped_column(Text, default="")
    tx_hash: Mapped[str] = mapped_column(String(66), default="")
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str] = mapped_column(String(300), default="")
    requested_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    confirmed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())

    hire: Mapped[Hire] = relationship()
    chain_payment: Mapped[Optional[ChainPayment]] = relationship()
    payment: Mapped[Optional[Payment]] = relationship()
    requested_by: Mapped[Optional[User]] = relationship()

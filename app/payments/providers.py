"""The payment providers' one interface: what booking, the counter and the scheduler call.

In the spirit of pretix's payment providers, each way of paying (`card`: Stripe; `crypto`:
ETH to the payment contract) is a `PaymentProvider` chosen by the payment's `method`
(`provider_for`). "prepare" only records what should happen and never moves money; the
customer then pays on the provider's side. "capture", "release" and "refund" move money
(through the provider's jobs). The providers are thin: they delegate to the functions of
app/payments/card and app/payments/crypto.

The hire-level calls below (`take_deposit`/`ensure_deposit_hold`, `capture_deposit`,
`release_deposit`) choose the provider from the hire's deposit; `payments.refunds`
splits a refund over the hire's charges and sends each part through its charge's provider.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime
from typing import Any, Optional

from ..extensions import db
from ..logging_setup import log
from ..models import CryptoRefund, Hire, Payment, User, utcnow
from . import card, crypto
from .ledger import (CARD, CRYPTO, PaymentError, RefundError, describe, eth_deposit, latest_hold,
                     paid_in_eth, payments_of)


class PaymentProvider(ABC):
    """One way of paying. `method` is the value of `Payment.method` it owns."""

    method: str

    @abstractmethod
    def prepare_payment(self, hire: Hire, user: User, *, now: datetime, **details: Any) -> Any:
        """Start paying for a hire: record what is to be paid. Never moves money."""

    @abstractmethod
    def take_deposit(self, hire: Hire, *, by: Optional[User], now: Optional[datetime]) -> Optional[Payment]:
        """The hire's deposit, taken or being taken (a hold, or the ETH paid with the price)."""

    @abstractmethod
    def capture_deposit(self, hire: Hire, hold: Optional[Payment], amount_pence: int,
                        by: Optional[User], *, now: datetime, reason: str) -> Payment:
        """Keep `amount_pence` of the deposit and give the rest back (0 keeps nothing)."""

    @abstractmethod
    def prepare_refund(self, hire: Hire, charge: Payment, amount_pence: int, reason: str,
                       by: Optional[User], *, key: str, now: datetime) -> Any:
        """Record a refund of part of `charge` (the caller commits). Never moves money."""

    @abstractmethod
    def execute_refund(self, prepared: Any) -> Payment:
        """Send the refund recorded by `prepare_refund` (after the commit): money moves."""

    def describe(self, payment: Payment) -> str:
        """A line for the receipt."""
        return describe(payment)


class CardProvider(PaymentProvider):
    """Stripe: Checkout for the price, a hold on the saved card for the deposit."""

    method = CARD

    def prepare_payment(self, hire, user, *, now, **details):
        return card.start_card_checkout(hire, user, now=now, **details)

    def take_deposit(self, hire, *, by, now):
        try:
            return card.place_deposit_hold(hire, now=now, by=by)
        except PaymentError as exc:
            log().info("no deposit hold at pickup", hire_id=hire.id, reason=exc.message)
            return None

    def capture_deposit(self, hire, hold, amount_pence, by, *, now, reason):
        return card.capture_hold(hire, hold, amount_pence, by, now=now, reason=reason)

    def prepare_refund(self, hire, charge, amount_pence, reason, by, *, key, now):
        return card.new_card_refund(hire, charge, amount_pence, reason, by, key=key, now=now)

    def execute_refund(self, prepared: Payment) -> Payment:
        return card.send_card_refund(prepared)


class CryptoProvider(PaymentProvider):
    """ETH: a quote for the price plus the deposit; refunds to an address the customer confirms."""

    method = CRYPTO

    def prepare_payment(self, hire, user, *, now, **details):
        return crypto.create_quote(hire, now)

    def take_deposit(self, hire, *, by, now):
        return eth_deposit(hire)  # paid with the price: already taken

    def capture_deposit(self, hire, hold, amount_pence, by, *, now, reason):
        return crypto.settle_eth_deposit(hire, hold, amount_pence, by, now=now, reason=reason)

    def prepare_refund(self, hire, charge, amount_pence, reason, by, *, key, now):
        # The crypto refund records and commits its own rows when it is executed.
        return (hire, amount_pence, reason, by, key, now)

    def execute_refund(self, prepared) -> Payment:
        hire, amount_pence, reason, by, key, now = prepared
        try:
            refund: CryptoRefund = crypto.request_crypto_refund(
                hire, amount_pence, reason, by, idempotency_key=key, now=now)
        except crypto.CryptoError as exc:
            raise RefundError(str(exc)) from exc
        return refund.payment


PROVIDERS: dict[str, PaymentProvider] = {CARD: CardProvider(), CRYPTO: CryptoProvider()}


def provider_for(method: str) -> PaymentProvider:
    """The provider of payments with this `method` (anything not card was paid in crypto)."""
    return PROVIDERS[CARD] if method == CARD else PROVIDERS[CRYPTO]


# --- the deposit, for the counter, booking and the scheduler -----------------------------------

def ensure_deposit_hold(hire: Hire, *, by: Optional[User] = None,
                        now: Optional[datetime] = None) -> Optional[Payment]:
    """At pickup: the active hold, or a new one on the saved card (again after a decline:
    the customer is at the counter). A deposit paid in ETH with the price is returned as it is.
    Never raises: with no saved card and no deposit paid, returns None and the counter takes
    the deposit another way."""
    deposit = PROVIDERS[CRYPTO].take_deposit(hire, by=by, now=now)
    if deposit is not None:
        return deposit
    return PROVIDERS[CARD].take_deposit(hire, by=by, now=now)


take_deposit = ensure_deposit_hold


def capture_deposit(hire: Hire, amount_pence: int, by: Optional[User], *, now: Optional[datetime] = None,
                    reason: str = "") -> Payment:
    """Take `amount_pence` of the deposit (0: none) and give the rest back; jobs move the money.

    Called once per hire at return (counter). Calling again with the same amount returns the
    same hold; with another amount while the first is under way, it is refused.
    """
    now = now or utcnow()
    hold = latest_hold(hire)
    children = [p for p in payments_of(hire) if hold is not None and p.parent_id == hold.id
                and p.kind in ("capture", "release", "refund")]
    if children:
        captured = sum(p.amount_pence for p in children if p.kind == "capture")
        if captured != amount_pence:
            raise PaymentError("The deposit has already been settled.")
        return hold
    provider = PROVIDERS[CRYPTO] if paid_in_eth(hold) else PROVIDERS[CARD]
    return provider.capture_deposit(hire, hold, amount_pence, by, now=now, reason=reason)


def release_deposit(hire: Hire, by: Optional[User], *, reason: str,
                    now: Optional[datetime] = None) -> Optional[Payment]:
    """The hire ended before the car went out (cancelled, refused at pickup): give the whole
    deposit back. A card hold is released; a deposit paid in ETH is refunded. Safe to repeat;
    never raises (what cannot be done is logged for staff)."""
    now = now or utcnow()
    hold = latest_hold(hire)
    if hold is None or not (hold.state == "authorised" or paid_in_eth(hold)):
        return None
    try:
        return capture_deposit(hire, 0, by, now=now, reason=reason)
    except PaymentError as exc:
        db.session.rollback()
        log().warning("deposit not released", hire_id=hire.id, error=exc.message)
        return None

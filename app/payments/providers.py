"""The payment providers' one interface: what booking, the counter and the scheduler call.

In the spirit of pretix's payment providers, each way of paying (`card`: Stripe; `crypto`:
ETH to the payment contract) is a `PaymentProvider` chosen by the payment's `method`
(`provider_for`). "prepare" only records what should happen and never moves money; the
customer then pays on the provider's side. "capture", "release" and "refund" move money
(through the provider's jobs). The providers are thin: `CardProvider` (app/payments/card/
provider.py) and `CryptoProvider` (app/payments/crypto/provider.py) delegate to the
functions of their package. They import this interface, never the other way round, and
app/payments/__init__.py registers them (`register`), so that `payments.refunds`, which
the card provider calls to give back money not owed, reaches them here without a cycle.

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
from ..models import Hire, Payment, User, utcnow
from .ledger import CARD, CRYPTO, PaymentError, describe, latest_hold, paid_in_eth, payments_of


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

    def release_holds(self, hire: Hire, by: Optional[User], *, now: datetime,
                      reason: str) -> Optional[Payment]:
        """The hire ended before the car went out: let go of whatever this provider still
        holds of the customer's money without having taken it (a card hold, an open
        checkout). Returns the deposit hold let go, if any. Never raises."""
        return None

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


# Filled once by app/payments/__init__.py with the card and the crypto provider. This module
# never imports a provider: they import it (the interface), and refunds reach them here.
PROVIDERS: dict[str, PaymentProvider] = {}


def register(provider: PaymentProvider) -> None:
    """Make `provider` the one for payments with its `method` (at import of app.payments)."""
    PROVIDERS[provider.method] = provider


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
    """The hire ended before the car went out (cancelled, expired, no-show, refused at
    pickup): give the whole deposit back, and let go of anything still held on the card. A
    card hold is released at whatever stage it is (authorised, or still being placed), an
    open Checkout is closed at Stripe; a deposit paid in ETH is refunded. Safe to repeat;
    never raises (what cannot be done is logged for staff)."""
    now = now or utcnow()
    hold = latest_hold(hire)
    if not paid_in_eth(hold):
        return PROVIDERS[CARD].release_holds(hire, by, now=now, reason=reason)
    try:
        return capture_deposit(hire, 0, by, now=now, reason=reason)
    except PaymentError as exc:
        db.session.rollback()
        log().warning("deposit not released", hire_id=hire.id, error=exc.message)
        return None

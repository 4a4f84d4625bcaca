"""The money record of a hire, shared by both payment providers (card and crypto).

Every movement of money is a `Payment` row (kind: charge, deposit_hold, capture, release,
refund; method: card or crypto). These functions read those rows: what was paid, what is
owed, what the deposit is, the receipt's lines. They never change a row, except that
`lock_payment` re-reads one under a row lock for the provider about to move it.
`PaymentError` is the refusal every payment service raises, with a message to show.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

from sqlalchemy import select

from ..extensions import db
from ..models import Hire, HireState, Payment


S = HireState
CARD = "card"
CRYPTO = "crypto"
# details["purpose"] of a card charge: the rental through Checkout, or a later charge on
# the saved card (damage, fuel, late return...).
CHECKOUT = "checkout"
SAVED_CARD = "saved_card"
# A charge on the saved card for extending the hire (issue 18): part of the rental price.
EXTENSION = "extension"
# Hire states in which the customer owes the price of the hire.
OWING_STATES = frozenset({S.CONFIRMED, S.ACTIVE, S.RETURNED, S.CLOSED})


class PaymentError(Exception):
    """A payment action refused, with a message to show."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class PaymentNotFound(PaymentError):
    """No such hire for this person (shown as 404: others' bookings are not revealed)."""


class RefundError(PaymentError):
    """A refund that cannot be made as asked (nothing paid, or more than was paid)."""


# --- reading ---------------------------------------------------------------------------------

def payments_of(hire: Hire) -> list[Payment]:
    return list(db.session.scalars(
        select(Payment).where(Payment.hire_id == hire.id).order_by(Payment.id)))


def lock_payment(payment_id: int) -> Optional[Payment]:
    """Re-read a payment under a row lock (PostgreSQL), so two jobs cannot move it at once.

    Public for the providers' jobs (app/jobs/payments.py) that finish a payment themselves.
    FOR NO KEY UPDATE, as the hire's lock (booking/lifecycle.py: lock_hire): rows that only
    refer to the payment (its state changes, a hold's release) are not held up by it."""
    return db.session.scalars(
        select(Payment).where(Payment.id == payment_id).with_for_update(key_share=True)
        .execution_options(populate_existing=True)).one_or_none()


def purpose(payment: Payment) -> str:
    return (payment.details or {}).get("purpose", "")


def checkout_charges(hire: Hire) -> list[Payment]:
    return [p for p in payments_of(hire)
            if p.method == CARD and p.kind == "charge" and purpose(p) == CHECKOUT]


def latest_checkout(hire: Hire) -> Optional[Payment]:
    charges = checkout_charges(hire)
    return charges[-1] if charges else None


def refunded_pence(charge: Payment, payments: Iterable[Payment]) -> int:
    """Refunds of this charge that are done or on their way (failed ones do not count)."""
    return sum(p.amount_pence for p in payments
               if p.kind == "refund" and p.parent_id == charge.id and p.state != "failed"
               and p.state != "cancelled")


def net_paid_pence(hire: Hire) -> int:
    """Money taken for the hire (charges and captured deposits) less refunds, done or on their way."""
    payments = payments_of(hire)
    taken = sum(p.amount_pence for p in payments
                if p.kind in ("charge", "capture") and p.state == "succeeded")
    given_back = sum(p.amount_pence for p in payments
                     if p.kind == "refund" and p.state not in ("failed", "cancelled"))
    return taken - given_back


def rental_paid_pence(hire: Hire) -> int:
    """What has been paid towards the hire's price (charges at checkout, less their refunds)."""
    payments = payments_of(hire)
    return sum(p.amount_pence - refunded_pence(p, payments) for p in payments
               if p.kind == "charge" and p.state == "succeeded" and purpose(p) != SAVED_CARD)


def amount_due_pence(hire: Hire) -> int:
    return max(hire.total_pence - rental_paid_pence(hire), 0)


def ever_confirmed(hire: Hire) -> bool:
    return hire.hire_state in OWING_STATES or any(
        c.to_state == S.CONFIRMED.value for c in hire.state_changes)


def saved_card_of(hire: Hire) -> Optional[Payment]:
    """The checkout charge whose card was saved for later (deposit, extra charges)."""
    for charge in reversed(checkout_charges(hire)):
        if charge.state == "succeeded" and (charge.details or {}).get("customer"):
            return charge
    return None


# --- the deposit -------------------------------------------------------------------------------

def active_hold(hire: Hire) -> Optional[Payment]:
    for payment in reversed(payments_of(hire)):
        if payment.kind == "deposit_hold" and payment.state in ("pending", "processing", "authorised"):
            return payment
    return None


def latest_hold(hire: Hire) -> Optional[Payment]:
    holds = [p for p in payments_of(hire) if p.kind == "deposit_hold"]
    return holds[-1] if holds else None


def paid_in_eth(hold: Optional[Payment]) -> bool:
    return hold is not None and hold.method == CRYPTO and hold.state == "succeeded"


def eth_deposit(hire: Hire) -> Optional[Payment]:
    """The deposit paid in ETH with the price (received, so "succeeded"); None for card hires."""
    hold = latest_hold(hire)
    return hold if paid_in_eth(hold) else None


# --- the receipt -------------------------------------------------------------------------------

def describe(payment: Payment) -> str:
    """A line for the receipt."""
    labels = {
        ("charge", CHECKOUT): "Card payment",
        ("charge", SAVED_CARD): "Charge to your saved card",
        ("charge", EXTENSION): "Extension charged to your saved card",
        ("deposit_hold", "deposit"): "Deposit hold on your card",
        ("capture", "deposit"): "Deposit kept",
        ("release", "deposit"): "Deposit released",
    }
    if payment.method == CRYPTO and payment.kind in ("deposit_hold", "capture"):
        return {"deposit_hold": "Deposit paid in ETH with the price",
                "capture": "Deposit kept (crypto)"}[payment.kind]
    label = labels.get((payment.kind, purpose(payment)))
    if label is None:
        label = {"refund": "Refund", "charge": "Payment", "deposit_hold": "Deposit hold",
                 "capture": "Deposit kept", "release": "Deposit released"}.get(payment.kind, payment.kind)
        if payment.method == "crypto":
            label = f"{label} (crypto)"
    return label


def receipt_lines(hire: Hire) -> list[dict[str, Any]]:
    lines = []
    for payment in payments_of(hire):
        card = (payment.details or {}).get("card") or {}
        lines.append({"payment": payment, "label": describe(payment),
                      "card": f"{card.get('brand', '').title()} •••• {card['last4']}" if card.get("last4") else "",
                      "sign": -1 if payment.kind in ("refund", "release") else 1})
    return lines

"""Giving money back: `request_refund`, called by booking (cancellation, cheaper change), the
counter (refusal at pickup) and payments itself (money that was not owed).

A refund is a Payment row (kind "refund", parent: the charge it returns) with a fixed
idempotency key, recorded before any call; a job then asks Stripe (Refund.create) with the
key "refund:<payment id>", so a job retried after Stripe answered gets the same refund back
instead of a second one. Money paid in crypto goes back through the crypto area's own
`request_crypto_refund` (to an address the customer confirms).
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import select

from .. import audit
from ..extensions import db
from ..filters import money
from ..logging_setup import log
from ..models import Hire, Payment, User, utcnow
from .services import SAVED_CARD, PaymentError, _purpose, payments_of, refunded_pence


class RefundError(PaymentError):
    """A refund that cannot be made as asked (nothing paid, or more than was paid)."""


def refundable_charges(hire: Hire, payment: Optional[Payment] = None) -> list[tuple[Payment, int]]:
    """(charge, amount still refundable) for the charges a refund can come from, newest first.

    Without `payment`: what was paid for the hire's price (card at checkout, crypto), not
    separate charges on the saved card, which are refunded only when named.
    """
    payments = payments_of(hire)
    if payment is not None:
        candidates = [payment]
    else:
        candidates = [p for p in reversed(payments) if p.kind == "charge" and _purpose(p) != SAVED_CARD]
    found = []
    for charge in candidates:
        if charge.kind != "charge" or charge.state != "succeeded":
            continue
        left = charge.amount_pence - refunded_pence(charge, payments)
        if left > 0:
            found.append((charge, left))
    return found


def request_refund(hire: Hire, amount_pence: int, reason: str, by: Optional[User], *,
                   key: Optional[str] = None, payment: Optional[Payment] = None,
                   now: Optional[datetime] = None) -> list[Payment]:
    """Give back `amount_pence` of what was paid for `hire`. Commits; enqueues the refund job(s).

    The money comes from the hire's charges, newest first (card refunds through Stripe;
    crypto through the crypto area, to an address the customer confirms); `payment` names
    one charge instead. `key` makes the request itself idempotent (the same key again
    returns the refunds already recorded), e.g. "hire:42:cancel-refund"; without it each
    call is a new refund. `by` is the person asking (None: the system). Returns the refund
    Payment rows. Raises RefundError when more is asked than can be given back.
    """
    now = now or utcnow()
    if amount_pence <= 0:
        raise RefundError("A refund must be more than nothing.")
    if key is not None:
        existing = _existing(key)
        if existing:
            return existing
    else:
        count = len([p for p in payments_of(hire) if p.kind == "refund"])
        key = f"hire:{hire.id}:refund:{count + 1}"
    sources = refundable_charges(hire, payment)
    available = sum(left for _, left in sources)
    if amount_pence > available:
        raise RefundError(f"Only {money(available, hire.currency)} paid for this booking can be "
                          f"refunded, not {money(amount_pence, hire.currency)}.")
    remaining, card_refunds, crypto_parts = amount_pence, [], []
    for index, (charge, left) in enumerate(sources):
        if remaining <= 0:
            break
        take = min(left, remaining)
        remaining -= take
        row_key = key if index == 0 else f"{key}:{index}"
        if charge.method == "card":
            refund = Payment(hire_id=hire.id, method="card", kind="refund", state="pending",
                             amount_pence=take, currency=charge.currency, parent_id=charge.id,
                             idempotency_key=row_key, reason=reason[:200], created_at=now,
                             requested_by_id=by.id if by else None,
                             details={"purpose": "refund"})
            refund.note(f"refund of {money(take, charge.currency)} requested: {reason}", now=now, by=by)
            db.session.add(refund)
            card_refunds.append(refund)
        else:
            crypto_parts.append((take, row_key))
    if by is not None and by.is_staff:
        audit.record(by, "payment.refund_requested", hire,
                     new={"amount_pence": amount_pence, "reason": reason, "key": key}, at=now)
    db.session.commit()
    from ..jobs import enqueue
    from ..jobs.payments import create_refund
    for refund in card_refunds:
        log().info("card refund requested", hire_id=hire.id, payment_id=refund.id,
                   amount_pence=refund.amount_pence)
        enqueue(create_refund, refund.id)
    rows = list(card_refunds)
    for take, row_key in crypto_parts:
        rows.append(_crypto_refund(hire, take, reason, by, row_key, now))
    return rows


def _existing(key: str) -> list[Payment]:
    rows = db.session.scalars(select(Payment).where(
        (Payment.idempotency_key == key) | Payment.idempotency_key.startswith(f"{key}:")
        | (Payment.idempotency_key == f"refund:{key}")
        | Payment.idempotency_key.startswith(f"refund:{key}:")).order_by(Payment.id)).all()
    return [p for p in rows if p.kind == "refund"]


def _crypto_refund(hire: Hire, amount_pence: int, reason: str, by: Optional[User], key: str,
                   now: datetime) -> Payment:
    """Delegate to the crypto area; its refund is recorded with its own Payment row."""
    from . import crypto
    try:
        refund = crypto.request_crypto_refund(hire, amount_pence, reason, by, idempotency_key=key,
                                              now=now)
    except crypto.CryptoError as exc:
        raise RefundError(str(exc)) from exc
    return refund.payment


def refund_params(refund: Payment) -> dict:
    """Refund.create for a card refund: the same parameters on every retry (same key)."""
    charge = refund.parent
    return {"payment_intent": charge.provider_ref, "amount": refund.amount_pence,
            "reason": "requested_by_customer",
            "metadata": {"payment_id": str(refund.id), "hire_id": str(refund.hire_id),
                         "hire_reference": refund.hire.reference}}

"""Giving money back: `request_refund`, called by booking (cancellation, cheaper change), the
counter (refusal at pickup) and payments itself (money that was not owed).

The amount is split over the hire's charges, newest first, and each part goes back through
its charge's provider (app/payments/providers.py): every part is recorded ("prepared")
and committed before any is sent. A card refund is a Payment row (kind "refund", parent: the
charge it returns) with a fixed idempotency key; a job then asks Stripe (Refund.create) with
the key "refund:<payment id>", so a job retried after Stripe answered gets the same refund
back instead of a second one. Money paid in crypto goes back through the crypto provider's
`request_crypto_refund` (to an address the customer confirms). `money_back` sums, per
hire, what was paid and given back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Optional

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from .. import audit, events
from ..extensions import db
from ..filters import money
from ..models import Hire, Payment, User, utcnow
from .ledger import CARD, CRYPTO, SAVED_CARD, RefundError, payments_of, purpose, refunded_pence
from .providers import provider_for


@dataclass(frozen=True)
class MoneyBack:
    """What a customer paid for a hire and what was given back (made or on its way)."""

    paid_pence: int
    refunded_pence: int
    pending_pence: int  # of refunded_pence, still on its way
    last_refund_at: Optional[datetime]  # made (or, while on its way, asked for) last
    # The deposit hold on the card: its amount (0: none was placed), whether it has been let
    # go ("released"), is being let go ("releasing") or was (partly) kept ("captured").
    hold_pence: int = 0
    hold_outcome: str = ""
    hold_released_at: Optional[datetime] = None

    @property
    def kept_pence(self) -> int:
        return max(self.paid_pence - self.refunded_pence, 0)


def _taken_pence(p: Payment) -> int:
    """Money this row took from the customer: charges, a captured card hold, an ETH deposit.

    (A crypto "capture" is kept out of the ETH deposit already counted; a card hold that was
    only authorised took nothing.)"""
    if p.state != "succeeded":
        return 0
    if p.kind == "charge" or (p.kind == "capture" and p.method == CARD) \
            or (p.kind == "deposit_hold" and p.method == CRYPTO):
        return p.amount_pence
    return 0


def _refund_time(refund: Payment) -> datetime:
    made = [c.at for c in refund.state_changes if c.to_state == "succeeded"]
    return made[-1] if made else refund.created_at


def _card_hold(payments: list[Payment]) -> tuple[int, str, Optional[datetime]]:
    """(amount, outcome, released at) of the hire's last card deposit hold that reached the card
    (or may have: one still being placed)."""
    holds = [p for p in payments if p.kind == "deposit_hold" and p.method == CARD and p.state != "failed"
             and (p.provider_ref or p.state in ("pending", "processing"))]  # else never on the card
    if not holds:
        return 0, "", None
    hold = holds[-1]
    if hold.state == "cancelled":
        released = [c.at for c in hold.state_changes if c.to_state == "cancelled"]
        return hold.amount_pence, "released", released[-1] if released else None
    if hold.state == "succeeded":
        return hold.amount_pence, "captured", None
    return hold.amount_pence, "releasing", None


def money_back(hire_ids: Iterable[int]) -> dict[int, MoneyBack]:
    """Paid and refunded, per hire, for hires listed together (one query for all)."""
    ids = list(hire_ids)
    rows = db.session.scalars(select(Payment).where(Payment.hire_id.in_(ids))
                              .options(selectinload(Payment.state_changes))
                              .order_by(Payment.id)).all() if ids else []
    found: dict[int, MoneyBack] = {}
    for hire_id in ids:
        payments = [p for p in rows if p.hire_id == hire_id]
        refunds = [p for p in payments if p.kind == "refund" and p.state not in ("failed", "cancelled")]
        found[hire_id] = MoneyBack(
            paid_pence=sum(_taken_pence(p) for p in payments),
            refunded_pence=sum(p.amount_pence for p in refunds),
            pending_pence=sum(p.amount_pence for p in refunds if p.state != "succeeded"),
            last_refund_at=max((_refund_time(p) for p in refunds), default=None),
            **dict(zip(("hold_pence", "hold_outcome", "hold_released_at"), _card_hold(payments))))
    return found


def refundable_charges(hire: Hire, payment: Optional[Payment] = None) -> list[tuple[Payment, int]]:
    """(charge, amount still refundable) for the charges a refund can come from, newest first.

    Without `payment`: what was paid for the hire's price (card at checkout, crypto), not
    separate charges on the saved card, which are refunded only when named.
    """
    payments = payments_of(hire)
    if payment is not None:
        candidates = [payment]
    else:
        candidates = [p for p in reversed(payments) if p.kind == "charge" and purpose(p) != SAVED_CARD]
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
    remaining, prepared = amount_pence, []
    for index, (charge, left) in enumerate(sources):
        if remaining <= 0:
            break
        take = min(left, remaining)
        remaining -= take
        row_key = key if index == 0 else f"{key}:{index}"
        provider = provider_for(charge.method)
        prepared.append((provider, provider.prepare_refund(hire, charge, take, reason, by,
                                                           key=row_key, now=now)))
    if by is not None and by.is_staff:
        audit.record(by, "payment.refund_requested", hire,
                     new={"amount_pence": amount_pence, "reason": reason, "key": key}, at=now)
    db.session.commit()
    # Card refunds go to their jobs first, then crypto ones are asked for (each commits).
    prepared.sort(key=lambda item: item[0].method != CARD)
    refunds = [provider.execute_refund(plan) for provider, plan in prepared]
    # The credit note (app/paperwork), once per key.
    events.report(events.refund_requested, hire, amount_pence=amount_pence, reason=reason, key=key,
                  by=by, now=now)
    return refunds


def _existing(key: str) -> list[Payment]:
    rows = db.session.scalars(select(Payment).where(
        (Payment.idempotency_key == key) | Payment.idempotency_key.startswith(f"{key}:")
        | (Payment.idempotency_key == f"refund:{key}")
        | Payment.idempotency_key.startswith(f"refund:{key}:")).order_by(Payment.id)).all()
    return [p for p in rows if p.kind == "refund"]

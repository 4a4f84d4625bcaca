"""Cancelling a booking before pickup, and the refund it is due under the named policy
(`CancelPolicy`: free until FREE_CANCEL_HOURS before pickup, then a fee); asking payments to
give money back, with a note in the hire's history when payments refuses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Optional

from ..extensions import db
from ..filters import money
from ..logging_setup import log
from ..models import Hire, HireState, HireStateChange, User
from ..payments import RefundError, release_deposit, request_refund
from ..settings import MoneySettings, settings
from . import emails, pricing
from .errors import BookingError
from .lifecycle import lock_hire

S = HireState


@dataclass(frozen=True)
class CancelPolicy:
    free_hours: int
    fee_pence: int
    fee_percent: int

    @classmethod
    def from_settings(cls, money: MoneySettings) -> "CancelPolicy":
        return cls(money.free_cancel_hours, money.cancel_fee_pence, money.cancel_fee_percent)

    def describe(self) -> str:
        fee = f"{self.fee_percent}% of the price" if self.fee_percent > 0 else money(self.fee_pence)
        return f"free until {self.free_hours} hours before pickup, then a fee of {fee}"


def cancellation_refund_pence(hire: Hire, now: datetime, policy: CancelPolicy | None = None) -> int:
    """What a customer gets back for cancelling now, under the named policy.

    A hold was never paid: nothing to refund. Until FREE_CANCEL_HOURS before pickup:
    everything. After that: the price less the fee (CANCEL_FEE_PERCENT of it when set,
    else CANCEL_FEE_PENCE), never below zero. The deposit is a hold, released separately.
    """
    policy = policy or CancelPolicy.from_settings(settings().money)
    if hire.hire_state == S.HELD:
        return 0
    if now <= hire.start_at - timedelta(hours=policy.free_hours):
        return hire.total_pence
    fee = (pricing.percent_of(hire.total_pence, policy.fee_percent) if policy.fee_percent > 0
           else policy.fee_pence)
    return max(hire.total_pence - fee, 0)


def cancel_hire(hire: Hire, *, by: User, now: datetime) -> int:
    """Cancel before pickup; returns the refund payments was asked for (and accepted)."""
    hire = lock_hire(hire)
    if not hire.can_cancel(now):
        db.session.rollback()
        raise BookingError("This booking can no longer be cancelled online. Please call the branch.")
    policy = CancelPolicy.from_settings(settings().money)
    refund = cancellation_refund_pence(hire, now, policy)
    was_paid = hire.hire_state != S.HELD
    reason = (f"cancelled by {'the customer' if by.id == hire.customer_id else 'staff'}; "
              f"refund {money(refund)} (policy: {policy.describe()})" if was_paid
              else "hold cancelled by the customer before payment")
    hire.transition(S.CANCELLED, by=by, why=reason, now=now)
    hire.hold_expires_at = None
    db.session.commit()
    log().info("hire cancelled", hire_id=hire.id, refund_pence=refund)
    if refund > 0 and not request_refund_or_note(hire, refund, reason, by,
                                                 key=f"hire:{hire.id}:cancel-refund"):
        refund = 0  # payments could not give it back: staff follow up from the history
    if was_paid:
        release_deposit(hire, by, reason="booking cancelled: deposit returned in full", now=now)
    emails.queue_cancelled(hire, refund_pence=refund, paid=was_paid)
    return refund


def request_refund_or_note(hire: Hire, amount_pence: int, reason: str, by: Optional[User],
                           *, key: str) -> bool:
    """Ask payments to give money back (idempotent by `key`).

    If payments refuses (say less was paid than the policy would refund), the hire's history says so
    for staff to follow up; the cancellation or change itself stands.
    """
    try:
        request_refund(hire, amount_pence, reason, by, key=key)
        return True
    except RefundError as exc:
        db.session.rollback()
        log().warning("refund refused by payments", hire_id=hire.id, amount_pence=amount_pence,
                      error=str(exc))
        hire.state_changes.append(HireStateChange(
            from_state=hire.state, to_state=hire.state, by_user_id=None,
            reason=f"refund of {money(amount_pence)} not made: {exc}"[:300]))
        db.session.commit()
        return False

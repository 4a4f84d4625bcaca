"""The cancellation policy: the refund a booking cancelled before pickup is due (`CancelPolicy`:
free until FREE_CANCEL_HOURS before pickup, then a fee). Cancelling itself, the refund and
the email, is the hire lifecycle's (lifecycle.py `cancel_hire`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ..filters import money
from ..models import Hire, HireState
from ..settings import MoneySettings, settings
from . import pricing

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

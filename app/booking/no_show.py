"""The no-show policy: what a confirmed hire nobody came to collect costs, and when it may be
marked. The move itself, and what follows it, is the hire lifecycle's (lifecycle.py).

The scheduler marks a confirmed hire `no_show` once its pickup time plus
NO_SHOW_GRACE_MINUTES has passed; counter staff may mark it themselves as soon as the pickup
time has passed. Both run `lifecycle.mark_no_show`: the car is free again from that moment
(`Hire.transition` drops the occupancy), NO_SHOW_FEE_PENCE of what was paid is kept (never
more than was paid), the rest goes back through payments' usual refund path (card, or crypto
like a cancellation), the deposit is released in full, and the customer is emailed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..models import Hire, HireState
from ..payments import active_hold, eth_deposit, rental_paid_pence
from ..settings import settings

S = HireState
NO_SHOW_ACTION = "hire.no_show"  # the audit record, written with the move; it keeps the terms


@dataclass(frozen=True)
class NoShowTerms:
    """What a no-show costs the customer: the fee kept, the refund, the deposit released."""
    paid_pence: int
    fee_pence: int
    deposit_pence: int  # the deposit hold (or deposit paid in ETH) released in full; 0: none

    @property
    def refund_pence(self) -> int:
        return self.paid_pence - self.fee_pence


def no_show_terms(hire: Hire) -> NoShowTerms:
    """The no-show policy for this hire as it stands (shown to staff before they confirm)."""
    paid = rental_paid_pence(hire)
    hold = eth_deposit(hire) or active_hold(hire)
    deposit = hold.amount_pence if hold is not None and hold.state in ("authorised", "succeeded") else 0
    return NoShowTerms(paid, min(settings().money.no_show_fee_pence, paid), deposit)


def can_mark_no_show(hire: Hire, now: datetime) -> bool:
    """Staff may mark a no-show once the pickup time has passed and the car is not out."""
    return hire.hire_state == S.CONFIRMED and now >= hire.start_at

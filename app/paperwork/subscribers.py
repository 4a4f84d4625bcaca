"""Facts other areas report (app/events.py) that make paperwork: a refund, a credit note."""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from .. import events
from ..models import Hire, User
from .invoicing import issue_credit_note


@events.refund_requested.connect
def on_refund_requested(hire: Hire, *, amount_pence: int, reason: str, key: str, by: Optional[User],
                        now: datetime, **_: object) -> None:
    """Every refund gets a credit note correcting the hire's invoice (once per refund key)."""
    issue_credit_note(hire, amount_pence=amount_pence, reason=reason, key=key, by=by, now=now)

"""The counter's calls into payments by name, for services the counter can work without."""

from __future__ import annotations

from ..logging_setup import log
from ..models import Hire


def payments_call(name: str, hire: Hire, **kwargs):
    """Call a payments service (app/payments/services.py or refunds.py) if it is installed (the
    counter works before card payments do)."""
    from ..payments import refunds
    from ..payments import services as payments
    fn = getattr(payments, name, None) or getattr(refunds, name, None)
    if fn is None:
        log().warning("payments service missing", service=name, hire_id=hire.id)
        return None
    return fn(hire, **kwargs)

"""Card refunds: the Payment row first, then a job asks Stripe, then Stripe's answer.

payments.refunds.request_refund decides how much comes back from which charge; for a card
charge it asks this provider to record a refund row (`new_card_refund`, kind "refund",
parent: the charge, a fixed idempotency key) and, once committed, to send it
(`send_card_refund`): the job calls Refund.create with the key "refund:<payment id>", so a
job retried after Stripe answered gets the same refund back instead of a second one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from ...extensions import db
from ...filters import money
from ...queueing import enqueue
from ...logging_setup import log
from ...models import Hire, Payment, User
from ..ledger import lock_payment


def new_card_refund(hire: Hire, charge: Payment, amount_pence: int, reason: str, by: Optional[User], *,
                    key: str, now: datetime) -> Payment:
    """Record (not yet send) a refund of `amount_pence` of a card charge. The caller commits."""
    refund = Payment(hire_id=hire.id, method="card", kind="refund", state="pending",
                     amount_pence=amount_pence, currency=charge.currency, parent_id=charge.id,
                     idempotency_key=key, reason=reason[:200], created_at=now,
                     requested_by_id=by.id if by else None,
                     details={"purpose": "refund"})
    refund.note(f"refund of {money(amount_pence, charge.currency)} requested: {reason}", now=now, by=by)
    db.session.add(refund)
    return refund


def send_card_refund(refund: Payment) -> Payment:
    """The refund row is committed: its job asks Stripe for the money back."""
    log().info("card refund requested", hire_id=refund.hire_id, payment_id=refund.id,
               amount_pence=refund.amount_pence)
    enqueue("app.jobs.payments.create_refund", refund.id)
    return refund


def refund_params(refund: Payment) -> dict:
    """Refund.create for a card refund: the same parameters on every retry (same key)."""
    charge = refund.parent
    return {"payment_intent": charge.provider_ref, "amount": refund.amount_pence,
            "reason": "requested_by_customer",
            "metadata": {"payment_id": str(refund.id), "hire_id": str(refund.hire_id),
                         "hire_reference": refund.hire.reference}}


def record_refund_created(refund_id: int, refund: dict, *, now: datetime, event_id: str = "") -> None:
    payment = lock_payment(refund_id)
    if payment is None:
        db.session.rollback()
        return
    payment.provider_ref = payment.provider_ref or refund.get("id", "")
    status = refund.get("status")
    if status == "succeeded" and payment.can_move_to("succeeded"):
        payment.move_to("succeeded", why=f"Stripe refund {refund.get('id')} succeeded", now=now,
                        event_id=event_id)
    elif status in ("failed", "canceled") and payment.can_move_to("failed"):
        payment.failure_message = (refund.get("failure_reason") or "The refund failed.")[:300]
        payment.move_to("failed", why=f"Stripe refund {status}", now=now, event_id=event_id)
    elif status == "pending" and payment.state == "pending":
        payment.move_to("processing", why="Stripe refund pending", now=now, event_id=event_id)
    db.session.commit()

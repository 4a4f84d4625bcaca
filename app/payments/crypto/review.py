"""Staff review of crypto payments the rules would not accept by themselves.

Late, partial, several bookings in one transaction, a booking no longer payable: staff
either accept the payment as paying its booking (the hire is confirmed) or send it back in
full (to an address the customer confirms).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from ...audit import record
from ...extensions import db
from ...models import HireState, User
from ...models.crypto import ChainPayment, CryptoRefund
from .quotes import (DIFFERENCE, DIFFERENCE_HIRE_STATES, CryptoError, current_rate, difference_owed,
                     pence_for_wei)
from .refunds import ask_for_refund_address, new_refund
from .watching import confirm_paid_hire, record_deposit


def review_queue() -> list[ChainPayment]:
    return list(db.session.scalars(select(ChainPayment).where(ChainPayment.state == "review")
                                   .order_by(ChainPayment.id)))


def review_count() -> int:
    """How many payments wait for a person to decide (the staff navigation shows it)."""
    return db.session.scalar(select(func.count(ChainPayment.id)).where(ChainPayment.state == "review"))


def value_now_pence(payment: ChainPayment, now: datetime) -> int:
    """What a payment is worth at today's rate (late payments are judged at this)."""
    return pence_for_wei(payment.amount_wei, current_rate(now).pence_per_eth)


def can_accept(payment: ChainPayment) -> bool:
    """A reviewed payment can pay its booking only while that booking still waits for payment
    (and so still holds its car), or, for a difference's quote, while the booking is confirmed
    or on hire; for an expired or cancelled one, staff refund it."""
    if payment.quote is None:
        return False
    state = payment.quote.hire.hire_state
    if payment.quote.purpose == DIFFERENCE:
        return state in DIFFERENCE_HIRE_STATES
    return state == HireState.HELD


def _reviewable(payment_id: int) -> ChainPayment:
    payment = db.session.scalar(select(ChainPayment).where(ChainPayment.id == payment_id).with_for_update())
    if payment is None or payment.state != "review":
        raise CryptoError("That payment is no longer waiting for review.")
    if payment.quote is None or payment.payment is None:
        raise CryptoError("This payment names no booking: refund it by hand from the merchant wallet.")
    return payment


def accept_reviewed(payment_id: int, by: User, now: datetime) -> ChainPayment:
    """Staff accept a reviewed payment as paying its booking; the hire is confirmed. Commits."""
    payment = _reviewable(payment_id)
    hire = payment.quote.hire
    if not can_accept(payment):
        raise CryptoError(f"The booking is {hire.state}: it cannot be confirmed. Refund the payment instead.")
    old = {"state": payment.state, "outcome": payment.outcome}
    payment.move_to("settled")
    payment.reviewed_by_id, payment.reviewed_at = by.id, now
    if payment.quote.state != "paid":  # staff accept a payment whose quote is under review
        payment.quote.move_to("paid")
    charge = payment.payment
    # What came beyond the price is the deposit, up to the quote's.
    deposit = min(payment.quote.deposit_pence,
                  max(charge.amount_pence - (payment.quote.amount_pence - payment.quote.deposit_pence), 0))
    if deposit:
        charge.amount_pence -= deposit
        record_deposit(payment, payment.quote, charge, deposit, charge.amount_pence + deposit, now)
    excess = None
    if payment.quote.purpose == DIFFERENCE:  # more than the booking owes now goes back
        over = charge.amount_pence - difference_owed(hire)
        if over > 0:
            excess = new_refund(hire, payment.amount_wei * over // charge.amount_pence, over,
                                "Paid more than the booking owed: the rest is returned",
                                key=f"crypto:excess:cp{payment.id}", charge=charge, chain_payment=payment,
                                by=by, now=now)
    charge.move_to("succeeded", why=f"accepted by staff after review ({payment.outcome})", now=now, by=by)
    record(by, "crypto_payment.accepted", payment, old, {"state": "settled", "hire": hire.reference})
    db.session.flush()
    confirm_paid_hire(hire, now, amount_pence=charge.amount_pence, payment_key=charge.idempotency_key)
    if excess is not None:
        ask_for_refund_address(excess)
    return payment


def refund_reviewed(payment_id: int, by: User, now: datetime) -> CryptoRefund:
    """Staff send a reviewed payment back in full (to an address the customer confirms). Commits."""
    payment = _reviewable(payment_id)
    old = {"state": payment.state, "outcome": payment.outcome}
    payment.move_to("returned")
    payment.reviewed_by_id, payment.reviewed_at = by.id, now
    payment.payment.move_to("succeeded", why="received; returned in full after staff review",
                            now=now, by=by)
    refund = new_refund(payment.quote.hire, payment.amount_wei, payment.payment.amount_pence,
                         f"Returned after review: {payment.review_reason}"[:300],
                         key=f"crypto:returned:cp{payment.id}", charge=payment.payment,
                         chain_payment=payment, by=by, now=now)
    record(by, "crypto_payment.returned", payment, old, {"state": "returned", "refund_id": refund.id})
    db.session.commit()
    ask_for_refund_address(refund)
    return refund

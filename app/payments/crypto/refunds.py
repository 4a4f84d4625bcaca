"""Crypto refunds: ETH goes back only to an address the customer confirms.

A refund is a CryptoRefund (with its own Payment row, kind "refund", for the hire's money
record) under a fixed idempotency key; the customer is emailed a link to confirm the
address, then the chain job signs and sends it from the hot wallet. The deposit paid in
ETH with the price is settled here too: the counter keeps what the return costs and the
rest comes back this way (`settle_eth_deposit`).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Optional

from eth_utils import is_address, to_checksum_address
from flask import current_app
from sqlalchemy import select

from ... import audit
from ...extensions import db
from ...filters import money
from ...logging_setup import log
from ...mail import queue_email
from ...models import Hire, Payment, User, utcnow
from ...models.crypto import ChainPayment, CryptoRefund
from ..ledger import CRYPTO, PaymentError
from .quotes import CryptoError, format_eth, hire_payments


# --- refunds -----------------------------------------------------------------------------------

def _default_refund_key(hire: Hire, amount_pence: int, reason: str) -> str:
    digest = hashlib.sha256(reason.encode()).hexdigest()[:12]
    return f"hire:{hire.id}:crypto-refund:{amount_pence}:{digest}"


def new_refund(hire: Hire, amount_wei: int, amount_pence: int, reason: str, *, key: str,
                charge: Optional[Payment], chain_payment: Optional[ChainPayment],
                by: Optional[User], now: datetime) -> CryptoRefund:
    existing = db.session.scalar(select(CryptoRefund).where(CryptoRefund.idempotency_key == key))
    if existing is not None:
        return existing
    record = Payment(hire_id=hire.id, method="crypto", kind="refund", state="pending",
                     amount_pence=amount_pence, currency=hire.currency, idempotency_key=f"refund:{key}",
                     parent=charge, reason=reason[:200], requested_by_id=by.id if by else None,
                     details={"wei": str(amount_wei)}, created_at=now)
    refund = CryptoRefund(
        hire_id=hire.id, chain_payment=chain_payment, payment=record, idempotency_key=key,
        amount_wei=amount_wei, amount_pence=amount_pence, reason=reason[:300],
        state="awaiting_address", suggested_address=chain_payment.payer if chain_payment else "",
        requested_by_id=by.id if by else None, created_at=now,
    )
    db.session.add_all([record, refund])
    db.session.flush()
    log().info("crypto refund requested", refund_id=refund.id, hire_id=hire.id, wei=str(amount_wei))
    return refund


def refundable(hire: Hire) -> tuple[int, int, str]:
    """(wei still refundable, the pence it was worth, the payer to suggest) for the hire.

    What was received (price and deposit) less what went back and what the counter kept
    of the deposit.
    """
    accepted = [p for p in hire_payments(hire)
                if p.state in ("settled", "returned") and p.payment is not None
                and p.payment.kind == "charge" and p.payment.state == "succeeded"]
    charge_ids = {p.payment.id for p in accepted}
    money_rows = db.session.scalars(select(Payment).where(
        Payment.hire_id == hire.id, Payment.method == "crypto", Payment.state == "succeeded",
        Payment.kind.in_(("deposit_hold", "capture")))).all()
    deposits = [p for p in money_rows if p.kind == "deposit_hold" and p.parent_id in charge_ids]
    kept = [p for p in money_rows if p.kind == "capture"]
    received_wei = sum(p.amount_wei for p in accepted)
    received_pence = (sum(p.payment.amount_pence for p in accepted)
                      + sum(p.amount_pence for p in deposits))
    refunded = db.session.scalars(select(CryptoRefund).where(
        CryptoRefund.hire_id == hire.id, CryptoRefund.state != "failed")).all()
    refunded_wei = sum(r.amount_wei for r in refunded) + sum(int(p.details.get("wei", 0)) for p in kept)
    refunded_pence = sum(r.amount_pence for r in refunded) + sum(p.amount_pence for p in kept)
    payer = accepted[-1].payer if accepted else ""
    return received_wei - refunded_wei, received_pence - refunded_pence, payer


def request_crypto_refund(hire: Hire, amount_pence: int, reason: str, by: Optional[User], *,
                          idempotency_key: Optional[str] = None, now: Optional[datetime] = None,
                          parent: Optional[Payment] = None) -> CryptoRefund:
    """Give back `amount_pence` of what the customer paid in ETH. Commits; emails the customer.

    The ETH amount is the same share of the ETH received as `amount_pence` is of its value
    at the rate the customer paid (so a full refund returns every wei). It is sent only once
    the customer confirms the address (never blindly to the sender). The same request
    twice (same hire, amount and reason, or the same `idempotency_key`) makes one refund.
    `parent` names what is given back (the deposit); by default, the latest charge.
    """
    now = now or utcnow()
    key = idempotency_key or _default_refund_key(hire, amount_pence, reason)
    existing = db.session.scalar(select(CryptoRefund).where(CryptoRefund.idempotency_key == key))
    if existing is not None:
        return existing
    if amount_pence <= 0:
        raise CryptoError("A refund must be more than nothing.")
    wei_left, pence_left, payer = refundable(hire)
    if wei_left <= 0 or pence_left <= 0:
        raise CryptoError("Nothing paid in crypto is left to refund on this booking.")
    if amount_pence > pence_left:
        raise CryptoError(f"At most {pence_left} pence paid in crypto is left to refund.")
    amount_wei = wei_left if amount_pence == pence_left else wei_left * amount_pence // pence_left
    charge = parent or next((p.payment for p in reversed(hire_payments(hire))
                             if p.payment is not None and p.payment.state == "succeeded"), None)
    refund = new_refund(hire, amount_wei, amount_pence, reason, key=key, charge=charge,
                         chain_payment=None, by=by, now=now)
    refund.suggested_address = payer
    db.session.commit()
    ask_for_refund_address(refund)
    return refund


def ask_for_refund_address(refund: CryptoRefund) -> None:
    """Email the customer a link to confirm where the ETH goes (once per refund)."""
    hire = refund.hire
    # Jobs have no request to build URLs from: the page's path (payments.crypto_refund_address).
    link = (f"{current_app.config['PUBLIC_BASE_URL'].rstrip('/')}/pay/{hire.reference}"
            f"/crypto/refunds/{refund.id}")
    queue_email(key=f"crypto-refund-address:{refund.id}", to=hire.customer.email,
                subject=f"Confirm where to send your refund for booking {hire.reference}",
                template="payments/emails/crypto_refund_address.txt", hire=hire, refund=refund,
                amount_eth=format_eth(refund.amount_wei), link=link)


def confirm_refund_address(refund: CryptoRefund, user: User, address: str, now: datetime) -> CryptoRefund:
    """The customer confirms the address: the refund is queued for the hot wallet. Commits."""
    if refund.hire.customer_id != user.id:
        raise CryptoError("That refund is not yours.")
    if refund.state != "awaiting_address":
        raise CryptoError("This refund's address is already confirmed.")
    if not is_address(address):
        raise CryptoError("Enter an Ethereum address: 0x followed by 40 hexadecimal characters.")
    if int(address, 16) == 0:
        raise CryptoError("That address would burn the money. Enter your own address.")
    refund.to_address = to_checksum_address(address)
    refund.address_confirmed_at = now
    refund.move_to("queued")
    db.session.commit()
    log().info("crypto refund address confirmed", refund_id=refund.id)
    return refund


# --- the deposit paid in ETH ------------------------------------------------------------------

def settle_eth_deposit(hire: Hire, hold: Payment, amount_pence: int, by: Optional[User], *,
                       now: datetime, reason: str) -> Payment:
    """The deposit was paid in ETH with the price: keep `amount_pence` of it and send the rest
    back through the crypto refund path (to an address the customer confirms)."""
    if not 0 <= amount_pence <= hold.amount_pence:
        raise PaymentError(f"Keep between {money(0)} and {money(hold.amount_pence, hold.currency)}.")
    if amount_pence > 0:
        wei = int(hold.details.get("wei", 0)) * amount_pence // hold.amount_pence
        kept = Payment(hire_id=hire.id, method=CRYPTO, kind="capture", amount_pence=amount_pence,
                       currency=hold.currency, parent_id=hold.id, state="pending",
                       idempotency_key=f"hire:{hire.id}:deposit:{hold.id}:capture",
                       reason=reason or "deposit kept", requested_by_id=by.id if by else None,
                       created_at=now, details={"purpose": "deposit", "wei": str(wei)})
        db.session.add(kept)
        kept.move_to("succeeded", why="kept from the deposit paid in ETH", now=now, by=by)
    if by is not None:
        audit.record(by, "payment.deposit_settled", hire,
                     new={"captured_pence": amount_pence, "returned_pence": hold.amount_pence - amount_pence,
                          "method": CRYPTO, "reason": reason}, at=now)
    db.session.commit()
    rest = hold.amount_pence - amount_pence
    if rest > 0:
        try:
            request_crypto_refund(hire, rest, reason or "deposit returned", by,
                                  idempotency_key=f"hire:{hire.id}:deposit:{hold.id}:return",
                                  now=now, parent=hold)
        except CryptoError as exc:
            raise PaymentError(str(exc)) from exc
    return hold

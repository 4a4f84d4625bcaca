"""Money that moved, or is meant to: card charges, deposit holds, captures, refunds, crypto.

A Payment row is one business action with one fixed idempotency key (sent to the provider
too), so a retried job finds the same row and makes the same provider call. A payment moves
only forward, through `Payment.move_to`, which refuses any other move and records each one
(when, why, who, which provider event) in `payment_state_changes`.

Stripe's webhook events are stored once each (unique event id) before they are processed,
so a duplicate delivery is recognised and has no second effect; an event moves through its
own table (`STRIPE_EVENT_TRANSITIONS`) by `StripeEvent.move_to` (app/models/state_machine.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Mapping, Optional

from sqlalchemy import JSON, CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .hires import Hire
from .state_machine import InvalidStateTransition, StateMachine
from .types import UTCDateTime, utcnow
from .users import User

PAYMENT_METHODS = ("card", "crypto")
# charge: money taken (the rental at Checkout, or a later charge on the saved card);
# deposit_hold: an authorisation on the card, captured in part or released later;
# capture / release: what became of a hold; refund: money given back (parent: the charge).
PAYMENT_KINDS = ("charge", "deposit_hold", "capture", "release", "refund")
# authorised: a hold is on the card (money reserved, not taken). review: staff must decide.
PAYMENT_STATES = ("pending", "processing", "authorised", "succeeded", "failed", "cancelled",
                  "review")
# Forward only. `failed`, `succeeded` and `cancelled` are final: a new attempt is a new row.
# A hold ends `succeeded` when (part of) it was captured and `cancelled` when released.
PAYMENT_TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"processing", "authorised", "succeeded", "failed", "cancelled", "review"}),
    "processing": frozenset({"authorised", "succeeded", "failed", "cancelled", "review"}),
    "authorised": frozenset({"succeeded", "cancelled", "failed"}),
    "review": frozenset({"succeeded", "failed", "cancelled"}),
    "succeeded": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}
FINAL_STATES = frozenset(s for s, moves in PAYMENT_TRANSITIONS.items() if not moves)


class InvalidPaymentTransition(Exception):
    """A payment was asked to move backwards or sideways."""


class Payment(db.Model):
    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint(f"method IN {PAYMENT_METHODS!r}", name="method_known"),
        CheckConstraint(f"kind IN {PAYMENT_KINDS!r}", name="kind_known"),
        CheckConstraint(f"state IN {PAYMENT_STATES!r}", name="state_known"),
        CheckConstraint("amount_pence >= 0", name="amount_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    hire_id: Mapped[int] = mapped_column(ForeignKey("hires.id"), index=True)
    method: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(12), default="pending")
    amount_pence: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3), default="GBP")
    # Fixed per business action, e.g. "hire:42:deposit:1"; sent to the provider as well.
    idempotency_key: Mapped[str] = mapped_column(String(80), unique=True)
    # The provider's object: a Stripe PaymentIntent (pi_...) or Refund (re_...), a tx hash.
    provider_ref: Mapped[str] = mapped_column(String(120), default="")
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    failure_message: Mapped[str] = mapped_column(String(300), default="")
    capture_before: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    # A refund's charge, a capture's or release's hold.
    parent_id: Mapped[Optional[int]] = mapped_column(ForeignKey("payments.id"), index=True)
    # The Stripe Checkout Session (cs_...) a card charge is paid through.
    checkout_session_id: Mapped[str] = mapped_column(String(120), default="", index=True)
    # Why the money moved (a refund's or a staff charge's reason), and who asked for it.
    reason: Mapped[str] = mapped_column(String(200), default="")
    requested_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    # Every UPDATE names the version it read: a request and a job writing the same payment
    # can never silently undo each other (the later, stale write is refused and redone).
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}

    hire: Mapped[Hire] = relationship()
    parent: Mapped[Optional["Payment"]] = relationship(remote_side=[id])
    requested_by: Mapped[Optional[User]] = relationship()
    state_changes: Mapped[list["PaymentStateChange"]] = relationship(
        back_populates="payment", order_by="PaymentStateChange.id", cascade="all, delete-orphan")

    def __init__(self, **fields):
        # Column defaults apply only at INSERT; the state machine needs them from the start.
        fields.setdefault("state", "pending")
        fields.setdefault("details", {})
        super().__init__(**fields)

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    def can_move_to(self, to: str) -> bool:
        return to in PAYMENT_TRANSITIONS[self.state]

    def move_to(self, to: str, *, why: str = "", now: Optional[datetime] = None,
                by: Optional[User] = None, event_id: str = "") -> "PaymentStateChange":
        """Move forward to `to`, recording the change; anything else raises."""
        if to not in PAYMENT_STATES:
            raise ValueError(f"unknown payment state {to!r}")
        if not self.can_move_to(to):
            raise InvalidPaymentTransition(f"A {self.state} payment cannot become {to}")
        return self._record(to, why=why, now=now, by=by, event_id=event_id)

    def note(self, why: str, *, now: Optional[datetime] = None, by: Optional[User] = None,
             event_id: str = "") -> "PaymentStateChange":
        """Record something that happened without a change of state (e.g. a declined attempt)."""
        return self._record(self.state, why=why, now=now, by=by, event_id=event_id)

    def _record(self, to: str, *, why: str, now: Optional[datetime], by: Optional[User],
                event_id: str) -> "PaymentStateChange":
        change = PaymentStateChange(from_state=self.state, to_state=to, reason=why[:300],
                                    at=now or utcnow(), by_user_id=by.id if by else None,
                                    stripe_event_id=event_id)
        self.state_changes.append(change)
        self.state = to
        return change

    def __repr__(self) -> str:
        return f"<Payment {self.id} {self.method} {self.kind} {self.state} {self.amount_pence}>"


class PaymentStateChange(db.Model):
    __tablename__ = "payment_state_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id", ondelete="CASCADE"), index=True)
    from_state: Mapped[str] = mapped_column(String(12))
    to_state: Mapped[str] = mapped_column(String(12))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    by_user_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[str] = mapped_column(String(300), default="")
    # The Stripe event that caused it, when one did.
    stripe_event_id: Mapped[str] = mapped_column(String(255), default="")

    payment: Mapped[Payment] = relationship(back_populates="state_changes")


STRIPE_EVENT_STATES = ("received", "processed", "ignored", "failed")
# Received (stored once), then applied by a job: processed, or ignored saying why (not one
# of our payments, a stale event...). Both are final: an event is applied once.
STRIPE_EVENT_TRANSITIONS: Mapping[str, frozenset[str]] = {
    "received": frozenset({"processed", "ignored", "failed"}),
    "failed": frozenset({"processed", "ignored"}),
    "processed": frozenset(),
    "ignored": frozenset(),
}


class InvalidStripeEventTransition(InvalidStateTransition):
    """A webhook event was asked to move outside STRIPE_EVENT_TRANSITIONS."""


class StripeEvent(StateMachine, db.Model):
    """A webhook event, stored once (unique event id) before it is processed in a job.
    Its state moves only through `move_to`, which records when and with what outcome."""

    __tablename__ = "stripe_events"
    TRANSITIONS = STRIPE_EVENT_TRANSITIONS
    InvalidTransition = InvalidStripeEventTransition
    __table_args__ = (
        CheckConstraint(f"state IN {STRIPE_EVENT_STATES!r}", name="state_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(80))
    # When Stripe created the event (not when it reached us: deliveries come out of order).
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    processed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    state: Mapped[str] = mapped_column(String(10), default="received")
    attempts: Mapped[int] = mapped_column(default=0)
    outcome: Mapped[str] = mapped_column(String(300), default="")
    payload: Mapped[dict] = mapped_column(JSON, default=dict)

    def _on_move(self, to: str, *, now: datetime, outcome: str) -> None:
        """Applied (processed or ignored): when, and the outcome (why, when ignored).
        A failed attempt records why and stays to be processed again."""
        if to != "failed":
            self.processed_at = now
        self.outcome = outcome[:300]

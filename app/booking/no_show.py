"""No-show: a confirmed hire nobody came to collect.

The scheduler marks a confirmed hire `no_show` once its pickup time plus
NO_SHOW_GRACE_MINUTES has passed; counter staff may mark it themselves as soon as the pickup
time has passed. Both run `mark_no_show`: the car is free again from that moment
(`Hire.transition` drops the occupancy), NO_SHOW_FEE_PENCE of what was paid is kept (never
more than was paid), the rest goes back through payments' usual refund path (card, or crypto
like a cancellation), the deposit is released in full, and the customer is emailed.

Applied once: the hire is re-read under a row lock (PostgreSQL) and its version is checked
when the move commits (SQLite), so of two ticks, or a tick and a tablet, one moves it and
the other finds it moved and does nothing; the refund and the email have fixed keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Optional

from flask import current_app
from sqlalchemy import String, and_, cast, exists, literal, select
from sqlalchemy.orm.exc import StaleDataError

from .. import audit
from ..extensions import db
from ..filters import money
from ..logging_setup import log
from ..models import AuditRecord, Hire, HireState, Inspection, OutboundEmail, User
from ..payments import active_hold, eth_deposit, release_deposit, rental_paid_pence
from ..settings import settings
from . import emails
from .cancellation import request_refund_or_note
from .errors import BookingError
from .lifecycle import lock_hire

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


def mark_no_show(hire: Hire, *, by: Optional[User], now: datetime) -> NoShowTerms:
    """confirmed -> no_show, then the policy: fee kept, rest refunded, deposit released, email.

    `by` is the staff member (None: the scheduler). Raises BookingError when the hire is not
    (or no longer) a confirmed hire past its pickup time: another tablet or the scheduler
    got there first, or it is too early.
    """
    hire = lock_hire(hire)
    if not can_mark_no_show(hire, now):
        db.session.rollback()
        if hire.hire_state == S.CONFIRMED:
            raise BookingError("The pickup time has not passed yet: this cannot be a no-show.")
        raise BookingError(f"Booking {hire.reference} is already {hire.state.replace('_', ' ')}.")
    terms = no_show_terms(hire)
    when = ("marked at the counter" if by is not None else
            f"{settings().booking.no_show_grace_minutes} minutes after the pickup time")
    reason = (f"not collected ({when}): no-show fee {money(terms.fee_pence)} kept, "
              f"{money(terms.refund_pence)} refunded")
    hire.transition(S.NO_SHOW, by=by, why=reason, now=now)
    audit.record(by, NO_SHOW_ACTION, hire, {"state": S.CONFIRMED.value},
                 {"state": S.NO_SHOW.value, "fee_pence": terms.fee_pence,
                  "refund_pence": terms.refund_pence, "deposit_released_pence": terms.deposit_pence},
                 at=now)
    try:
        db.session.commit()
    except StaleDataError:  # SQLite: another writer moved the hire since we read it
        db.session.rollback()
        raise BookingError(f"Booking {hire.reference} was changed a moment ago; it is no longer "
                           "waiting to be collected.")
    log().info("hire marked no-show", hire_id=hire.id, by=getattr(by, "id", None),
               fee_pence=terms.fee_pence, refund_pence=terms.refund_pence)
    _apply_policy(hire, terms, by=by, now=now)
    return terms


def _apply_policy(hire: Hire, terms: NoShowTerms, *, by: Optional[User], now: datetime) -> None:
    """The money and the email after the move; each step keyed, so running it again is harmless.
    The email goes last: its presence says the policy was applied in full."""
    refunded = terms.refund_pence
    if refunded > 0 and not request_refund_or_note(hire, refunded, "no-show: price less the no-show fee",
                                                   by, key=f"hire:{hire.id}:no-show-refund"):
        refunded = 0  # payments could not give it back: staff follow up from the history
    release_deposit(hire, by, reason="no-show: deposit returned in full", now=now)
    emails.queue_no_show(hire, fee_pence=terms.fee_pence, refund_pence=refunded,
                         deposit_pence=terms.deposit_pence)


def finish_interrupted_no_shows(now: datetime) -> list[int]:
    """A process that died after a no-show was committed (with its audit record) but before
    its refund, deposit release or email finished: apply the rest, from the terms recorded
    then. Only no-shows older than JOB_RECOVERY_AFTER_SECONDS, so one still being applied
    is left alone. Returns the ids finished."""
    before = now - timedelta(seconds=current_app.config["JOB_RECOVERY_AFTER_SECONDS"])
    emailed = exists().where(OutboundEmail.idempotency_key
                             == literal("hire:") + cast(Hire.id, String) + literal(":no-show"))
    rows = db.session.execute(select(Hire, AuditRecord).join(AuditRecord, and_(
        AuditRecord.action == NO_SHOW_ACTION, AuditRecord.object_type == "hire",
        AuditRecord.object_id == cast(Hire.id, String))).where(
        Hire.state == S.NO_SHOW.value, AuditRecord.at <= before, ~emailed)
        .order_by(Hire.id)).all()
    finished = []
    for hire, record in rows:
        recorded = record.new
        terms = NoShowTerms(recorded["fee_pence"] + recorded["refund_pence"], recorded["fee_pence"],
                            recorded["deposit_released_pence"])
        log().warning("finishing an interrupted no-show", hire_id=hire.id)
        _apply_policy(hire, terms, by=record.actor, now=now)
        finished.append(hire.id)
    return finished


def mark_due_no_shows(now: datetime, *, batch: int = 200) -> list[int]:
    """Scheduler: every confirmed hire NO_SHOW_GRACE_MINUTES past its pickup time becomes a
    no-show. A hire whose pickup has begun at the counter is left to staff: the customer is
    there. Safe to run twice, or twice at once. Returns the ids this run marked."""
    grace = timedelta(minutes=settings().booking.no_show_grace_minutes)
    pickup_begun = exists().where(Inspection.hire_id == Hire.id, Inspection.kind == "pickup")
    due = db.session.scalars(select(Hire).where(
        Hire.state == S.CONFIRMED.value, Hire.start_at <= now - grace, ~pickup_begun)
        .order_by(Hire.start_at, Hire.id).limit(batch)).all()
    marked = []
    for hire in due:
        try:
            mark_no_show(hire, by=None, now=now)
        except BookingError:
            continue  # another run (or staff) marked it first
        marked.append(hire.id)
    if marked:
        log().info("no-shows marked", count=len(marked))
    return marked

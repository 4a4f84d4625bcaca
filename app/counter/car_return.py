"""Taking a car back: the charges from the named rules (`charges.py`) with staff-entered
damage and waivers, settlement against the deposit, the receipt, and closing a returned
hire once its money has settled.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Optional

from sqlalchemy import select

from .. import paperwork
from ..audit import record
from ..extensions import db
from ..mail import queue_email
from ..models import Hire, HireState, Inspection, Payment, User
from ..payments import (PaymentError, capture_deposit, charge_saved_card, eth_deposit,
                        request_refund)
from ..settings import settings
from . import charges as rules
from .errors import CounterError
from .inspections import PICKUP, RETURN, check_version, commit_step, inspection

S = HireState


def day_rate_pence(hire: Hire) -> int:
    """The hire's own (frozen) day rate: its rental line over its 24-hour periods."""
    rental = sum(line["amount_pence"] for line in hire.price_lines if line.get("code") == "rental")
    days = rules.hire_days(hire.start_at, hire.end_at)
    if rental:
        return rental // days
    return hire.car.daily_rate_override_pence or hire.car.car_class.daily_rate_pence


def return_facts(hire: Hire, insp: Inspection, *, returned_at: datetime) -> rules.ReturnFacts:
    out = inspection(hire, PICKUP)
    if out is None or out.odometer_miles is None or insp.odometer_miles is None:
        raise CounterError("Record the condition first.")
    return rules.ReturnFacts(
        start_at=hire.start_at, end_at=hire.end_at, returned_at=returned_at,
        day_rate_pence=day_rate_pence(hire),
        miles_allowed_per_day=hire.car.car_class.mileage_allowance_per_day,
        odometer_out=out.odometer_miles, odometer_in=insp.odometer_miles,
        fuel_out_eighths=out.fuel_eighths or 0, fuel_in_eighths=insp.fuel_eighths or 0,
        needs_cleaning=insp.needs_cleaning,
        damages=tuple(rules.Damage(d["panel"], d["amount_pence"], d["reason"]) for d in insp.damages),
        waivers=dict(insp.waivers),
    )


def preview_charges(hire: Hire, insp: Inspection, *, now: datetime) -> list[rules.Line]:
    returned_at = insp.condition_recorded_at or now
    return rules.compute_charges(return_facts(hire, insp, returned_at=returned_at),
                                 rules.Rates.from_settings(settings().money))


def add_damage(insp: Inspection, *, panel: str, amount_pence: int, reason: str, by: User, now: datetime,
               version: Optional[int] = None) -> None:
    """A staff-entered damage charge: positive, at most MAX_DAMAGE_CHARGE_PENCE, with a reason."""
    check_version(insp, version)
    damage = rules.Damage(panel, amount_pence, reason.strip()[:200])
    try:
        rules.check_facts(rules.ReturnFacts(insp.hire.start_at, insp.hire.end_at, now, 0, 0, 0, 0, 0, 0,
                                            damages=(damage,)), rules.Rates.from_settings(settings().money))
    except rules.ChargeError as exc:
        raise CounterError({"amount": str(exc)})
    if panel not in settings().counter.condition_panels:
        raise CounterError({"panel": "Choose which part of the car is damaged."})
    insp.damages = [*insp.damages, {"panel": panel, "amount_pence": amount_pence, "reason": damage.reason}]
    record(by, "return.damage_added", insp.hire, {}, insp.damages[-1], at=now)
    commit_step(insp)


def waive(insp: Inspection, *, code: str, reason: str, by: User, now: datetime,
          version: Optional[int] = None) -> None:
    """Waive one charge, with a reason (recorded)."""
    check_version(insp, version)
    if not reason.strip():
        raise CounterError({"reason": "Give a reason for waiving this charge."})
    codes = {line.code for line in preview_charges(insp.hire, insp, now=now)}
    if code not in codes:
        raise CounterError({"code": "There is no such charge to waive."})
    insp.waivers = {**insp.waivers, code: reason.strip()[:200]}
    record(by, "return.charge_waived", insp.hire, {}, {"code": code, "reason": reason.strip()}, at=now)
    commit_step(insp)


def settle_return(hire: Hire, *, by: User, now: datetime, version: int) -> "SettleResult":
    """Freeze the charges, move the hire to `returned`, and ask payments to settle the deposit.

    Optimistic locking: the tablet sends the inspection version it showed; a second tablet
    settling the same return gets "already processed by <name> at <time>".
    """
    insp = inspection(hire, RETURN)
    if insp is None or insp.condition_recorded_at is None:
        raise CounterError("Record the condition first.")
    check_version(insp, version)
    if insp.completed_at is not None or hire.hire_state != S.ACTIVE:
        check_version(insp, -1)
    lines = preview_charges(hire, insp, now=now)
    total = rules.total_owed_pence(lines)
    settlement = settlement_for(hire, lines)
    insp.charge_lines = [{"code": l.code, "label": l.label, "amount_pence": l.amount_pence,
                          "waived_reason": l.waived_reason} for l in lines]
    insp.total_pence = total
    insp.completed_by_id, insp.completed_at = by.id, now
    hire.transition(S.RETURNED, by=by, why=f"returned; charges {total} pence", now=now)
    hire.car.odometer_miles = max(hire.car.odometer_miles, insp.odometer_miles or 0)
    record(by, "return.settled", hire, {"state": "active"},
           {"state": "returned", "charges_pence": total, "capture_pence": settlement.capture_from_hold_pence,
            "release_pence": settlement.release_pence, "card_pence": settlement.charge_card_pence,
            "refund_pence": settlement.refund_pence}, at=now)
    commit_step(insp)
    paperwork.issue_settlement_invoice(
        hire, charge_lines=insp.charge_lines, deposit_held_pence=_deposit_held_pence(hire),
        taken_pence=settlement.capture_from_hold_pence, released_pence=settlement.release_pence,
        card_pence=settlement.charge_card_pence, by=by, now=now)
    problems = _settle_money(hire, settlement, by=by)
    if not problems:
        close_if_settled(hire, now=now)
    _email_receipt(hire, insp, settlement)
    return SettleResult(settlement, problems)


def _email_receipt(hire: Hire, insp: Inspection, settlement: rules.Settlement) -> None:
    """The itemised return receipt, emailed once (keyed by the hire)."""
    money_lines = rules.settlement_lines(settlement, paid_in_eth=eth_deposit(hire) is not None,
                                         reader="customer")
    queue_email(key=f"hire:{hire.id}:return-receipt", to=hire.customer.email,
                subject=f"Your ACME Rentals receipt for {hire.reference}",
                template="counter/emails/return_receipt.txt", hire=hire,
                charge_lines=insp.charge_lines, total_pence=insp.total_pence, money_lines=money_lines)


@dataclass(frozen=True)
class SettleResult:
    settlement: rules.Settlement
    problems: list[str]


def settlement_for(hire: Hire, lines: list[rules.Line]) -> rules.Settlement:
    """How these charges would be settled against the deposit held now (the counter's
    confirmation shows it; settling applies it)."""
    return rules.settle(rules.total_owed_pence(lines), _deposit_held_pence(hire))


def _deposit_held_pence(hire: Hire) -> int:
    # An uncaptured card hold is "authorised"; a crypto deposit that arrived is "succeeded".
    held = db.session.scalar(select(Payment).where(Payment.hire_id == hire.id, Payment.kind == "deposit_hold",
                                                   Payment.state.in_(("authorised", "succeeded")))
                             .order_by(Payment.id.desc()).limit(1))
    return held.amount_pence if held is not None else 0


def _settle_money(hire: Hire, settlement: rules.Settlement, *, by: User) -> list[str]:
    """Ask payments to move the money; what it refuses is returned for staff to resolve
    (the hire stays `returned`, not `closed`, until it is)."""
    problems: list[str] = []
    steps = []
    if settlement.capture_from_hold_pence or settlement.release_pence:
        steps.append((capture_deposit, dict(amount_pence=settlement.capture_from_hold_pence)))
    if settlement.charge_card_pence:
        steps.append((charge_saved_card, dict(amount_pence=settlement.charge_card_pence,
                                                reason="return charges beyond the deposit")))
    if settlement.refund_pence:  # refused when more than is left to refund: staff resolve it
        steps.append((request_refund, dict(amount_pence=settlement.refund_pence, reason="early return: unused days",
                                             key=paperwork.EARLY_RETURN_KEY.format(hire.id))))
    for step, kwargs in steps:
        name = step.__name__
        try:
            step(hire, by=by, **kwargs)
        except PaymentError as exc:
            db.session.rollback()
            problems.append(str(exc))
            record(by, "return.payment_problem", hire, {}, {"step": name, "problem": str(exc), **kwargs})
            db.session.commit()
    return problems


def close_settled_returns(now: datetime) -> list[int]:
    """Scheduler: close returned hires whose settlement finished since (a card capture done by a
    job, a crypto deposit refund confirmed on chain). Returns the ids closed."""
    returned = db.session.scalars(select(Hire).where(Hire.state == S.RETURNED.value).order_by(Hire.id)).all()
    return [hire.id for hire in returned if close_if_settled(hire, now=now)]


def close_if_settled(hire: Hire, *, now: datetime) -> bool:
    """returned -> closed once no settlement payment is still open. Safe to call repeatedly."""
    if hire.hire_state != S.RETURNED:
        return False
    open_ = db.session.scalar(select(Payment.id).where(
        Payment.hire_id == hire.id, Payment.kind.in_(("capture", "release", "charge", "refund")),
        Payment.state.in_(("pending", "processing"))).limit(1))
    if open_ is not None:
        return False
    hire.transition(S.CLOSED, by=None, why="money settled", now=now)
    db.session.commit()
    return True

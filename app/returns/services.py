"""Counter rules: the board, pickups (licence, ID, condition, signature, hand-over or refusal)
and returns (condition, charges, settlement).

Plain functions over the session taking `by` (the staff member) and `now`. Each step is
committed when done, so a dropped tablet connection loses nothing and reopening the hire
continues at the first unfinished step. Every step writes an audit record. Money moves
only through the payments area's public names (`app.payments`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Optional
from zoneinfo import ZoneInfo

from flask import current_app
from PIL import Image
from sqlalchemy import or_, select
from sqlalchemy.orm import joinedload
from sqlalchemy.orm.exc import StaleDataError

from ..audit import record
from ..errors import FieldErrors
from ..extensions import db
from ..fleet import photos as photo_files
from ..logging_setup import log
from ..models import Car, Hire, HireState, Inspection, InspectionPhoto, User
from ..models.counter import PANEL_STATES
from . import charges as rules

S = HireState
PICKUP, RETURN = "pickup", "return"
UPLOAD_SUBDIR = "inspections"
THUMB_SIDE = 320
NOT_A_SIGNATURE = "The signature did not arrive as a picture; please sign again."


class CounterError(FieldErrors):
    """Refusal with a message per form field ("" key: for the whole step)."""


class AlreadyProcessed(CounterError):
    """Another tablet finished this step first."""


# --- the board ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Board:
    pickups: list[Hire]
    returns: list[Hire]
    overdue: list[Hire]
    late: dict[int, int]  # hire id -> minutes late to collect (pickup time passed, still confirmed)


def board(*, branch_id: Optional[int], now: datetime, query: str = "") -> Board:
    """Today's and tomorrow's pickups and returns at a branch (all branches when None), plus
    overdue hires; `query` filters by booking reference, customer name or plate."""
    zone = ZoneInfo(current_app.config["DEFAULT_TIMEZONE"])
    today = now.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    window_end = (today + timedelta(days=2)).astimezone(now.tzinfo)
    base = (select(Hire).join(Hire.car).join(Hire.customer)
            .options(joinedload(Hire.car), joinedload(Hire.customer)))
    if query.strip():
        like = f"%{query.strip()}%"
        base = base.where(or_(Hire.reference.ilike(like), User.full_name.ilike(like),
                              Car.plate.ilike(like.replace(" ", ""))))
    pickups = base.where(Hire.state == S.CONFIRMED.value, Hire.start_at < window_end)
    returns = base.where(Hire.state == S.ACTIVE.value, Hire.end_at < window_end, Hire.end_at >= now)
    overdue = base.where(Hire.state == S.ACTIVE.value, Hire.end_at < now)
    if branch_id is not None:
        pickups = pickups.where(Hire.pickup_branch_id == branch_id)
        returns = returns.where(Hire.return_branch_id == branch_id)
        overdue = overdue.where(Hire.return_branch_id == branch_id)
    pickup_list = list(db.session.scalars(pickups.order_by(Hire.start_at)).unique())
    return Board(
        pickups=pickup_list,
        returns=list(db.session.scalars(returns.order_by(Hire.end_at)).unique()),
        overdue=list(db.session.scalars(overdue.order_by(Hire.end_at)).unique()),
        # Until NO_SHOW_GRACE_MINUTES have passed (then the scheduler marks a no-show).
        late={h.id: int((now - h.start_at).total_seconds() // 60) for h in pickup_list if h.start_at <= now},
    )


def hire_by_reference(reference: str) -> Hire | None:
    return db.session.scalar(select(Hire).where(Hire.reference == reference.strip().upper()))


# --- inspections --------------------------------------------------------------------------

def inspection(hire: Hire, kind: str) -> Inspection | None:
    return db.session.scalar(select(Inspection).where(Inspection.hire_id == hire.id,
                                                      Inspection.kind == kind))


def open_inspection(hire: Hire, kind: str, *, by: User, now: datetime) -> Inspection:
    """The pickup or return record for this hire, created on first use (resumable)."""
    needed = S.CONFIRMED if kind == PICKUP else S.ACTIVE
    found = inspection(hire, kind)
    if found is not None:
        return found
    if hire.hire_state != needed:
        raise CounterError(f"This hire is {hire.state.replace('_', ' ')}: "
                           f"it cannot be {'picked up' if kind == PICKUP else 'returned'}.")
    found = Inspection(hire_id=hire.id, kind=kind, started_by_id=by.id, started_at=now,
                       checklist={}, damages=[], waivers={}, charge_lines=[])
    db.session.add(found)
    record(by, f"{kind}.started", hire, {}, {"inspection": kind}, at=now)
    db.session.commit()
    return found


def _check_version(insp: Inspection, version: Optional[int]) -> None:
    if version is not None and insp.version != version:
        who = insp.completed_by.full_name if insp.completed_by else "another member of staff"
        when = insp.completed_at or insp.started_at
        raise AlreadyProcessed(f"This was already updated by {who} at "
                               f"{when.astimezone(ZoneInfo(current_app.config['DEFAULT_TIMEZONE'])):%H:%M}. "
                               "The page now shows the latest state.")


def _commit_step(insp: Inspection) -> None:
    try:
        db.session.commit()
    except StaleDataError:
        db.session.rollback()
        db.session.refresh(insp)
        _check_version(insp, -1)


def tick_id_checked(insp: Inspection, *, by: User, now: datetime, version: Optional[int] = None) -> None:
    """Photo ID seen in person and matching the booking: who ticked it and when."""
    _check_version(insp, version)
    insp.id_checked_by_id, insp.id_checked_at = by.id, now
    record(by, "pickup.id_checked", insp.hire, {}, {"id_checked": True}, at=now)
    _commit_step(insp)


def record_condition(insp: Inspection, *, by: User, now: datetime, odometer: int, fuel_eighths: int,
                     checklist: dict[str, dict[str, str]], needs_cleaning: bool = False,
                     version: Optional[int] = None) -> None:
    """Odometer, fuel and the walk-around checklist (per panel: state and a note)."""
    _check_version(insp, version)
    errors: dict[str, str] = {}
    panels = current_app.config["CONDITION_PANELS"]
    for panel, entry in checklist.items():
        if panel not in panels or entry.get("state") not in PANEL_STATES:
            errors[f"panel_{panel}"] = "Choose ok, scratch, dent or other."
        elif entry.get("state") != "ok" and not entry.get("note", "").strip():
            errors[f"note_{panel}"] = "Describe what you see."
    if set(panels) - set(checklist):
        errors[""] = "Check every panel."
    if not 0 <= fuel_eighths <= rules.EIGHTHS_IN_TANK:
        errors["fuel_eighths"] = "Fuel is in eighths of a tank, 0 to 8."
    if insp.kind == RETURN:
        out = inspection(insp.hire, PICKUP)
        if out is not None and out.odometer_miles is not None and odometer < out.odometer_miles:
            errors["odometer"] = f"The car left with {out.odometer_miles} miles; the reading cannot be lower."
    elif odometer < insp.hire.car.odometer_miles:
        errors["odometer"] = f"The car's last reading was {insp.hire.car.odometer_miles} miles."
    if errors:
        raise CounterError(errors)
    old = {"odometer": insp.odometer_miles, "fuel": insp.fuel_eighths, "checklist": insp.checklist}
    insp.odometer_miles, insp.fuel_eighths = odometer, fuel_eighths
    insp.checklist = {p: {"state": e["state"], "note": e.get("note", "").strip()[:200]}
                      for p, e in checklist.items()}
    insp.needs_cleaning = needs_cleaning
    insp.condition_recorded_at = now
    record(by, f"{insp.kind}.condition", insp.hire, old,
           {"odometer": odometer, "fuel": fuel_eighths, "checklist": insp.checklist,
            "needs_cleaning": needs_cleaning}, at=now)
    _commit_step(insp)


def _store(data: bytes, *, max_side: int, max_bytes: int) -> tuple[str, str]:
    """Clean (EXIF stripped, re-encoded) and store under the content hash; (filename, type)."""
    cfg = current_app.config
    clean, fmt, _w, _h = photo_files.process(data, max_bytes=max_bytes, max_pixels=cfg["CAR_PHOTO_MAX_PIXELS"],
                                             max_side=max_side)
    content_type, ext, _ = photo_files.FORMATS[fmt]
    filename = photo_files.write_content_addressed(upload_dir(), clean, ext)
    return filename, content_type


def upload_dir() -> Path:
    return Path(current_app.config["UPLOAD_DIR"]) / UPLOAD_SUBDIR


def add_photo(insp: Inspection, *, panel: str, data: bytes, by: User, now: datetime) -> InspectionPhoto:
    """A tablet photo of one panel: checked, EXIF stripped, stored by content hash, thumbnailed."""
    if panel not in current_app.config["CONDITION_PANELS"]:
        raise CounterError({"panel": "Choose which part of the car the photo shows."})
    try:
        filename, content_type = _store(data, max_side=current_app.config["CAR_PHOTO_MAX_SIDE"],
                                        max_bytes=current_app.config["PHOTO_MAX_BYTES"])
        thumb, _ = _store(data, max_side=THUMB_SIDE, max_bytes=current_app.config["PHOTO_MAX_BYTES"])
    except photo_files.PhotoError as exc:
        raise CounterError({"photo": str(exc)})
    photo = InspectionPhoto(inspection_id=insp.id, panel=panel, filename=filename, thumb_filename=thumb,
                            content_type=content_type, taken_by_id=by.id, created_at=now)
    db.session.add(photo)
    record(by, f"{insp.kind}.photo", insp.hire, {}, {"panel": panel, "file": filename}, at=now)
    db.session.commit()
    return photo


def record_signature(insp: Inspection, *, png: bytes, by: User, now: datetime,
                     version: Optional[int] = None) -> None:
    """The customer's signature drawn on the tablet (a PNG from the canvas).

    Checked and re-encoded as car photos are (app/fleet/photos.py), within the far smaller
    bounds a signature box needs: only its pixels are kept, as a PNG.
    """
    _check_version(insp, version)
    if not png:
        raise CounterError({"signature": "Ask the customer to sign in the box."})
    cfg = current_app.config
    try:
        clean, fmt, _w, _h = photo_files.process(
            png, max_bytes=cfg["SIGNATURE_MAX_BYTES"], max_pixels=cfg["SIGNATURE_MAX_PIXELS"],
            max_side=cfg["SIGNATURE_MAX_SIDE"])
    except photo_files.PhotoTooLarge:
        raise CounterError({"signature": "The signature is too large for the signature box: "
                                         "clear the box and sign again."})
    except photo_files.PhotoError:
        raise CounterError({"signature": NOT_A_SIGNATURE})
    if fmt != "PNG":
        raise CounterError({"signature": NOT_A_SIGNATURE})
    image = Image.open(io.BytesIO(clean))
    # Seen on white paper, a blank canvas is all one shade: not a signature.
    paper = Image.new("RGBA", image.size, (255, 255, 255, 255))
    paper.alpha_composite(image.convert("RGBA"))
    darkest, lightest = paper.convert("L").getextrema()
    if darkest == lightest:
        raise CounterError({"signature": "The signature box is empty: ask the customer to sign."})
    insp.signature_filename = photo_files.write_content_addressed(upload_dir(), clean, "png")
    insp.signed_at = now
    record(by, "pickup.signed", insp.hire, {}, {"signature": insp.signature_filename}, at=now)
    _commit_step(insp)


# --- pickup ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    key: str
    label: str
    done: bool


def licence_ok(hire: Hire) -> tuple[bool, str]:
    """The counter's re-check for this hire must have come back verified (the licence area's rule)."""
    from ..accounts.licence import pickup_licence_ok
    return pickup_licence_ok(hire)


def pickup_steps(hire: Hire, insp: Inspection | None) -> list[Step]:
    return [
        Step("licence", "Licence and ID", bool(insp and insp.id_checked_at) and licence_ok(hire)[0]),
        Step("condition", "Condition out", bool(insp and insp.condition_recorded_at)),
        Step("signature", "Customer signs", bool(insp and insp.signed_at)),
        Step("handover", "Hand over", hire.hire_state == S.ACTIVE),
    ]


def return_steps(hire: Hire, insp: Inspection | None) -> list[Step]:
    return [
        Step("condition", "Condition in", bool(insp and insp.condition_recorded_at)),
        Step("charges", "Charges", bool(insp and insp.completed_at)),
        Step("settle", "Settle", hire.hire_state in (S.RETURNED, S.CLOSED)),
    ]


def hand_over(hire: Hire, *, by: User, now: datetime, version: Optional[int] = None) -> None:
    """confirmed -> active: every pickup step done; the deposit hold is confirmed."""
    insp = inspection(hire, PICKUP)
    missing = [s.label for s in pickup_steps(hire, insp)[:-1] if not s.done]
    if missing or insp is None:
        raise CounterError(f"Finish these steps first: {', '.join(missing)}.")
    _check_version(insp, version)
    if hire.hire_state != S.CONFIRMED:
        raise AlreadyProcessed(f"This hire is already {hire.state.replace('_', ' ')}.")
    hire.transition(S.ACTIVE, by=by, why="handed over at the counter", now=now)
    insp.completed_by_id, insp.completed_at = by.id, now
    hire.car.odometer_miles = insp.odometer_miles
    record(by, "pickup.handed_over", hire, {"state": "confirmed"}, {"state": "active"}, at=now)
    _commit_step(insp)
    _payments_call("ensure_deposit_hold", hire, by=by)


def refuse_at_pickup(hire: Hire, *, by: User, now: datetime, reason: str) -> None:
    """Licence refused, ID does not match, customer unfit: release the car and refund in full."""
    reason = reason.strip()
    if not reason:
        raise CounterError({"reason": "Say why the car cannot be handed over."})
    if hire.hire_state != S.CONFIRMED:
        raise AlreadyProcessed(f"This hire is already {hire.state.replace('_', ' ')}.")
    hire.transition(S.REFUSED_AT_PICKUP, by=by, why=reason[:300], now=now)
    record(by, "pickup.refused", hire, {"state": "confirmed"}, {"state": "refused_at_pickup",
                                                               "reason": reason}, at=now)
    try:
        db.session.commit()
    except StaleDataError:
        db.session.rollback()
        raise AlreadyProcessed("Another tablet changed this hire a moment ago; reload it.")
    from ..payments import release_deposit, rental_paid_pence, request_refund
    paid = rental_paid_pence(hire)  # what the refusal dialog showed; nothing paid, nothing back
    if paid > 0:
        request_refund(hire, paid, f"refused at pickup: {reason}", by)
    release_deposit(hire, by, reason="refused at pickup: deposit returned in full", now=now)


def _payments_call(name: str, hire: Hire, **kwargs):
    """Call a payments service (app/payments: the names it exports) if it is installed (the
    counter works before card payments do)."""
    from .. import payments
    fn = getattr(payments, name, None)
    if fn is None:
        log().warning("payments service missing", service=name, hire_id=hire.id)
        return None
    return fn(hire, **kwargs)


# --- return ----------------------------------------------------------------------------------

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
                                 rules.Rates.from_config(current_app.config))


def add_damage(insp: Inspection, *, panel: str, amount_pence: int, reason: str, by: User, now: datetime,
               version: Optional[int] = None) -> None:
    """A staff-entered damage charge: positive, at most MAX_DAMAGE_CHARGE_PENCE, with a reason."""
    _check_version(insp, version)
    damage = rules.Damage(panel, amount_pence, reason.strip()[:200])
    try:
        rules.check_facts(rules.ReturnFacts(insp.hire.start_at, insp.hire.end_at, now, 0, 0, 0, 0, 0, 0,
                                            damages=(damage,)), rules.Rates.from_config(current_app.config))
    except rules.ChargeError as exc:
        raise CounterError({"amount": str(exc)})
    if panel not in current_app.config["CONDITION_PANELS"]:
        raise CounterError({"panel": "Choose which part of the car is damaged."})
    insp.damages = [*insp.damages, {"panel": panel, "amount_pence": amount_pence, "reason": damage.reason}]
    record(by, "return.damage_added", insp.hire, {}, insp.damages[-1], at=now)
    _commit_step(insp)


def waive(insp: Inspection, *, code: str, reason: str, by: User, now: datetime,
          version: Optional[int] = None) -> None:
    """Waive one charge, with a reason (recorded)."""
    _check_version(insp, version)
    if not reason.strip():
        raise CounterError({"reason": "Give a reason for waiving this charge."})
    codes = {line.code for line in preview_charges(insp.hire, insp, now=now)}
    if code not in codes:
        raise CounterError({"code": "There is no such charge to waive."})
    insp.waivers = {**insp.waivers, code: reason.strip()[:200]}
    record(by, "return.charge_waived", insp.hire, {}, {"code": code, "reason": reason.strip()}, at=now)
    _commit_step(insp)


def settle_return(hire: Hire, *, by: User, now: datetime, version: int) -> "SettleResult":
    """Freeze the charges, move the hire to `returned`, and ask payments to settle the deposit.

    Optimistic locking: the tablet sends the inspection version it showed; a second tablet
    settling the same return gets "already processed by <name> at <time>".
    """
    insp = inspection(hire, RETURN)
    if insp is None or insp.condition_recorded_at is None:
        raise CounterError("Record the condition first.")
    _check_version(insp, version)
    if insp.completed_at is not None or hire.hire_state != S.ACTIVE:
        _check_version(insp, -1)
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
    _commit_step(insp)
    problems = _settle_money(hire, settlement, by=by)
    if not problems:
        close_if_settled(hire, now=now)
    _email_receipt(hire, insp, settlement)
    return SettleResult(settlement, problems)


def _email_receipt(hire: Hire, insp: Inspection, settlement: rules.Settlement) -> None:
    """The itemised return receipt, emailed once (keyed by the hire)."""
    from ..filters import money
    from ..mail import queue_email
    lines = [f"  {l['label']}: {money(0 if l['waived_reason'] else l['amount_pence'])}"
             + (f" (waived: {l['waived_reason']})" if l["waived_reason"] else "") for l in insp.charge_lines]
    from ..payments import eth_deposit
    money_lines = rules.settlement_lines(settlement, paid_in_eth=eth_deposit(hire) is not None,
                                         reader="customer")
    body = (f"Hello {hire.customer.full_name},\n\nThank you for returning {hire.car.make} {hire.car.model} "
            f"({hire.car.plate}), booking {hire.reference}.\n\nCharges on return:\n"
            + ("\n".join(lines) if lines else "  none") + f"\n  Total: {money(insp.total_pence or 0)}\n\n"
            + "\n".join(f"{label}: {money(amount)}" for label, amount in money_lines)
            + "\n\nACME Rentals\n")
    queue_email(key=f"hire:{hire.id}:return-receipt", to=hire.customer.email,
                subject=f"Your ACME Rentals receipt for {hire.reference}", body=body)


@dataclass(frozen=True)
class SettleResult:
    settlement: rules.Settlement
    problems: list[str]


def settlement_for(hire: Hire, lines: list[rules.Line]) -> rules.Settlement:
    """How these charges would be settled against the deposit held now (the counter's
    confirmation shows it; settling applies it)."""
    return rules.settle(rules.total_owed_pence(lines), _deposit_held_pence(hire))


def _deposit_held_pence(hire: Hire) -> int:
    from ..models import Payment
    # An uncaptured card hold is "authorised"; a crypto deposit that arrived is "succeeded".
    held = db.session.scalar(select(Payment).where(Payment.hire_id == hire.id, Payment.kind == "deposit_hold",
                                                   Payment.state.in_(("authorised", "succeeded")))
                             .order_by(Payment.id.desc()).limit(1))
    return held.amount_pence if held is not None else 0


def _settle_money(hire: Hire, settlement: rules.Settlement, *, by: User) -> list[str]:
    """Ask payments to move the money; what it refuses is returned for staff to resolve
    (the hire stays `returned`, not `closed`, until it is)."""
    from ..payments import PaymentError
    problems: list[str] = []
    steps = []
    if settlement.capture_from_hold_pence or settlement.release_pence:
        steps.append(("capture_deposit", dict(amount_pence=settlement.capture_from_hold_pence)))
    if settlement.charge_card_pence:
        steps.append(("charge_saved_card", dict(amount_pence=settlement.charge_card_pence,
                                                reason="return charges beyond the deposit")))
    if settlement.refund_pence:  # refused when more than is left to refund: staff resolve it
        steps.append(("request_refund", dict(amount_pence=settlement.refund_pence,
                                             reason="early return: unused days")))
    for name, kwargs in steps:
        try:
            _payments_call(name, hire, by=by, **kwargs)
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
    from ..models import Payment
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

"""Everything the portal holds about one customer, as plain JSON-ready data."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import or_, select

from ..extensions import db
from ..models import (AuditRecord, Hire, HireCheckin, HireDriver, Inspection, LicenceCheck,
                      OutboundEmail, Payment, User)


def _plain(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _row(obj: Any, *names: str) -> dict:
    return {name: _plain(getattr(obj, name)) for name in names}


def customer_hires(user: User) -> list[Hire]:
    return list(db.session.scalars(select(Hire).where(Hire.customer_id == user.id).order_by(Hire.id)))


def collect(user: User, *, now: datetime) -> dict:
    """The customer's data: what a "Download my data" ZIP holds as data.json."""
    hires = customer_hires(user)
    hire_ids = [h.id for h in hires]
    profile = user.profile
    data: dict[str, Any] = {
        "generated_at": now.isoformat(),
        "profile": {
            **_row(user, "id", "email", "full_name", "created_at", "last_sign_in_at"),
            **({} if profile is None else _row(
                profile, "date_of_birth", "phone", "address_line1", "address_line2", "town",
                "postcode", "licence_number", "licence_expires_on", "licence_status",
                "licence_checked_at", "licence_refusal_reason")),
        },
        "licence_checks": [
            _row(c, "id", "hire_id", "driver_id", "licence_number", "requested_at", "completed_at",
                 "status", "reason_code", "message", "valid_from", "valid_to", "categories",
                 "held_since", "penalty_points", "disqualified")
            for c in db.session.scalars(select(LicenceCheck).where(LicenceCheck.user_id == user.id)
                                        .order_by(LicenceCheck.id))],
        "bookings": [_hire(h) for h in hires],
        "payments": [
            _row(p, "id", "hire_id", "method", "kind", "state", "amount_pence", "currency", "reason",
                 "created_at")
            for p in (db.session.scalars(select(Payment).where(Payment.hire_id.in_(hire_ids))
                                         .order_by(Payment.id)) if hire_ids else [])],
        "emails_sent": [
            _row(e, "id", "subject", "state", "created_at", "sent_at", "body_text")
            for e in db.session.scalars(select(OutboundEmail).where(
                OutboundEmail.to_address == user.email).order_by(OutboundEmail.id))],
        "audit_entries": [
            _row(a, "id", "at", "action", "object_type", "object_id", "old", "new")
            for a in db.session.scalars(select(AuditRecord).where(or_(
                AuditRecord.actor_id == user.id,
                (AuditRecord.object_type == "user") & (AuditRecord.object_id == str(user.id)),
                (AuditRecord.object_type == "hire") & (AuditRecord.object_id.in_([str(i) for i in hire_ids])),
            )).order_by(AuditRecord.id))],
    }
    return data


def _hire(hire: Hire) -> dict:
    checkin = db.session.scalar(select(HireCheckin).where(HireCheckin.hire_id == hire.id))
    drivers = db.session.scalars(select(HireDriver).where(HireDriver.hire_id == hire.id)
                                 .order_by(HireDriver.id))
    pickup = db.session.scalar(select(Inspection).where(Inspection.hire_id == hire.id,
                                                        Inspection.kind == "pickup"))
    return {
        **_row(hire, "reference", "state", "start_at", "end_at", "price_lines", "total_pence",
               "vat_pence", "deposit_pence", "currency", "extras", "created_at"),
        "car": f"{hire.car.make} {hire.car.model} ({hire.car.plate})",
        "pickup_branch": hire.pickup_branch.name, "return_branch": hire.return_branch.name,
        "history": [_row(c, "at", "from_state", "to_state", "reason") for c in hire.state_changes],
        "online_check_in": None if checkin is None else _row(
            checkin, "completed_at", "terms_version", "terms_accepted_at", "licence_photo_filename"),
        "additional_drivers": [_row(d, "full_name", "licence_number", "added_at") for d in drivers],
        "signed_at_pickup": None if pickup is None else _plain(pickup.signed_at),
    }

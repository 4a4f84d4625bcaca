"""The rental agreement: asked for at hand-over, made as a PDF by a job, emailed to the
customer, downloadable by the customer and staff.

A hire's agreement documents are numbered: sequence 1 is the agreement signed at the
counter; each later change to the hire that needs the customer's consent (an extension, a
swap of car) is an addendum (`kind` "addendum", the next sequence) with its own snapshot of
what changed and its own signature, amending sequence 1. `request_document` makes either,
so an addendum is one call with a snapshot of the change; `agreement_for` is the signed
agreement and `agreement_documents` all of them in order.

Everything a document says is frozen in its `snapshot` when it is asked for, so the job (and
any later re-rendering, see app/paperwork/pdf.py) needs nothing but that and the stored
signature and photo files.
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ..audit import object_ref, record
from ..extensions import db
from ..hire_access import hire_visible_to
from ..settings import settings
from ..logging_setup import log
from ..mail import queue_email
from ..models import AuditRecord, Extra, Hire, Inspection, RentalAgreement, Role, User, utcnow
from ..queueing import enqueue
from . import agreement_pdf, company

GENERATE_TASK = "app.jobs.paperwork.generate_agreement"
JOB_ID = "agreement-{}"


def local(value: Optional[datetime], tz: str) -> str:
    """A time as the customer reads it: local, with the zone's abbreviation and name."""
    if value is None:
        return ""
    return f"{value.astimezone(ZoneInfo(tz)):%a %d %b %Y %H:%M %Z} ({tz})"


def agreement_for(hire: Hire) -> Optional[RentalAgreement]:
    """The agreement signed at hand-over (sequence 1), if one was made."""
    return db.session.scalar(select(RentalAgreement).where(RentalAgreement.hire_id == hire.id,
                                                           RentalAgreement.sequence == 1))


def agreement_documents(hire: Hire) -> list[RentalAgreement]:
    """The agreement and its addenda, in order."""
    return list(db.session.scalars(select(RentalAgreement).where(RentalAgreement.hire_id == hire.id)
                                   .order_by(RentalAgreement.sequence)))


def _cover(hire: Hire) -> list[str]:
    chosen = [code for code, quantity in (hire.extras or {}).items() if quantity]
    extras = db.session.scalars(select(Extra).where(Extra.code.in_(chosen))).all() if chosen else []
    cover = [f"{e.name}: {e.description}" for e in extras if e.group == "cover"]
    others = [f"{e.name} x{hire.extras[e.code]}" for e in extras if e.group != "cover"]
    return (cover or ["Standard cover: the excess in the terms applies."]) + others


def _rules(hire: Hire) -> dict:
    rules = settings().money
    return {"miles_per_day": hire.car.car_class.mileage_allowance_per_day,
            "excess_mile_pence": rules.excess_mileage_pence_per_mile,
            "late_grace_minutes": rules.late_grace_minutes, "late_hour_pence": rules.late_fee_per_hour_pence,
            "fuel_eighth_pence": rules.fuel_price_per_eighth_pence,
            "refuelling_fee_pence": rules.refuelling_fee_pence, "cleaning_fee_pence": rules.cleaning_fee_pence,
            "unused_day_percent": rules.unused_day_refund_percent}


def _condition(insp: Inspection) -> dict:
    per_panel = current_app.config["AGREEMENT_THUMBS_PER_PANEL"]
    photos: dict[str, list[str]] = {}
    for photo in insp.photos:
        if len(photos.setdefault(photo.panel, [])) < per_panel:
            photos[photo.panel].append(photo.thumb_filename)
    return {"odometer": insp.odometer_miles, "fuel_eighths": insp.fuel_eighths,
            "checklist": dict(insp.checklist), "photos": photos}


def agreement_snapshot(hire: Hire, insp: Inspection, *, deposit_pence: int, deposit_how: str,
                       by: User, now: datetime) -> dict:
    """Everything the agreement says, as it is at hand-over."""
    tz = hire.pickup_branch.timezone
    customer, profile = hire.customer, hire.customer.profile
    address = [profile.address_line1, profile.address_line2, profile.town, profile.postcode] if profile else []
    witness = db.session.get(User, insp.signature_witness_id) if insp.signature_witness_id else by
    car = hire.car
    return {
        "reference": hire.reference, "currency": hire.currency, "seller": company.seller(),
        "customer": {"name": customer.full_name, "email": customer.email,
                     "address": [line for line in address if line]},
        "car": {"make": car.make, "model": car.model, "plate": car.plate, "vin": car.vin or "",
                "year": car.year, "class": car.car_class.name, "fuel": car.fuel_type,
                "transmission": car.transmission},
        "pickup_branch": _branch(hire.pickup_branch), "return_branch": _branch(hire.return_branch),
        "start": local(hire.start_at, tz), "end": local(hire.end_at, hire.return_branch.timezone),
        "price_lines": list(hire.price_lines), "total_pence": hire.total_pence,
        "deposit": {"amount_pence": deposit_pence, "how": deposit_how},
        "cover": _cover(hire), "rules": _rules(hire), "condition": _condition(insp),
        "signature": {"file": insp.signature_filename, "signed_at": local(insp.signed_at, tz),
                      "witness": witness.full_name if witness else ""},
        "handed_over": {"by": by.full_name, "at": local(now, tz)},
    }


def _branch(branch) -> dict:
    return {"name": branch.name, "address": f"{branch.address_line1}, {branch.town} {branch.postcode}"}


def request_document(hire: Hire, snapshot: dict, *, kind: str = "agreement", by: Optional[User],
                     now: datetime) -> RentalAgreement:
    """Record a document to be made (pending) and queue its job. Commits. The agreement is
    made once per hire (asking again returns it); an addendum takes the next sequence."""
    if kind == "agreement":
        existing = agreement_for(hire)
        if existing is not None:
            return existing
        sequence, amends = 1, None
    else:
        amends = agreement_for(hire)
        if amends is None:
            raise ValueError("An addendum needs the agreement it amends.")
        sequence = (db.session.scalar(select(func.max(RentalAgreement.sequence))
                                      .where(RentalAgreement.hire_id == hire.id)) or 1) + 1
    document = RentalAgreement(hire_id=hire.id, sequence=sequence, kind=kind,
                               amends_id=amends.id if amends else None, state="pending",
                               terms_version=current_app.config["TERMS_VERSION"], snapshot=snapshot,
                               requested_by_id=by.id if by else None, created_at=now)
    db.session.add(document)
    try:
        db.session.commit()
    except IntegrityError:  # another request made this one first
        db.session.rollback()
        return db.session.scalars(select(RentalAgreement).where(
            RentalAgreement.hire_id == hire.id, RentalAgreement.sequence == sequence)).one()
    enqueue(GENERATE_TASK, document.id, job_id=JOB_ID.format(document.id))
    return document


def request_agreement(hire: Hire, insp: Inspection, *, deposit_pence: int, deposit_how: str,
                      by: User, now: datetime) -> RentalAgreement:
    """At hand-over: the agreement of this hire, made in the background. Commits."""
    company.terms()  # a missing terms text fails here, at the counter, not later in a job
    snapshot = agreement_snapshot(hire, insp, deposit_pence=deposit_pence, deposit_how=deposit_how,
                                  by=by, now=now)
    return request_document(hire, snapshot, by=by, now=now)


def generate(document_id: int) -> None:
    """The job: render the PDF, store it with its hashes, email it to the customer. Safe to
    run again (a ready document is only emailed, once, by the email's key)."""
    document = db.session.get(RentalAgreement, document_id, populate_existing=True)
    if document is None:
        return
    if document.state != "ready":
        document.attempts += 1
        db.session.commit()
        try:
            rendered = agreement_pdf.render_document(document)
        except Exception as exc:
            db.session.rollback()
            document = db.session.get(RentalAgreement, document_id, populate_existing=True)
            document.last_error = f"{type(exc).__name__}: {exc}"[:300]
            gave_up = (document.attempts > current_app.config["JOB_MAX_RETRIES"]
                       and document.can_move_to("failed"))
            if gave_up:
                document.move_to("failed")
                record(None, "paperwork.agreement_failed", document, {},
                       {"hire": document.hire.reference, "sequence": document.sequence,
                        "error": document.last_error})
            db.session.commit()
            if gave_up:
                log().error("agreement could not be made", hire_id=document.hire_id,
                            sequence=document.sequence, error=document.last_error)
                alert_staff(document)
            raise
        document.pdf, document.content_sha256 = rendered.pdf, rendered.content_sha256
        document.file_sha256, document.ready_at = rendered.file_sha256, utcnow()
        document.move_to("ready")
        document.last_error = ""
        record(None, "paperwork.agreement_made", document.hire, {},
               {"sequence": document.sequence, "sha256": document.content_sha256})
        db.session.commit()
        log().info("agreement made", hire_id=document.hire_id, sequence=document.sequence)
    _email(document)


def _email(document: RentalAgreement) -> None:
    hire = document.hire
    what = "rental agreement" if document.kind == "agreement" else "addendum to your rental agreement"
    queue_email(key=f"hire:{hire.id}:agreement:{document.sequence}", to=hire.customer.email,
                subject=f"Your ACME Rentals {what} for {hire.reference}",
                template="paperwork/emails/agreement.txt", hire=hire, what=what,
                car=document.snapshot["car"], document=document,
                files=[(document.filename, "application/pdf", document.pdf)])


def _retries(document: RentalAgreement) -> int:
    kind, ident = object_ref(document)
    return db.session.scalar(select(func.count(AuditRecord.id)).where(
        AuditRecord.action == "paperwork.agreement_retried", AuditRecord.object_type == kind,
        AuditRecord.object_id == ident)) or 0


def staff_to_alert(hire: Hire) -> list[str]:
    """Who hears that a hire's paperwork failed: the active staff of its pickup branch, and
    STAFF_ALERT_EMAIL when set."""
    staff = db.session.scalars(select(User.email).where(
        User.role.in_([Role.STAFF.value, Role.ADMIN.value]), User.active.is_(True),
        User.branch_id == hire.pickup_branch_id).order_by(User.id))
    found = list(dict.fromkeys([*staff, current_app.config["STAFF_ALERT_EMAIL"]]))
    return [address for address in found if address]


def alert_staff(document: RentalAgreement) -> None:
    """Email staff that the job gave up on a document, once per failure (a retry that fails
    again alerts again), with the counter's hire page where they retry it."""
    hire = document.hire
    round_ = _retries(document)
    url = f"{current_app.config['PUBLIC_BASE_URL'].rstrip('/')}/counter/hires/{hire.reference}"
    recipients = staff_to_alert(hire)
    if not recipients:
        log().error("nobody to alert about a failed agreement: set STAFF_ALERT_EMAIL", hire_id=hire.id)
    what = "rental agreement" if document.kind == "agreement" else f"addendum {document.sequence - 1}"
    for address in recipients:
        queue_email(key=f"agreement:{document.id}:failed:{round_}:{address}", to=address,
                    subject=f"Action needed: the {what} for {hire.reference} could not be made",
                    template="paperwork/emails/agreement_failed.txt", hire=hire, document=document,
                    what=what, url=url)


def retry_failed(hire: Hire, *, by: User, now: datetime) -> list[RentalAgreement]:
    """Staff's "Retry agreement": every failed document of the hire is asked for again
    (pending, its job queued). Nothing failed (already retried, or made meanwhile): nothing
    is done, so pressing twice queues one job. Commits."""
    documents = list(db.session.scalars(select(RentalAgreement).where(
        RentalAgreement.hire_id == hire.id, RentalAgreement.state == "failed")
        .order_by(RentalAgreement.sequence).with_for_update()))
    for document in documents:
        document.move_to("pending")
        document.attempts = 0
        record(by, "paperwork.agreement_retried", document, {"state": "failed", "error": document.last_error},
               {"state": "pending", "hire": hire.reference}, at=now)
    db.session.commit()
    for document in documents:
        enqueue(GENERATE_TASK, document.id, job_id=JOB_ID.format(document.id))
    return documents


def agreement_visible_to(reference: str, user: User, sequence: int = 1) -> Optional[RentalAgreement]:
    """The document, if `user` may fetch it: whoever may see the hire (app/hire_access.py)."""
    hire = hire_visible_to(reference, user)
    if hire is None:
        return None
    document = db.session.scalar(select(RentalAgreement).where(
        RentalAgreement.hire_id == hire.id, RentalAgreement.sequence == sequence))
    return document

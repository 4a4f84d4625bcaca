""""Delete my account" (UK GDPR right to erasure), and wiping the licence data that retention
or erasure removes.

Refused while a hire is open (held, confirmed, on hire, returned and not yet settled) or
money is unsettled (a payment, hold or refund still under way): the message says which.
Otherwise the personal data goes or is pseudonymised, and what the law requires us to keep
for accounting stays: the name and address (they are on the invoices), the bookings and
payments with their amounts. Gone: email (replaced by a pseudonym), password, date of birth,
phone, licence numbers (profile, checks, additional drivers), the licence service's raw
answers, licence photos, signature images, the bodies of emails sent, data downloads. The
account can no longer sign in; staff see it as "erased".
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from flask import current_app
from sqlalchemy import select

from .. import audit, events
from ..extensions import db
from ..models import (DataExport, Hire, HireCheckin, HireDriver, HireState, Inspection,
                      LicenceCheck, LicenceStatus, OutboundEmail, Payment, User)
from ..models.payments import FINAL_STATES
from .exports import delete_export_file

S = HireState
OPEN_STATES = frozenset({S.HELD, S.CONFIRMED, S.ACTIVE, S.RETURNED})
ERASED_DOMAIN = "erased.invalid"  # RFC 2606: never a real mailbox
ERASED_BIRTH_DATE = date(1900, 1, 1)  # the column needs a date; this one says "not known"


class ErasureRefused(Exception):
    def __init__(self, reasons: list[str]):
        super().__init__("; ".join(reasons))
        self.reasons = reasons


def erasure_blockers(user: User) -> list[str]:
    """Why the account cannot be deleted now (empty: it can)."""
    reasons = []
    hires = list(db.session.scalars(select(Hire).where(Hire.customer_id == user.id).order_by(Hire.start_at)))
    for hire in hires:
        if hire.hire_state in OPEN_STATES:
            what = {S.HELD: "is waiting for payment", S.CONFIRMED: "is booked",
                    S.ACTIVE: "is on hire", S.RETURNED: "is being settled"}[hire.hire_state]
            reasons.append(f"Booking {hire.reference} {what}: cancel it or wait until it is closed.")
    ids = [h.id for h in hires]
    if ids:
        unsettled = db.session.scalars(select(Payment).where(
            Payment.hire_id.in_(ids), Payment.state.not_in(FINAL_STATES)).order_by(Payment.id))
        refs = {h.id: h.reference for h in hires}
        for payment in unsettled:
            reasons.append(f"A {payment.kind.replace('_', ' ')} for booking {refs[payment.hire_id]} "
                           "is still being processed.")
    return list(dict.fromkeys(reasons))


@dataclass
class Wiped:
    licence_numbers: int = 0
    licence_photos: int = 0
    signatures: int = 0
    files: list[Path] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"licence_numbers": self.licence_numbers, "licence_photos": self.licence_photos,
                "signatures": self.signatures}


def wipe_licence_data(user: User) -> Wiped:
    """Licence numbers, licence photos and signature images of this customer: gone from the
    rows now, the files once the caller has committed (`remove_files`)."""
    wiped = Wiped()
    uploads = Path(current_app.config["UPLOAD_DIR"])
    profile = user.profile
    if profile is not None and profile.licence_number:
        profile.licence_number = ""
        profile.licence_status = LicenceStatus.UNCHECKED.value
        profile.licence_refusal_reason, profile.licence_checked_at = "", None
        wiped.licence_numbers += 1
    for check in db.session.scalars(select(LicenceCheck).where(LicenceCheck.user_id == user.id)):
        if check.licence_number or check.raw_response:
            wiped.licence_numbers += 1 if check.licence_number else 0
            check.licence_number, check.check_code, check.raw_response = "", "", None
    hire_ids = select(Hire.id).where(Hire.customer_id == user.id)
    for driver in db.session.scalars(select(HireDriver).where(HireDriver.hire_id.in_(hire_ids))):
        if driver.licence_number:
            driver.licence_number = ""
            wiped.licence_numbers += 1
    for checkin in db.session.scalars(select(HireCheckin).where(HireCheckin.hire_id.in_(hire_ids))):
        if checkin.licence_photo_filename:
            wiped.files.append(uploads / "licences" / checkin.licence_photo_filename)
            checkin.licence_photo_filename, checkin.licence_photo_content_type = "", ""
            wiped.licence_photos += 1
    for insp in db.session.scalars(select(Inspection).where(Inspection.hire_id.in_(hire_ids))):
        if insp.signature_filename:
            wiped.files.append(uploads / "inspections" / insp.signature_filename)
            insp.signature_filename = ""
            wiped.signatures += 1
    return wiped


def remove_files(paths: list[Path]) -> None:
    """Delete stored files no row names any more (a content-addressed file may be shared)."""
    for path in paths:
        name = path.name
        in_use = (db.session.scalar(select(HireCheckin.id).where(HireCheckin.licence_photo_filename == name).limit(1))
                  or db.session.scalar(select(Inspection.id).where(Inspection.signature_filename == name).limit(1)))
        if not in_use:
            path.unlink(missing_ok=True)


def erase_account(user: User, *, now: datetime) -> Wiped:
    """Erase the customer's account (they asked). ErasureRefused says why not."""
    db.session.execute(select(User.id).where(User.id == user.id).with_for_update())
    reasons = erasure_blockers(user)
    if reasons:
        db.session.rollback()
        raise ErasureRefused(reasons)
    old_email = user.email
    wiped = wipe_licence_data(user)
    profile = user.profile
    if profile is not None:
        profile.date_of_birth, profile.phone = ERASED_BIRTH_DATE, ""
    for driver in db.session.scalars(select(HireDriver).where(
            HireDriver.hire_id.in_(select(Hire.id).where(Hire.customer_id == user.id)))):
        driver.full_name = "(erased)"
    for email in db.session.scalars(select(OutboundEmail).where(OutboundEmail.to_address == old_email)):
        email.to_address = f"erased-{user.id}@{ERASED_DOMAIN}"
        email.body_text, email.attachment_text = "(erased)", None
    for export in db.session.scalars(select(DataExport).where(DataExport.user_id == user.id)):
        delete_export_file(export)
        db.session.delete(export)
    user.email = f"erased-{user.id}@{ERASED_DOMAIN}"
    user.password_hash = "!erased-" + secrets.token_hex(16)  # no password matches it
    user.active, user.erased_at = False, now
    user.totp_secret, user.recovery_code_hashes = "", []
    user.end_all_sessions()
    audit.record(user, "account.erased", user, {}, {"erased": True, **wiped.as_dict()}, at=now)
    db.session.commit()
    remove_files(wiped.files)
    events.customer_erased.send(user, now=now)
    return wiped

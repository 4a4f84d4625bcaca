"""Online check-in (issue 18): up to CHECKIN_OPENS_HOURS before pickup the customer confirms
their details, reads and accepts the terms (a version of docs/terms/), uploads a photo of the
front of their licence and names any additional drivers (whose licences the licence job
checks like theirs). A checked-in hire skips those steps at the counter.

The licence photo gets the upload safety of car photos (app/fleet/photos.py): size first,
Pillow must recognise a JPEG, PNG or WebP, pixel counts beyond LICENCE_PHOTO_MAX_PIXELS are
refused before decoding, and only the pixels are kept (no EXIF), stored by content hash in
the uploads' `licences` folder. Only the customer and staff can fetch it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from flask import current_app
from sqlalchemy import func, select

from .. import audit
from ..licence import LicenceError, drivers as driver_licences
from ..extensions import db
from ..fleet import photos as photo_files
from ..models import Hire, HireCheckin, HireDriver, HireState, User
from ..terms import UnknownTerms, current_terms
from .errors import BookingError
from .lifecycle import lock_hire

S = HireState
LICENCE_PHOTO_SUBDIR = "licences"


def licence_photo_dir() -> Path:
    return Path(current_app.config["UPLOAD_DIR"]) / LICENCE_PHOTO_SUBDIR


@dataclass(frozen=True)
class Window:
    opens_at: datetime
    closes_at: datetime


def window(hire: Hire) -> Window:
    hours = current_app.config["CHECKIN_OPENS_HOURS"]
    return Window(hire.start_at - timedelta(hours=hours), hire.start_at)


def can_check_in(hire: Hire, now: datetime) -> bool:
    """A confirmed hire, from CHECKIN_OPENS_HOURS before pickup until pickup."""
    w = window(hire)
    return hire.hire_state == S.CONFIRMED and w.opens_at <= now < w.closes_at


def checkin_of(hire: Hire) -> HireCheckin | None:
    return db.session.scalar(select(HireCheckin).where(HireCheckin.hire_id == hire.id))


def checked_in_ids(hire_ids: list[int]) -> set[int]:
    """Which of these hires are checked in online (complete)."""
    if not hire_ids:
        return set()
    return set(db.session.scalars(select(HireCheckin.hire_id).where(
        HireCheckin.hire_id.in_(hire_ids), HireCheckin.completed_at.is_not(None))))


def _refuse_unless_open(hire: Hire, now: datetime) -> None:
    if hire.hire_state != S.CONFIRMED:
        raise BookingError("Only a paid, confirmed booking can be checked in.")
    w = window(hire)
    if now < w.opens_at:
        hours = current_app.config["CHECKIN_OPENS_HOURS"]
        raise BookingError(f"Online check-in opens {hours} hours before pickup.")
    if now >= w.closes_at:
        raise BookingError("Online check-in has closed: the pickup time has passed. "
                           "Please see us at the counter.")


def store_licence_photo(data: bytes) -> tuple[str, str]:
    """Check and clean the licence photo; (file name, content type) or BookingError."""
    cfg = current_app.config
    try:
        clean, fmt, _w, _h = photo_files.process(
            data, max_bytes=cfg["LICENCE_PHOTO_MAX_BYTES"], max_pixels=cfg["LICENCE_PHOTO_MAX_PIXELS"],
            max_side=cfg["LICENCE_PHOTO_MAX_SIDE"])
    except photo_files.PhotoError as exc:
        raise BookingError({"licence_photo": str(exc)})
    content_type, ext, _ = photo_files.FORMATS[fmt]
    return photo_files.write_content_addressed(licence_photo_dir(), clean, ext), content_type


def check_in(hire: Hire, *, by: User, now: datetime, details_confirmed: bool, terms_accepted: bool,
             terms_version: str, licence_photo: bytes | None) -> HireCheckin:
    """Record the check-in; complete once details, terms and licence photo are all in.

    Every problem is reported at once, by field. A second check-in replaces the photo only
    when a new one is sent, and keeps the first completion time.
    """
    _refuse_unless_open(hire, now)
    found = checkin_of(hire)
    errors: dict[str, str] = {}
    if not details_confirmed:
        errors["confirm_details"] = "Confirm that your details above are correct."
    try:
        terms = current_terms()
    except UnknownTerms:
        raise BookingError("The terms of hire cannot be shown just now; please check in at the counter.")
    if not terms_accepted:
        errors["accept_terms"] = "Read the terms and tick to accept them."
    elif terms_version != terms.version:
        errors["accept_terms"] = "The terms have changed since you opened this page: read them again."
    photo = None
    if licence_photo:
        try:
            photo = store_licence_photo(licence_photo)
        except BookingError as exc:
            errors.update(exc.errors)
    elif found is None or not found.licence_photo_filename:
        errors["licence_photo"] = "Add a photo of the front of your driving licence."
    if errors:
        raise BookingError(errors)
    hire = lock_hire(hire)
    found = checkin_of(hire) or HireCheckin(hire_id=hire.id, started_at=now)
    db.session.add(found)
    found.details_confirmed_at = now
    found.terms_version, found.terms_accepted_at = terms.version, now
    if photo is not None:
        found.licence_photo_filename, found.licence_photo_content_type = photo
    found.completed_at = found.completed_at or now
    audit.record(by, "checkin.completed", hire, {}, {
        "terms_version": terms.version, "terms_sha256": terms.sha256,
        "licence_photo": found.licence_photo_filename}, at=now)
    db.session.commit()
    return found


def add_driver(hire: Hire, *, by: User, now: datetime, full_name: str, licence_number: str,
               check_code: str) -> HireDriver:
    """Name an additional driver and start the check of their licence (the licence job)."""
    _refuse_unless_open(hire, now)
    errors: dict[str, str] = {}
    name = " ".join((full_name or "").split())
    if not name:
        errors["full_name"] = "Enter the driver's full name as on their licence."
    number_error = driver_licences.licence_number_error(licence_number)
    number = "".join((licence_number or "").split()).upper()
    if number_error:
        errors["licence_number"] = number_error
    elif hire.customer.profile is not None and number == hire.customer.profile.licence_number:
        errors["licence_number"] = "That is your own licence: add only the other drivers."
    elif db.session.scalar(select(HireDriver.id).where(HireDriver.hire_id == hire.id,
                                                       HireDriver.licence_number == number)):
        errors["licence_number"] = "That driver is already on this booking."
    code_error = driver_licences.check_code_error(check_code)
    if code_error:
        errors["check_code"] = code_error
    count = db.session.scalar(select(func.count(HireDriver.id)).where(HireDriver.hire_id == hire.id))
    limit = current_app.config["ADDITIONAL_DRIVERS_MAX"]
    if count >= limit:
        errors[""] = f"A booking can have at most {limit} additional drivers."
    if errors:
        raise BookingError(errors)
    driver = HireDriver(hire_id=hire.id, full_name=name[:120], licence_number=number, added_at=now)
    db.session.add(driver)
    audit.record(by, "checkin.driver_added", hire, {}, {"driver": name[:120]}, at=now)
    db.session.commit()
    try:
        driver_licences.start_driver_check(hire, driver, check_code, by=by, now=now)
    except LicenceError as exc:
        raise BookingError(exc.errors)
    return driver


def drivers_with_checks(hire: Hire) -> list[tuple[HireDriver, object]]:
    """Each named driver with their latest licence check (None while none was asked)."""
    checks = driver_licences.latest_driver_checks(hire)
    return [(d, checks.get(d.id)) for d in driver_licences.drivers_of(hire)]

"""Online check-in and extending a hire (issue 18): the customer's pages on their own hires,
and the staff's extension (linked from the counter's hire page). Thin: parse, call the
service, render."""

from __future__ import annotations

from datetime import datetime

from flask import abort, current_app, flash, request, send_from_directory, url_for
from flask_login import current_user

from ..filters import money
from ..fleet.photos import FILENAME_RE
from ..models import Hire, utcnow
from ..hire_access import hire_by_reference, hire_visible_to
from ..security import allow
from ..terms import UnknownTerms, current_terms
from ..web import add_errors, render, see_other
from . import bp, checkin, extending
from .checkin_forms import CheckinForm, DriverForm, ExtendForm
from .errors import BookingError, CarTaken
from .trips import to_local


def _own_hire(reference: str) -> Hire:
    hire = hire_visible_to(reference, current_user)
    if hire is None:
        abort(404)
    return hire


def _checkin_page(hire: Hire, status: int = 200, *, form=None, driver_form=None):
    try:
        terms = current_terms()
    except UnknownTerms:
        terms = None
    form = form or CheckinForm(formdata=None)
    if terms is not None:
        form.terms_version.data = terms.version
    now = utcnow()
    return render("booking/checkin.html", "booking/checkin.html", status, hire=hire, form=form,
                  driver_form=driver_form or DriverForm(formdata=None), terms=terms,
                  found=checkin.checkin_of(hire), drivers=checkin.drivers_with_checks(hire),
                  window=checkin.window(hire), open=checkin.can_check_in(hire, now), now=now,
                  max_drivers=current_app.config["ADDITIONAL_DRIVERS_MAX"])


@bp.route("/hires/<reference>/check-in", methods=["GET", "POST"])
@allow("customer")
def check_in(reference: str):
    """Confirm the details, accept the terms, add the licence photo: checked in online."""
    hire = _own_hire(reference)
    if request.method == "GET":
        return _checkin_page(hire)
    form = CheckinForm()
    if form.validate_on_submit():
        upload = form.licence_photo.data
        data = upload.read() if upload and getattr(upload, "filename", "") else None
        try:
            checkin.check_in(hire, by=current_user, now=utcnow(),
                             details_confirmed=bool(form.confirm_details.data),
                             terms_accepted=bool(form.accept_terms.data),
                             terms_version=form.terms_version.data or "", licence_photo=data)
        except BookingError as exc:
            add_errors(form, exc.errors)
        else:
            flash(f"You are checked in for {hire.reference}: at the counter we only need to check the "
                  "car with you and take your signature.", "success")
            return see_other(url_for("booking.check_in", reference=hire.reference))
    return _checkin_page(hire, 422, form=form)


@bp.post("/hires/<reference>/check-in/drivers")
@allow("customer")
def add_driver(reference: str):
    """Name an additional driver; their licence is checked like the hirer's."""
    hire = _own_hire(reference)
    form = DriverForm()
    if form.validate_on_submit():
        try:
            driver = checkin.add_driver(hire, by=current_user, now=utcnow(), full_name=form.full_name.data,
                                        licence_number=form.licence_number.data,
                                        check_code=form.check_code.data)
        except BookingError as exc:
            add_errors(form, exc.errors)
        else:
            flash(f"{driver.full_name} is added; we are checking their licence.", "success")
            return see_other(url_for("booking.check_in", reference=hire.reference) + "#drivers")
    return _checkin_page(hire, 422, driver_form=form)


@bp.get("/hires/<reference>/check-in/licence-photo/<name>")
@allow("customer", "staff", "admin")
def licence_photo(reference: str, name: str):
    """The licence photo: the hire's own customer and staff only; never cached by others."""
    hire = hire_visible_to(reference, current_user)
    if hire is None:
        abort(404)
    found = checkin.checkin_of(hire)
    if found is None or not FILENAME_RE.match(name) or found.licence_photo_filename != name:
        abort(404)
    response = send_from_directory(checkin.licence_photo_dir(), name,
                                   mimetype=found.licence_photo_content_type)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.cache_control.private = True
    response.cache_control.no_store = True
    return response


# --- extending a hire -------------------------------------------------------------------------

def _default_return(hire: Hire) -> datetime:
    return to_local(hire.end_at, hire.return_branch.timezone).replace(second=0, microsecond=0)


def _extend(hire: Hire, *, staff: bool):
    """The extension page for the customer or staff: preview (GET), then confirm (POST)."""
    now = utcnow()
    endpoint = "booking.staff_extend" if staff else "booking.extend"
    back = (url_for("counter.hire", reference=hire.reference) if staff
            else url_for("booking.hire_detail", reference=hire.reference))
    if request.method == "POST":
        form = ExtendForm()
    else:
        form = ExtendForm(formdata=request.args or None, meta={"csrf": False})
        if not request.args:
            form.return_at.data = _default_return(hire)
    preview, status, taken, longest = None, 200, None, None
    allowed = extending.can_extend(hire, now)
    if allowed and (request.method == "POST" or request.args) and form.validate():
        try:
            if request.method == "POST":
                done = extending.extend_hire(
                    hire, form.return_at.data, by=current_user, now=now,
                    expected_extra=form.expected_extra.data, expected_end=form.expected_end.data or "",
                    swap_car_id=form.swap_car.data)
                flash(f"{hire.reference} now ends {to_local(done.hire.end_at, hire.return_branch.timezone):%a %d %b %H:%M}"
                      f" ({money(done.extra_pence)} more)."
                      + (" We are charging it to the card you paid with." if done.payment else ""), "success")
                if done.to_pay_pence and not staff and "payments.start" in current_app.view_functions:
                    return see_other(url_for("payments.start", reference=hire.reference))
                return see_other(back)
            preview = extending.preview_extension(hire, form.return_at.data, now=now,
                                                  swap_car_id=form.swap_car.data)
            if not preview.free:
                taken, status = extending.not_free_message(hire, preview), 409
                longest = extending.longest_extension(hire, preview)
        except CarTaken as exc:
            taken, status = exc.message, 409
        except BookingError as exc:
            add_errors(form, exc.errors)
    if form.errors:
        status = 422
    form.expected_end.data = extending.end_token(hire)
    return render("booking/extend.html", "booking/extend.html", status, hire=hire, form=form,
                  preview=preview, taken=taken, longest=longest, allowed=allowed, endpoint=endpoint, back=back, staff=staff)


@bp.route("/hires/<reference>/extend", methods=["GET", "POST"])
@allow("customer")
def extend(reference: str):
    """Ask for a later return: the price of the extra time, then a confirm step."""
    return _extend(_own_hire(reference), staff=False)


@bp.route("/staff/hires/<reference>/extend", methods=["GET", "POST"])
@allow("staff", "admin")
def staff_extend(reference: str):
    """Staff extend a hire for the customer at the counter (or on the phone)."""
    hire = hire_by_reference(reference)
    if hire is None:
        abort(404)
    return _extend(hire, staff=True)

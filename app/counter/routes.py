"""Counter pages for the tablet. Staff and admins only (the blueprint's guard).

Thin: each step parses its form, calls a service in `services`, and re-renders. A step's
form answers 422 with its messages when wrong; on success the hire page is shown again at
the next unfinished step (so a reload, or a dropped connection, resumes where it stopped).
"""

from __future__ import annotations

import base64
import binascii

from flask import abort, flash, request, send_from_directory, url_for
from flask_login import current_user
from sqlalchemy import select

from .. import paperwork, refdata
from ..booking import lifecycle
from ..extensions import db
from ..filters import money
from ..hire_access import hire_visible_to
from ..models import Hire, InspectionPhoto, utcnow
from ..plain_text import plain_text_error
from ..settings import settings
from ..web import add_errors, int_arg, render, see_other
from . import bp, car_return, counter_board, inspections, pickup, previews
from .errors import AlreadyProcessed, CounterError
from .forms import (DamageForm, HandOverForm, IdCheckForm, NoShowForm, PhotoForm, RefuseForm,
                    SettleForm, SignatureForm, WaiveForm, condition_form)
from .inspections import PICKUP, RETURN
from .licence_routes import licence_context

DATA_URL_PREFIX = "data:image/png;base64,"


def _hire(reference: str) -> Hire:
    """The hire staff asked for (staff and admins may see every hire), or 404."""
    hire = hire_visible_to(reference, current_user)
    if hire is None:
        abort(404)
    return hire


@bp.get("/")
def board():
    """Today's and tomorrow's pickups and returns; filters as you type; refreshes itself."""
    branch_arg = request.args.get("branch", "")
    branch_error = None
    if branch_arg == "all":
        branch_id = None
    elif branch_arg:
        branch_id = int_arg("branch")
        if branch_id is None:  # not an id (or beyond any id): say so and show their own branch
            branch_error, branch_id = "Choose one of the branches.", current_user.branch_id
    else:
        branch_id = current_user.branch_id
    query = request.args.get("q", "")[:60]
    query_error = plain_text_error(query)
    if query_error:  # PostgreSQL cannot search for a NUL: say so and show the whole board
        query = ""
    branches = refdata.current().branches  # by name; read once per worker (app/refdata.py)
    return render("counter/board.html", "counter/partials/_board.html",
                  422 if query_error or branch_error else 200,
                  board=counter_board.board(branch_id=branch_id, now=utcnow(), query=query),
                  branches=branches, branch_id=branch_id, query=query, query_error=query_error,
                  branch_error=branch_error,
                  now=utcnow())


@bp.get("/hires/<reference>")
def hire(reference: str):
    """The hire at the counter: the pickup or the return, at its first unfinished step."""
    hire = _hire(reference)
    kind = RETURN if hire.state in ("active", "returned", "closed") else PICKUP
    return _flow_page(hire, kind)


def _flow_page(hire: Hire, kind: str, status: int = 200, **forms):
    insp = inspections.inspection(hire, kind)
    now = utcnow()
    context = dict(hire=hire, kind=kind, insp=insp, now=now,
                   pickup=inspections.inspection(hire, PICKUP) if kind == RETURN else None,
                   steps=(pickup.pickup_steps(hire, insp) if kind == PICKUP
                          else pickup.return_steps(hire, insp)),
                   panels=settings().counter.condition_panels,
                   papers=paperwork.paperwork_of([hire.id])[hire.id], terms=paperwork.terms())
    version = insp.version if insp else None
    context["id_form"] = forms.get("id_form") or IdCheckForm(formdata=None, version=version)
    context["condition_form"] = forms.get("condition_form") or _condition_form_for(hire, kind, insp)
    context["photo_form"] = forms.get("photo_form") or PhotoForm(formdata=None)
    context["signature_form"] = forms.get("signature_form") or SignatureForm(formdata=None, version=version)
    context["handover_form"] = forms.get("handover_form") or HandOverForm(formdata=None, version=version)
    context["refuse_form"] = forms.get("refuse_form") or RefuseForm(formdata=None)
    context["damage_form"] = forms.get("damage_form") or DamageForm(formdata=None, version=version)
    context["waive_form"] = forms.get("waive_form") or WaiveForm(formdata=None, version=version)
    context["settle_form"] = forms.get("settle_form") or SettleForm(formdata=None, version=version)
    context["step_error"] = forms.get("step_error", "")
    context["online_checkin"] = pickup.online_checkin(hire)
    context["checked_in_online"] = kind == PICKUP and pickup.checked_in_online(hire)
    if kind == PICKUP:
        context["licence_ok"], context["licence_message"] = pickup.licence_ok(hire)
        context.update(licence_context(hire), pickup_money=previews.pickup_money(hire))
    if kind == RETURN and insp is not None and insp.condition_recorded_at is not None:
        try:
            context["lines"] = car_return.preview_charges(hire, insp, now=now)
        except CounterError as exc:
            context["step_error"] = exc.errors.get("", "")
            context["lines"] = []
        context["settle_money"] = previews.settle_money(hire, context["lines"])
    return render("counter/hire.html", "counter/partials/_flow.html", status, **context)


def _condition_form_for(hire: Hire, kind: str, insp):
    form = condition_form(formdata=None, version=insp.version if insp else None)
    if insp is None or insp.condition_recorded_at is None:
        readings = inspections.starting_readings(hire, kind)
        form.odometer.data, form.fuel_eighths.data = readings.odometer_miles, readings.fuel_eighths
    else:
        form.odometer.data, form.fuel_eighths.data = insp.odometer_miles, insp.fuel_eighths
        form.needs_cleaning.data = insp.needs_cleaning
        for panel, entry in insp.checklist.items():
            getattr(form, f"panel_{panel}").data = entry["state"]
            getattr(form, f"note_{panel}").data = entry["note"]
    return form


def _done(hire: Hire, kind: str):
    return see_other(url_for("counter.hire", reference=hire.reference) + f"#{kind}")


def _failed(hire: Hire, kind: str, form_name: str, form, exc: CounterError | None = None):
    if exc is not None:
        add_errors(form, exc.errors)
        if isinstance(exc, AlreadyProcessed):
            db.session.expire_all()
            return _flow_page(hire, kind, 409, step_error=exc.errors[""])
    return _flow_page(hire, kind, 422, **{form_name: form})


def _step(hire: Hire, kind: str, form_name: str, form, action):
    """Run one counter step: validate the form, call the service, show the next step.

    `action(form)` calls the service; a CounterError is shown beside the form (or, if another
    tablet got there first, as a 409 with the latest state)."""
    if not form.validate_on_submit():
        return _failed(hire, kind, form_name, form)
    try:
        action(form)
    except CounterError as exc:
        return _failed(hire, kind, form_name, form, exc)
    return _done(hire, RETURN if form_name == "handover_form" else kind)


@bp.post("/hires/<reference>/<kind>/start")
def start(reference: str, kind: str):
    """Open the pickup or return record (idempotent: reopening resumes it)."""
    hire = _hire(reference)
    if kind not in (PICKUP, RETURN):
        abort(404)
    try:
        inspections.open_inspection(hire, kind, by=current_user, now=utcnow())
    except CounterError as exc:
        return _flow_page(hire, kind, 409, step_error=exc.errors[""])
    return _done(hire, kind)


def _open(hire: Hire, kind: str):
    insp = inspections.inspection(hire, kind)
    if insp is None:
        insp = inspections.open_inspection(hire, kind, by=current_user, now=utcnow())
    return insp


@bp.post("/hires/<reference>/pickup/id-check")
def id_check(reference: str):
    """Tick: photo ID seen and matching (who ticked it is recorded)."""
    hire = _hire(reference)
    return _step(hire, PICKUP, "id_form", IdCheckForm(), lambda form: inspections.tick_id_checked(
        _open(hire, PICKUP), by=current_user, now=utcnow(), version=form.version_number))


@bp.post("/hires/<reference>/<kind>/condition")
def condition(reference: str, kind: str):
    """Odometer, fuel and the per-panel checklist, out or in."""
    hire = _hire(reference)
    if kind not in (PICKUP, RETURN):
        abort(404)

    def record(form):
        checklist = {p: {"state": getattr(form, f"panel_{p}").data, "note": getattr(form, f"note_{p}").data or ""}
                     for p in settings().counter.condition_panels}
        inspections.record_condition(_open(hire, kind), by=current_user, now=utcnow(),
                                     odometer=form.odometer.data, fuel_eighths=form.fuel_eighths.data,
                                     checklist=checklist, needs_cleaning=bool(form.needs_cleaning.data),
                                     version=form.version_number)
    return _step(hire, kind, "condition_form", condition_form(formdata=request.form), record)


@bp.post("/hires/<reference>/<kind>/photos")
def add_photo(reference: str, kind: str):
    """A photo from the tablet camera, for one panel."""
    hire = _hire(reference)
    if kind not in (PICKUP, RETURN):
        abort(404)
    return _step(hire, kind, "photo_form", PhotoForm(), lambda form: inspections.add_photo(
        _open(hire, kind), panel=form.panel.data, data=form.photo.data.read(), by=current_user, now=utcnow()))


@bp.post("/hires/<reference>/pickup/signature")
def signature(reference: str):
    """The customer's signature, drawn on the tablet's screen."""
    hire = _hire(reference)

    def record(form):
        data = form.signature.data or ""
        if not data.startswith(DATA_URL_PREFIX):
            raise CounterError({"signature": "Ask the customer to sign in the box."})
        try:
            png = base64.b64decode(data[len(DATA_URL_PREFIX):], validate=True)
        except (binascii.Error, ValueError):
            raise CounterError({"signature": "The signature did not arrive; please sign again."})
        inspections.record_signature(_open(hire, PICKUP), png=png, by=current_user, now=utcnow(),
                                     version=form.version_number)
    return _step(hire, PICKUP, "signature_form", SignatureForm(), record)


@bp.post("/hires/<reference>/pickup/hand-over")
def hand_over(reference: str):
    """Hand the keys over: the hire becomes active."""
    hire = _hire(reference)
    return _step(hire, PICKUP, "handover_form", HandOverForm(), lambda form: pickup.hand_over(
        hire, by=current_user, now=utcnow(), version=form.version_number))


@bp.post("/hires/<reference>/pickup/refuse")
def refuse(reference: str):
    """Refuse at pickup: the car is released and the customer refunded."""
    hire = _hire(reference)
    return _step(hire, PICKUP, "refuse_form", RefuseForm(), lambda form: pickup.refuse_at_pickup(
        hire, by=current_user, now=utcnow(), reason=form.reason.data))


def _no_show_page(hire: Hire, status: int = 200, error: str = ""):
    if not error and not lifecycle.can_mark_no_show(hire, utcnow()):
        error, status = (f"{hire.reference} cannot be marked as a no-show: it is {hire.state.replace('_', ' ')}"
                         " or its pickup time has not passed."), 409
    return render("counter/no_show.html", "counter/partials/_no_show_confirm.html", status,
                  hire=hire, terms=lifecycle.no_show_terms(hire), form=NoShowForm(formdata=None), error=error)


@bp.get("/hires/<reference>/no-show")
def no_show(reference: str):
    """The confirmation before marking a no-show: the fee kept, the refund, the deposit released."""
    return _no_show_page(_hire(reference))


@bp.post("/hires/<reference>/no-show")
def mark_no_show(reference: str):
    """The customer never came: mark the no-show (the same service the scheduler runs)."""
    hire = _hire(reference)
    form = NoShowForm()
    if not form.validate_on_submit():
        return _no_show_page(hire, 400, "; ".join(form.errors.get("csrf_token", [])) or "Try again.")
    try:
        terms = lifecycle.mark_no_show(hire, by=current_user, now=utcnow())
    except lifecycle.BookingError as exc:
        db.session.expire_all()
        return _no_show_page(hire, 409, exc.message)
    flash(f"{hire.reference} marked as a no-show: {money(terms.fee_pence)} kept, "
          f"{money(terms.refund_pence)} refunded; the car is free again.", "success")
    return see_other(url_for("counter.board"))


@bp.post("/hires/<reference>/return/damage")
def add_damage(reference: str):
    """A damage charge entered by staff (the only amount the tablet ever sends)."""
    hire = _hire(reference)

    def record(form):
        amount = form.amount_pence()
        if amount is None:
            raise CounterError({"amount": "Enter an amount in pounds, like 120 or 120.50."})
        car_return.add_damage(_open(hire, RETURN), panel=form.panel.data, amount_pence=amount,
                              reason=form.reason.data, by=current_user, now=utcnow(), version=form.version_number)
    return _step(hire, RETURN, "damage_form", DamageForm(), record)


@bp.post("/hires/<reference>/return/waive")
def waive(reference: str):
    """Waive one charge, with the reason recorded."""
    hire = _hire(reference)
    return _step(hire, RETURN, "waive_form", WaiveForm(), lambda form: car_return.waive(
        _open(hire, RETURN), code=form.code.data, reason=form.reason.data, by=current_user, now=utcnow(),
        version=form.version_number))


@bp.post("/hires/<reference>/return/settle")
def settle(reference: str):
    """Settle: capture from the deposit what is owed and release the rest."""
    hire = _hire(reference)

    def record(form):
        if form.version_number is None:
            raise CounterError("Reload the page and settle again.")
        result = car_return.settle_return(hire, by=current_user, now=utcnow(), version=form.version_number)
        for problem in result.problems:
            flash(f"Charges recorded, but the payment needs attention: {problem}", "error")
    return _step(hire, RETURN, "settle_form", SettleForm(), record)


@bp.get("/photos/<name>")
def inspection_photo(name: str):
    """A condition photo or signature (staff only: they show a customer's car and handwriting)."""
    from ..fleet.photos import FILENAME_RE
    if not FILENAME_RE.match(name):
        abort(404)
    known = db.session.scalar(select(InspectionPhoto.content_type).where(
        (InspectionPhoto.filename == name) | (InspectionPhoto.thumb_filename == name)).limit(1))
    if known is None:
        from ..models import Inspection
        if db.session.scalar(select(Inspection.id).where(Inspection.signature_filename == name)) is None:
            abort(404)
        known = "image/png"
    response = send_from_directory(inspections.upload_dir(), name, mimetype=known)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.cache_control.private = True
    return response

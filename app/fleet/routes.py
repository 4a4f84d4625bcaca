"""Fleet pages (staff and admins, by the blueprint's guard). Thin: parse, call a service, render."""

from __future__ import annotations

from datetime import datetime
from typing import Optional
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from flask import abort, flash, render_template, request, url_for
from flask_login import current_user

from ..extensions import db
from ..form_fields import ConfirmForm
from ..hire_access import hire_visible_to
from ..models import Car, Hire, MaintenanceBlock, utcnow
from ..web import add_errors, form_status, render, safe_path, see_other
from . import bp, car_records, fleet_list, hire_moves, maintenance
from .errors import FleetError, MaintenanceCollision, RetireRefused
from .forms import CarForm, FleetFilterForm, MaintenanceForm, MoveHireForm, PhotoUploadForm
from .validators import format_plate

LOCAL_INPUT_FORMAT = "%Y-%m-%dT%H:%M"


def _car_or_404(car_id: int) -> Car:
    car = db.session.get(Car, car_id)
    if car is None:
        abort(404)
    return car


def _zone(car: Car) -> ZoneInfo:
    return ZoneInfo(car.home_branch.timezone)


def _aware(local: Optional[datetime], zone: ZoneInfo) -> Optional[datetime]:
    """A time typed in the branch's local time, as an aware time."""
    return local.replace(tzinfo=zone) if local is not None else None


@bp.get("/")
def cars():
    """The fleet list: filters and sort that apply as you type (htmx), or on submit."""
    classes, branches = fleet_list.choices()
    form = FleetFilterForm(request.args)
    form.set_choices(classes, branches)
    valid = form.validate()
    result = fleet_list.search_cars(form.filters())
    query = {k: v for k, v in request.args.items() if k != "page"}
    return render("fleet/cars.html", "fleet/partials/_results.html", 200 if valid else 422,
                  form=form, result=result, format_plate=format_plate,
                  page_url=lambda n: url_for("fleet.cars", **{**query, "page": n}))


@bp.route("/cars/new", methods=["GET", "POST"])
def new_car():
    """Workflow 5: add a car to the fleet, with its photos."""
    classes, branches = fleet_list.choices()
    form = CarForm()
    form.set_choices(classes, branches)
    if request.method == "GET":
        form.year.data = utcnow().year
        form.seats.data, form.doors.data = 5, 5
        form.co2_g_km.data, form.odometer_miles.data = 0, 0
    if form.validate_on_submit():
        try:
            car = car_records.add_car(form.to_data(), form.uploads(), by=current_user, now=utcnow())
        except FleetError as exc:
            add_errors(form, exc.errors)
        else:
            flash(f"{format_plate(car.plate)} is in the fleet.", "success")
            return see_other(url_for("fleet.car", car_id=car.id))
    return render_template("fleet/car_form.html", form=form, car=None), form_status(form)


def _car_page(car: Car, *, status: int = 200, maintenance_form: Optional[MaintenanceForm] = None,
              collision: Optional[MaintenanceCollision] = None,
              retire_refused: Optional[RetireRefused] = None,
              photo_form: Optional[PhotoUploadForm] = None, fragment: Optional[str] = None):
    now = utcnow()
    zone = _zone(car)
    if maintenance_form is None:
        maintenance_form = MaintenanceForm(formdata=None)
        prefill = request.args
        for name in ("starts_at", "ends_at"):
            try:
                getattr(maintenance_form, name).data = datetime.strptime(
                    prefill.get(name, ""), LOCAL_INPUT_FORMAT)
            except ValueError:
                pass
        if prefill.get("kind"):
            maintenance_form.kind.data = prefill["kind"]
        maintenance_form.note.data = prefill.get("note", "")[:300]
    moves = {}
    if collision is not None:
        for hire in collision.hires:
            move = MoveHireForm(formdata=None, prefix=f"move-{hire.id}")
            move.to_car_id.choices = [(c.id, f"{format_plate(c.plate)} · {c.make} {c.model}")
                                      for c in hire_moves.free_cars_for(hire)]
            move.return_to.data = _car_url_with_block(car, maintenance_form)
            moves[hire.id] = move
    context = dict(
        car=car, now=now, zone=car.home_branch.timezone, format_plate=format_plate,
        hires=car_records.hires_to_come(car, now=now), blocks=maintenance.upcoming_blocks(car, now=now),
        maintenance_form=maintenance_form, collision=collision, moves=moves,
        can_move=hire_moves.can_move, retire_refused=retire_refused,
        photo_form=photo_form or PhotoUploadForm(formdata=None), confirm=ConfirmForm(formdata=None),
    )
    if fragment:
        return render("fleet/car.html", fragment, status, **context)
    return render_template("fleet/car.html", **context), status


def _car_url_with_block(car: Car, form: MaintenanceForm) -> str:
    """The car page with the maintenance form filled in again, to retry after moving hires."""
    values = {"kind": form.kind.data or "", "note": form.note.data or ""}
    for name in ("starts_at", "ends_at"):
        value = getattr(form, name).data
        if value:
            values[name] = value.strftime(LOCAL_INPUT_FORMAT)
    return url_for("fleet.car", car_id=car.id) + "?" + urlencode(values) + "#maintenance"


@bp.get("/cars/<int:car_id>")
def car(car_id: int):
    """One car: details, photos, hires to come, maintenance."""
    return _car_page(_car_or_404(car_id))


@bp.route("/cars/<int:car_id>/edit", methods=["GET", "POST"])
def edit_car(car_id: int):
    """Change a car's details."""
    car = _car_or_404(car_id)
    classes, branches = fleet_list.choices()
    form = CarForm()
    form.set_choices(classes, branches)
    del form.photos  # photos are managed on the car's page
    if request.method == "GET":
        form.fill_from(car)
    if form.validate_on_submit():
        try:
            changed = car_records.update_car(car, form.to_data(), by=current_user, now=utcnow())
        except FleetError as exc:
            add_errors(form, exc.errors)
        else:
            flash("Saved." if changed else "Nothing was changed.", "success")
            return see_other(url_for("fleet.car", car_id=car.id))
    return render_template("fleet/car_form.html", form=form, car=car), form_status(form)


@bp.post("/cars/<int:car_id>/retire")
def retire_car(car_id: int):
    """Retire a car; refused (and its hires listed) while it has hires to come."""
    car = _car_or_404(car_id)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    try:
        car_records.retire_car(car, by=current_user, now=utcnow())
    except RetireRefused as exc:
        return _car_page(car, status=409, retire_refused=exc)
    flash(f"{format_plate(car.plate)} is retired: customers can no longer book it.", "success")
    return see_other(url_for("fleet.car", car_id=car.id))


@bp.post("/cars/<int:car_id>/reinstate")
def reinstate_car(car_id: int):
    """Bring a retired car back into the fleet."""
    car = _car_or_404(car_id)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    car_records.reinstate_car(car, by=current_user)
    flash(f"{format_plate(car.plate)} is back in the fleet.", "success")
    return see_other(url_for("fleet.car", car_id=car.id))


@bp.post("/cars/<int:car_id>/photos")
def add_photos(car_id: int):
    """Upload more photos of a car."""
    car = _car_or_404(car_id)
    form = PhotoUploadForm()
    if form.validate_on_submit():
        try:
            added = car_records.add_photos(car, form.uploads(), by=current_user)
        except FleetError as exc:
            add_errors(form, exc.errors)
        else:
            flash(f"{added} photo{'s' if added != 1 else ''} added." if added
                  else "That photo is already on this car.", "success")
            return see_other(url_for("fleet.car", car_id=car.id) + "#photos")
    return _car_page(car, status=422, photo_form=form)


@bp.post("/cars/<int:car_id>/photos/<int:photo_id>/delete")
def remove_photo(car_id: int, photo_id: int):
    """Take a photo off a car."""
    car = _car_or_404(car_id)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    try:
        car_records.remove_photo(car, photo_id, by=current_user)
    except FleetError:
        abort(404)
    flash("Photo removed.", "success")
    return see_other(url_for("fleet.car", car_id=car.id) + "#photos")


@bp.post("/cars/<int:car_id>/photos/<int:photo_id>/cover")
def cover_photo(car_id: int, photo_id: int):
    """Make a photo the one customers see first."""
    car = _car_or_404(car_id)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    try:
        car_records.set_cover(car, photo_id, by=current_user)
    except FleetError:
        abort(404)
    flash("Cover photo changed.", "success")
    return see_other(url_for("fleet.car", car_id=car.id) + "#photos")


@bp.post("/cars/<int:car_id>/maintenance")
def add_maintenance(car_id: int):
    """Take a car out of service; a clash lists the hires in the way, each movable in one click."""
    car = _car_or_404(car_id)
    form = MaintenanceForm()
    fragment = "fleet/partials/_maintenance.html"
    if form.validate_on_submit():
        zone = _zone(car)
        try:
            maintenance.add_block(car, kind=form.kind.data, starts_at=_aware(form.starts_at.data, zone),
                                  ends_at=_aware(form.ends_at.data, zone), note=form.note.data or "",
                                  by=current_user, now=utcnow())
        except MaintenanceCollision as exc:
            form.form_errors.append(exc.errors[""])
            return _car_page(car, status=409, maintenance_form=form, collision=exc,
                             fragment=fragment)
        except FleetError as exc:
            add_errors(form, exc.errors)
        else:
            flash("The car is booked out for maintenance.", "success")
            return see_other(url_for("fleet.car", car_id=car.id) + "#maintenance")
    return _car_page(car, status=422, maintenance_form=form, fragment=fragment)


@bp.post("/maintenance/<int:block_id>/delete")
def remove_maintenance(block_id: int):
    """Cancel a maintenance block."""
    block = db.session.get(MaintenanceBlock, block_id)
    if block is None:
        abort(404)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    car_id = block.car_id
    maintenance.remove_block(block, by=current_user)
    flash("Maintenance block cancelled.", "success")
    return see_other(url_for("fleet.car", car_id=car_id) + "#maintenance")


def _hire_or_404(reference: str) -> Hire:
    """The hire asked for (staff and admins may see every hire), or 404."""
    hire = hire_visible_to(reference, current_user)
    if hire is None:
        abort(404)
    return hire


@bp.get("/hires/<reference>")
def hire(reference: str):
    """A hire as the fleet sees it: which car, when, and the cars it could move to."""
    hire = _hire_or_404(reference)
    form = MoveHireForm(formdata=None)
    form.to_car_id.choices = [(c.id, f"{format_plate(c.plate)} · {c.make} {c.model}")
                              for c in hire_moves.free_cars_for(hire)]
    return render_template("fleet/hire.html", hire=hire, form=form, format_plate=format_plate,
                           can_move=hire_moves.can_move(hire) and hire.start_at > utcnow())


@bp.post("/hires/<reference>/move")
def move_hire(reference: str):
    """One action: give the hire another free car of its class; the customer is emailed."""
    hire = _hire_or_404(reference)
    prefix = request.args.get("prefix", "")
    form = MoveHireForm(prefix=prefix if prefix == f"move-{hire.id}" else "")
    form.to_car_id.choices = [(c.id, c.plate) for c in hire_moves.free_cars_for(hire)]
    back = safe_path(form.return_to.data, url_for("fleet.hire", reference=hire.reference))
    if not form.validate_on_submit():
        abort(400)
    to_car = db.session.get(Car, form.to_car_id.data or 0)
    if to_car is None:
        flash("Choose a car to move the hire to.", "error")
        return see_other(back)
    old_plate = format_plate(hire.car.plate)
    try:
        hire_moves.move_hire(hire, to_car, by=current_user, now=utcnow())
    except FleetError as exc:
        flash(" ".join(exc.errors.values()), "error")
        return see_other(back)
    flash(f"Hire {hire.reference} moved from {old_plate} to {format_plate(to_car.plate)}; "
          f"{hire.customer.full_name} has been emailed.", "success")
    return see_other(back)

"""Booking pages. Thin: parse the form, call a service, render.

Search, quote: anyone. Review, confirm, my bookings, cancel, change: signed-in customers,
and only their own hires (someone else's reference is a 404).
"""

from __future__ import annotations

from typing import Optional

from flask import abort, current_app, flash, request, url_for
from flask_login import current_user
from werkzeug.datastructures import MultiDict

from .. import paperwork, refdata
from ..filters import money
from ..hire_access import hire_visible_to
from ..models import Hire, HireState, User, utcnow
from ..pagecache import public_cache
from ..refdata import BranchRef, CarClassRef
from ..security import allow
from ..settings import settings
from ..web import add_errors, render, see_other
from . import availability, bp
from .cancellation import CancelPolicy, cancellation_refund_pence
from .changes import change_hire, preview_change, trip_for_change
from .eligibility import booking_eligibility
from .errors import BookingError, CarTaken, NotEligible, PriceChanged
from .forms import (CancelForm, ChangeForm, ConfirmForm, SearchForm, TripForm, chosen_extras,
                    extras_args, trip_args, with_extras)
from .holds import create_hold, new_idempotency_key, same_booking
from .lifecycle import cancel_hire
from .my_bookings import customer_bookings, payments_under_review
from .quotes import active_extras
from .storefront import class_picture, default_search_args, extra_terms
from .suggestions import nothing_free
from .trips import SORTS, Filters, Trip, make_trip, to_local


@bp.app_template_global()
def car_photo_url(car) -> str | None:
    """The car's cover photo, served publicly by the fleet area's media blueprint."""
    return url_for("media.car_photo", name=car.photo) if car.photo else None


@bp.app_template_global()
def car_photo_srcset(car) -> str | None:
    """The cover photo and its narrower copies for `srcset` (the fleet area makes them on
    demand); None when the photo is no wider than the narrowest copy."""
    if not car.photo or "media.car_photo_width" not in current_app.view_functions:
        return None
    if isinstance(car, availability.CarView):  # the search's and car page's: read with the car
        cover_width = car.cover_width
    else:
        cover_width = next((p.width for p in car.photos if p.filename == car.photo), None)
    if cover_width is None:
        return None
    widths = [w for w in current_app.config["CAR_PHOTO_WIDTHS"] if w < cover_width]
    if not widths:
        return None
    return ", ".join([*(f"{url_for('media.car_photo_width', width=w, name=car.photo)} {w}w" for w in widths),
                      f"{url_for('media.car_photo', name=car.photo)} {cover_width}w"])


@bp.app_template_global()
def class_picture_url(car_class) -> str:
    """The class's illustration: every class and every car without a photo shows one."""
    return url_for("static", filename=class_picture(car_class.code))


@bp.app_template_global()
def extra_price_terms(extra) -> str:
    """An extra's price and how it is charged, next to it before it is picked."""
    return extra_terms(extra)


@bp.app_template_global()
def licence_check_url() -> str:
    """Where a customer sees and fixes their licence check."""
    return url_for("accounts.licence_check")


def _customer() -> Optional[User]:
    return current_user if current_user.is_authenticated else None  # type: ignore[return-value]


def _branches() -> list[BranchRef]:
    return list(refdata.current().branches)  # by name


def _classes() -> list[CarClassRef]:
    return list(refdata.current().classes)  # by daily rate


def _default_args(branches: list[BranchRef]) -> MultiDict:
    """A first search: the first branch, the next open day, three days."""
    return MultiDict(default_search_args(branches, utcnow()))


def _trip(form: TripForm) -> Trip:
    return make_trip(pickup_branch_id=form.pickup_branch.data,
                     return_branch_id=form.return_branch.data,
                     pickup_local=form.pickup_at.data, return_local=form.return_at.data,
                     now=utcnow())


def _parse(form_class, formdata, branches):
    """Build and check a trip form with extras: (form, trip or None, extras, chosen)."""
    extras = active_extras()
    cls = with_extras(form_class, extras)
    form = cls() if formdata is None else cls(formdata=formdata)  # None: the POSTed form
    form.set_branches(branches)
    trip, chosen = None, {}
    if form.validate():
        chosen = chosen_extras(form, extras)
        try:
            trip = _trip(form)
        except BookingError as exc:
            add_errors(form, exc.errors)
    return form, trip, extras, chosen


def _extras_errors(form, exc: BookingError, extras) -> None:
    """Extras' errors come keyed by extra code; a cover level's field is its group."""
    by_code = {f"extra_{e.code}": (f"group_{e.group}" if e.group else f"extra_{e.code}") for e in extras}
    add_errors(form, {by_code.get(k, k): m for k, m in exc.errors.items()})


@bp.get("/")
@allow("public")
@public_cache
def search():
    """Find free cars; htmx re-asks as the customer types and swaps only the results."""
    branches = _branches()
    form = SearchForm(formdata=request.args if request.args else _default_args(branches))
    form.set_branches(branches)
    form.set_classes(_classes())
    result, status, why = None, 200, None
    if form.validate():
        try:
            trip = _trip(form)
        except BookingError as exc:
            add_errors(form, exc.errors)
        else:
            filters = Filters(car_class=form.car_class.data or "", min_seats=int(form.seats.data or 0),
                              transmission=form.transmission.data or "",
                              fuel_type=form.fuel.data or "", sort=form.sort.data or SORTS[0][0])
            result = availability.search(trip, filters, customer=_customer())
            if not result.offers:
                why = nothing_free(trip, filters, now=utcnow())
    if form.errors:
        status = 422
    args = trip_args(form) if result is not None else {}
    return render("booking/search.html", "booking/partials/_results.html", status, form=form,
                  result=result, args=args, why=why)


@bp.get("/cars/<int:car_id>")
@allow("public")
@public_cache
def quote(car_id: int):
    """One car's itemised price; choosing extras re-asks (htmx) and swaps the breakdown."""
    form, trip, extras, chosen = _parse(TripForm, request.args, _branches())
    context = dict(form=form, extras=extras, car_id=car_id, offer=None, taken=None)
    status = 200
    if trip is not None:
        context["args"] = trip_args(form)
        try:
            context["offer"] = availability.offer_for(car_id, trip, chosen, customer=_customer())
        except CarTaken as exc:
            context["taken"], status = exc, 409
        except BookingError as exc:
            _extras_errors(form, exc, extras)
    if form.errors and status == 200:
        status = 422
    if context["offer"] is not None:
        args = {**trip_args(form), **extras_args(chosen, extras)}
        context.update(trip=trip, review_url=url_for("booking.review", car_id=car_id, **args),
                       search_url=url_for("booking.search", **trip_args(form)))
    return render("booking/quote.html", "booking/partials/_quote.html", status, **context)


def _review_context(car_id: int, form, trip, extras, chosen, *, key: str):
    """What the confirm step shows: the statement, the breakdown, or why it cannot go on."""
    context = dict(form=form, car_id=car_id, offer=None, taken=None, ineligible=None, extras=extras,
                   key=key, existing=None)
    if trip is None:
        return context, 422
    context["args"] = trip_args(form)
    context["hidden"] = {**context["args"], **extras_args(chosen, extras)}
    existing = same_booking(current_user, car_id, trip)
    if existing is not None:  # reloaded after confirming: no second hold, show the first
        context.update(existing=existing, existing_url=_after_booking_url(existing))
        return context, 200
    eligible, why = booking_eligibility(current_user, trip.start, trip.end)
    if not eligible:
        context["ineligible"] = why
    try:
        offer = availability.offer_for(car_id, trip, chosen, customer=_customer())
    except CarTaken as exc:
        context["taken"] = exc
        return context, 409
    except BookingError as exc:
        _extras_errors(form, exc, extras)
        return context, 422
    context.update(offer=offer, trip=trip, chosen=chosen,
                   quote_url=url_for("booking.quote", car_id=car_id, **trip_args(form),
                                     **extras_args(chosen, extras)))
    return context, 200


@bp.get("/cars/<int:car_id>/review")
@allow("customer")
def review(car_id: int):
    """The confirm step: "You are about to book ... for £X"; nothing is held or paid yet."""
    form, trip, extras, chosen = _parse(TripForm, request.args, _branches())
    context, status = _review_context(car_id, form, trip, extras, chosen,
                                      key=new_idempotency_key())
    return render("booking/review.html", "booking/partials/_review.html", status, **context)


@bp.post("/cars/<int:car_id>/confirm")
@allow("customer")
def confirm(car_id: int):
    """Hold the car (state `held`) and hand over to payment. Posting twice gives one hire."""
    form, trip, extras, chosen = _parse(ConfirmForm, None, _branches())
    # A form that lost its key gets a fresh one: it has created nothing yet.
    key = form.idempotency_key.data or new_idempotency_key()
    if trip is not None:
        try:
            hire = create_hold(
                customer=current_user, car_id=car_id, trip=trip, extras=chosen,
                idempotency_key=key,
                expected_total_pence=form.expected_total.data, now=utcnow())
        except CarTaken as exc:
            context = dict(form=form, car_id=car_id, offer=None, taken=exc, ineligible=None,
                           extras=extras, args=trip_args(form), key=key, existing=None)
            return render("booking/review.html", "booking/partials/_review.html", 409, **context)
        except PriceChanged as exc:
            context, status = _review_context(car_id, form, trip, extras, chosen, key=key)
            add_errors(form, exc.errors)
            return render("booking/review.html", "booking/partials/_review.html", 409, **context)
        except NotEligible as exc:
            context, _ = _review_context(car_id, form, trip, extras, chosen, key=key)
            context["ineligible"] = exc.message
            return render("booking/review.html", "booking/partials/_review.html", 403, **context)
        except BookingError as exc:
            _extras_errors(form, exc, extras)
        else:
            return see_other(_after_booking_url(hire))
    context, status = _review_context(car_id, form, trip, extras, chosen, key=key)
    return render("booking/review.html", "booking/partials/_review.html",
                  422 if status == 200 else status, **context)


def _after_booking_url(hire: Hire) -> str:
    """The payment step for a hold, else the booking's own page."""
    if hire.hire_state == HireState.HELD:
        return url_for("payments.start", reference=hire.reference)
    return url_for("booking.hire_detail", reference=hire.reference)


@bp.get("/mine")
@allow("customer")
def my_bookings():
    """The customer's upcoming, active and past hires."""
    bookings = customer_bookings(current_user, now=utcnow())
    papers = paperwork.paperwork_of(h.id for h in (*bookings.upcoming, *bookings.active, *bookings.past))
    return render("booking/mine.html", "booking/mine.html", bookings=bookings, now=utcnow(),
                  paperwork=papers)


def _own_hire(reference: str) -> Hire:
    """The signed-in customer's own hire (these pages admit customers only), or 404."""
    hire = hire_visible_to(reference, current_user)
    if hire is None:
        abort(404)
    return hire


@bp.get("/hires/<reference>")
@allow("customer")
def hire_detail(reference: str):
    """One booking: its state, times, frozen price lines, and what can be done with it."""
    hire = _own_hire(reference)
    return render("booking/hire.html", "booking/hire.html", hire=hire, now=utcnow(),
                  under_review=bool(payments_under_review([hire])),
                  papers=paperwork.paperwork_of([hire.id])[hire.id])


@bp.route("/hires/<reference>/cancel", methods=["GET", "POST"])
@allow("customer")
def cancel(reference: str):
    """Cancel, after a confirm step that states the refund under the policy."""
    hire = _own_hire(reference)
    now = utcnow()
    form = CancelForm()
    if form.validate_on_submit():
        try:
            refund = cancel_hire(hire, by=current_user, now=now)
        except BookingError as exc:
            add_errors(form, exc.errors)
        else:
            flash(f"Booking {hire.reference} is cancelled." + (
                f" We are refunding {money(refund)} to your card." if refund else ""), "success")
            return see_other(url_for("booking.my_bookings"))
    status = 422 if form.errors else 200
    policy = CancelPolicy.from_settings(settings().money)
    return render("booking/cancel.html", "booking/partials/_cancel.html", status, hire=hire,
                  form=form, refund=cancellation_refund_pence(hire, now, policy),
                  policy=policy, allowed=hire.can_cancel(now))


@bp.route("/hires/<reference>/change", methods=["GET", "POST"])
@allow("customer")
def change(reference: str):
    """New dates or extras, re-quoted live; applied only if the car is still free."""
    hire = _own_hire(reference)
    now = utcnow()
    extras = active_extras()
    form_class = with_extras(ChangeForm, extras)
    if request.method == "POST":
        form = form_class()
    elif request.args:
        form = form_class(formdata=request.args, meta={"csrf": False})
    else:
        form = form_class(formdata=_hire_args(hire, extras), meta={"csrf": False})
    preview, status, taken = None, 200, None
    if form.validate():
        try:
            trip = trip_for_change(hire, form.pickup_at.data, form.return_at.data, now)
            chosen = chosen_extras(form, extras)
            if request.method == "POST":
                preview = change_hire(hire, trip, chosen, by=current_user, now=now)
                flash(f"Booking {hire.reference} is changed. New total {money(preview.quote.total_pence)}.",
                      "success")
                if preview.difference_pence > 0 and hire.hire_state == HireState.CONFIRMED:
                    return see_other(url_for("payments.start", reference=hire.reference))
                return see_other(url_for("booking.hire_detail", reference=hire.reference))
            preview = preview_change(hire, trip, chosen, now=now)
        except CarTaken as exc:
            taken, status = exc.message, 409
        except BookingError as exc:
            _extras_errors(form, exc, extras)
    if form.errors:
        status = 422
    return render("booking/change.html", "booking/partials/_change_preview.html", status, hire=hire,
                  form=form, preview=preview, taken=taken, allowed=hire.can_change(now), extras=extras)


def _hire_args(hire: Hire, extras) -> MultiDict:
    args = {"pickup_at": to_local(hire.start_at, hire.pickup_branch.timezone)
            .strftime("%Y-%m-%dT%H:%M"),
            "return_at": to_local(hire.end_at, hire.return_branch.timezone)
            .strftime("%Y-%m-%dT%H:%M")}
    args.update(extras_args(dict(hire.extras or {}), extras))
    return MultiDict(args)

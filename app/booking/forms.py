"""Booking forms. Single-field rules here; the rules across fields (times, branches, free
cars, prices) live in services.

Search, quote and review are GET forms (bookmarkable, no CSRF: they change nothing);
confirm, cancel and change are POST forms with CSRF. Extras come from the `extras` table,
so their fields are added to a form class at run time by `with_extras`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterable

from wtforms import BooleanField, DateTimeLocalField, HiddenField, RadioField, SelectField
from wtforms.validators import InputRequired, NumberRange, Optional

from ..form_fields import Form, IntSelectField, WholeNumberField
from ..models import Extra
from ..models.fleet import FUEL_TYPES, TRANSMISSIONS
from .trips import SORTS

DATETIME_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
SEAT_CHOICES = [("", "Any"), ("4", "4 or more"), ("5", "5 or more"), ("7", "7 or more")]
TRIP_FIELDS = ("pickup_branch", "return_branch", "pickup_at", "return_at")


class LocalDateTimeField(DateTimeLocalField):
    """A date and time at the branch, with a message people understand."""

    def process_formdata(self, valuelist):
        try:
            super().process_formdata(valuelist)
        except ValueError as exc:
            raise ValueError("Enter a date and time, like 2026-06-01 10:00.") from exc


class _TripFields:
    """Where and when: branches and local date-times."""

    pickup_branch = IntSelectField("Pick up at",
                                   validators=[InputRequired("Choose where to pick the car up.")])
    return_branch = IntSelectField("Return to",
                                   validators=[InputRequired("Choose where to return the car.")])
    pickup_at = LocalDateTimeField("Pick up", format=DATETIME_FORMATS,
                                   validators=[InputRequired("Enter the pickup date and time.")])
    return_at = LocalDateTimeField("Return", format=DATETIME_FORMATS,
                                   validators=[InputRequired("Enter the return date and time.")])

    def set_branches(self, branches: Iterable) -> None:
        choices = [(b.id, b.name) for b in branches]
        self.pickup_branch.choices = choices  # type: ignore[attr-defined]
        self.return_branch.choices = choices  # type: ignore[attr-defined]


class TripForm(_TripFields, Form):
    """A trip in a GET form (search, quote, review): it changes nothing, so no CSRF."""

    class Meta:
        csrf = False


class SearchForm(TripForm):
    car_class = SelectField("Class", choices=[("", "Any class")], default="")
    seats = SelectField("Seats", choices=SEAT_CHOICES, default="")
    transmission = SelectField("Gearbox", default="", choices=[("", "Any")] + [
        (t, t.capitalize()) for t in TRANSMISSIONS])
    fuel = SelectField("Fuel", default="", choices=[("", "Any")] + [
        (f, f.capitalize()) for f in FUEL_TYPES])
    sort = SelectField("Sort by", default=SORTS[0][0], choices=list(SORTS),
                       validators=[Optional()])

    def set_classes(self, classes: Iterable) -> None:
        self.car_class.choices = [("", "Any class")] + [(c.code, c.name) for c in classes]


class ConfirmForm(_TripFields, Form):
    """The confirm step: the same trip and extras, a one-time key, and the total shown."""

    idempotency_key = HiddenField(validators=[InputRequired("Your form expired. Please try again.")])
    expected_total = WholeNumberField(validators=[Optional(), NumberRange(min=0)])


class ChangeForm(Form):
    """New dates (at the same branches) and extras for an existing booking."""

    pickup_at = LocalDateTimeField("Pick up", format=DATETIME_FORMATS,
                                   validators=[InputRequired("Enter the pickup date and time.")])
    return_at = LocalDateTimeField("Return", format=DATETIME_FORMATS,
                                   validators=[InputRequired("Enter the return date and time.")])


class CancelForm(Form):
    """Only the CSRF token: the confirm step's button."""


def extra_field_name(extra: Extra) -> str:
    return f"extra_{extra.code}"


def group_field_name(group: str) -> str:
    return f"group_{group}"


def with_extras(form_class: type[Form], extras: list[Extra]) -> type[Form]:
    """A subclass of `form_class` with one field per extra (a radio group per `group`).

    Made once per form class and set of extras (the reference data's are frozen values), as a
    form class written out in this module would be."""
    return _with_extras(form_class, tuple(extras))


@lru_cache(maxsize=64)
def _with_extras(form_class: type[Form], extras: tuple) -> type[Form]:
    attrs: dict = {}
    groups: dict[str, list[Extra]] = {}
    for extra in extras:
        if extra.group:
            groups.setdefault(extra.group, []).append(extra)
        elif extra.max_quantity == 1:
            attrs[extra_field_name(extra)] = BooleanField(extra.name, description=extra.description)
        else:
            attrs[extra_field_name(extra)] = IntSelectField(
                extra.name, description=extra.description, default=0,
                choices=[(n, str(n)) for n in range(extra.max_quantity + 1)])
    for group, members in groups.items():
        attrs[group_field_name(group)] = RadioField(
            group.capitalize(), default="", validate_choice=True,
            choices=[("", "Basic (included)")] + [(e.code, e.name) for e in members])
    return type(f"{form_class.__name__}WithExtras", (form_class,), attrs)


def chosen_extras(form: Form, extras: list[Extra]) -> dict[str, int]:
    """The extras a form asks for, as {code: quantity}."""
    chosen: dict[str, int] = {}
    for extra in extras:
        if extra.group:
            field = getattr(form, group_field_name(extra.group))
            if field.data == extra.code:
                chosen[extra.code] = 1
            continue
        value = getattr(form, extra_field_name(extra)).data
        quantity = int(value or 0) if not isinstance(value, bool) else int(value)
        if quantity:
            chosen[extra.code] = quantity
    return chosen


def extras_args(chosen: dict[str, int], extras: list[Extra]) -> dict[str, str]:
    """URL arguments that reproduce a choice of extras."""
    args: dict[str, str] = {}
    for extra in extras:
        quantity = chosen.get(extra.code)
        if not quantity:
            continue
        if extra.group:
            args[group_field_name(extra.group)] = extra.code
        elif extra.max_quantity == 1:
            args[extra_field_name(extra)] = "y"
        else:
            args[extra_field_name(extra)] = str(quantity)
    return args


def trip_args(form) -> dict[str, str]:
    """URL arguments that reproduce a trip."""
    return {
        "pickup_branch": str(form.pickup_branch.data),
        "return_branch": str(form.return_branch.data),
        "pickup_at": form.pickup_at.data.strftime(DATETIME_FORMATS[0]),
        "return_at": form.return_at.data.strftime(DATETIME_FORMATS[0]),
    }

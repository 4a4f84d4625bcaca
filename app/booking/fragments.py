"""Pieces of the search page and the car page rendered once per worker and reused (issue 19).

Rendering a page of 24 cars through Jinja's macros, and the search form's select fields
through WTForms' widgets, was most of a signed-in search page's CPU. These pieces are pure
functions of plain values, so each is rendered by its macro the first time and kept, keyed
by everything it shows:

- a car's summary on a result card (photo, name, class, facts): by the car's `CarView`, a
  frozen value read with the page's query (a car whose make, photo, class... changed is a
  new key); cars read as ORM objects (other pages) are rendered every time;
- a select field (`bfield`): by its name, label, hint, choices, the value chosen, its
  errors, flags and attributes (the search form's branches, class, seats, gearbox, fuel,
  sort: a small set of combinations); a date-time field likewise, by the text its input
  shows (`_value()`: what was typed, else the date formatted);
- the car page's extras: by the extras (reference data, frozen values) and each extra
  field's value and errors;
- the search's list of priced cars: by the answer it shows (`availability.search` keeps
  answers by the rows they were worked out from) and the links' query string.

Per app (a Gunicorn worker's), bounded: a full cache is emptied and fills again. Which cars
are free is read on every request, and a kept list is only reused for the same rows.
"""

from __future__ import annotations

from typing import Callable

from flask import get_template_attribute, request
from markupsafe import Markup

from ..config import FRAGMENTS_PER_KIND, SEARCH_ANSWERS_KEPT
from ..web import fragment_cache, keep_fragment
from . import bp
from .availability import CarView

FIELDS_TEMPLATE = "booking/partials/_fields.html"
CAR_LIST_TEMPLATE = "booking/partials/_car_list.html"
SELECT_TYPES = frozenset({"SelectField", "IntSelectField"})
DATETIME_TYPES = frozenset({"LocalDateTimeField"})  # an <input> whose value is `_value()`
KEPT_TYPES = SELECT_TYPES | DATETIME_TYPES


def _remember(kind: str, key, render: Callable[[], Markup], *,
              limit: int = FRAGMENTS_PER_KIND) -> Markup:
    cache = fragment_cache(kind)
    try:
        return cache[key]
    except KeyError:
        return keep_fragment(cache, key, render(), limit=limit)


def _macro(name: str):
    return get_template_attribute(FIELDS_TEMPLATE, name)


@bp.app_template_global()
def car_summary(car, sizes: str = "(min-width: 700px) 200px, calc(100vw - 4rem)") -> Markup:
    """A result card's photo, name, class and facts (`car_summary` in _fields.html)."""
    def render() -> Markup:
        return _macro("car_summary")(car, sizes)

    if not isinstance(car, CarView):
        return Markup(render())
    return _remember("car", (car, sizes, request.script_root), render)


@bp.app_template_global()
def car_list(result, args: dict) -> Markup:
    """The search's list of priced cars (`car_list` in _car_list.html), kept per answer: by the
    answer's key (availability.search: the rows it was worked out from, the trip, the young
    driver rule, the reference data's version) and the links' query string."""
    def render() -> Markup:
        return get_template_attribute(CAR_LIST_TEMPLATE, "car_list")(result, args)

    if result.key is None:
        return Markup(render())
    key = (result.key, tuple(sorted(args.items())), request.script_root)
    return _remember("car_list", key, render, limit=SEARCH_ANSWERS_KEPT)


def _field_key(f, hint):
    """Everything a select or date-time field's HTML depends on, or None when it cannot be a
    key."""
    try:
        shown = tuple(tuple(c) for c in f.choices) if f.type in SELECT_TYPES else f._value()
        return (type(f), f.id, f.name, f.label.text, f.description, hint, repr(f.data), shown,
                tuple(f.errors), tuple(sorted(vars(f.flags).items())),
                tuple(sorted((f.render_kw or {}).items())), request.script_root)
    except TypeError:  # choices in groups, unhashable attributes: rendered every time
        return None


@bp.app_template_global()
def cached_bfield(f, hint=None) -> Markup:
    """`bfield(f, hint)` of _fields.html; a select or date-time field's HTML is kept (see
    above)."""
    def render() -> Markup:
        return _macro("bfield")(f, hint=hint)

    key = _field_key(f, hint) if f.type in KEPT_TYPES else None
    if key is None:
        return Markup(render())
    return _remember("field", key, render)


@bp.app_template_global()
def cached_extras_fields(form, extras) -> Markup:
    """`extras_fields(form, extras)` of _fields.html, kept by the extras and their fields'
    values and errors (the prices shown beside them are the extras' own, before VAT)."""
    def render() -> Markup:
        return _macro("extras_fields")(form, extras)

    try:
        key = (tuple(extras), request.script_root, tuple(
            (f.name, type(f), repr(f.data), repr(f.raw_data), tuple(f.errors))
            for f in form if f.name.startswith(("extra_", "group_"))))
        hash(key)
    except TypeError:
        return Markup(render())
    return _remember("extras", key, render)

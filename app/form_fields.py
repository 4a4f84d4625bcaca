"""Form pieces more than one area uses: the base form (no control characters in typed text),
tidying typed text, money in pounds, whole numbers a database column holds and ranges with
messages that say what to type, plain text, and the confirm-button form.

Shapes only: rules that need the database or several fields live in each area's services.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Optional

from flask_wtf import FlaskForm
from wtforms import IntegerField, PasswordField, SelectField, StringField, TextAreaField
from wtforms.validators import StopValidation, ValidationError

from .config import FILTER_DATE_MAX, FILTER_DATE_MIN
from .plain_text import plain_text_error
from .web import bounded_int

REQUIRED = "This field is required."
# Pounds as people type them: "45", "45.5", "£45.50" (thousands commas are dropped first).
MONEY_RE = re.compile(r"^£?\s*(\d{1,7})(?:\.(\d{1,2}))?$")


def strip(value):
    """A WTForms filter: surrounding white space off typed text."""
    return value.strip() if isinstance(value, str) else value


def parse_pounds(text: str) -> Optional[int]:
    """"45", "45.5", "£45.50", "1,200" -> pence; None if it is not an amount."""
    match = MONEY_RE.match((text or "").replace(",", "").strip())
    if not match:
        return None
    return int(match.group(1)) * 100 + int((match.group(2) or "0").ljust(2, "0"))


def pounds(pence: Optional[int]) -> str:
    """Pence as a form shows them back: 4550 -> "45.50" ("" for none)."""
    return "" if pence is None else f"{pence // 100}.{pence % 100:02d}"


class WholeNumberField(IntegerField):
    """An integer field (negative allowed, no larger than a database column holds) whose
    parse error says what to type.

    `example` is the number the message suggests ("Enter a whole number, like 5.").
    """

    def __init__(self, *args, example: int = 5, **kwargs):
        super().__init__(*args, **kwargs)
        self.example = example

    def process_formdata(self, valuelist):
        raw = (valuelist[0] if valuelist else "").strip()
        if not raw:
            self.data = None
            return
        try:
            self.data = bounded_int(raw)
        except ValueError:
            self.data = None
            raise ValueError(f"Enter a whole number, like {self.example}.")


class IntSelectField(SelectField):
    """A choice whose values are whole numbers (usually ids): a value that is not one, or is
    larger than a database column holds, is "Choose one of the options." and data None."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("coerce", bounded_int)
        super().__init__(*args, **kwargs)

    def process_formdata(self, valuelist):
        try:
            super().process_formdata(valuelist)
        except ValueError:
            self.data = None
            raise ValueError("Choose one of the options.")


class DateWithin:
    """A date filter between FILTER_DATE_MIN and FILTER_DATE_MAX (app/config.py)."""

    def __init__(self, low: date = FILTER_DATE_MIN, high: date = FILTER_DATE_MAX):
        self.low, self.high = low, high

    def __call__(self, form, field):
        if field.data is not None and not self.low <= field.data <= self.high:
            raise ValidationError(f"Enter a date from {self.low:%d/%m/%Y} to {self.high:%d/%m/%Y}.")


class InRange:
    """low <= value <= high; says nothing about a value that did not parse (that has its message)."""

    def __init__(self, low: int, high: int, message: str):
        self.low, self.high, self.message = low, high, message

    def __call__(self, form, field):
        if field.data is not None and not self.low <= field.data <= self.high:
            raise ValidationError(self.message)


class Money:
    """An amount in pounds and pence; `optional` lets it be left empty."""

    def __init__(self, optional: bool = False,
                 message: str = "Enter an amount in pounds, like 45 or 45.50."):
        self.optional, self.message = optional, message

    def __call__(self, form, field):
        if self.optional and not field.data:
            return
        if parse_pounds(field.data or "") is None:
            raise ValidationError(self.message)


class PlainText:
    """No control characters (they have no business in a name, a note or a search; PostgreSQL
    cannot store a NUL); `multiline` text may hold tabs and line breaks.

    Every text field of every `Form` has it first (see `Form`): a refused value goes no
    further, not even to the field's own checks, some of which look in the database.
    """

    def __init__(self, multiline: bool = False):
        self.multiline = multiline

    def __call__(self, form, field):
        error = plain_text_error(field.data if isinstance(field.data, str) else "",
                                 multiline=self.multiline)
        if error:
            raise StopValidation(error)


class Form(FlaskForm):
    """The base of every form here: each text field (StringField and its kinds: hidden,
    email, search...) checks `PlainText` before anything else, so a NUL or another control
    character typed or sent in any form or query string is a message beside its field, never
    a value handed to the database. Text areas and passwords may hold tabs and line breaks.
    """

    class Meta(FlaskForm.Meta):
        def bind_field(self, form, unbound_field, options):
            field = super().bind_field(form, unbound_field, options)
            if isinstance(field, StringField):
                multiline = isinstance(field, (TextAreaField, PasswordField))
                field.validators = [PlainText(multiline=multiline), *field.validators]
            return field


class ConfirmForm(Form):
    """A button that changes something: only the CSRF token to check."""

"""Form pieces more than one area uses: tidying typed text, money in pounds, whole numbers
and ranges with messages that say what to type, plain text, and the confirm-button form.

Shapes only: rules that need the database or several fields live in each area's services.
"""

from __future__ import annotations

import re
from typing import Optional

from flask_wtf import FlaskForm
from wtforms import IntegerField
from wtforms.validators import ValidationError

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
    """An integer field (negative allowed) whose parse error says what to type.

    `example` is the number the message suggests ("Enter a whole number, like 5.").
    """

    def __init__(self, *args, example: int = 5, **kwargs):
        super().__init__(*args, **kwargs)
        self.example = example

    def process_formdata(self, valuelist):
        raw = (valuelist[0] if valuelist else "").strip().replace(",", "")
        if not raw:
            self.data = None
            return
        try:
            self.data = int(raw)
        except ValueError:
            self.data = None
            raise ValueError(f"Enter a whole number, like {self.example}.")


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
    """No control characters (they have no business in a name, a note or a search)."""

    def __call__(self, form, field):
        # Imported here: app.accounts (whose routes use this module) owns the rule.
        from .accounts.validators import plain_text_error
        error = plain_text_error(field.data or "")
        if error:
            raise ValidationError(error)


class ConfirmForm(FlaskForm):
    """A button that changes something: only the CSRF token to check."""

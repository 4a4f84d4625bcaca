"""The one rule every typed text obeys: no control characters.

A NUL cannot even be stored by PostgreSQL; a text of several lines may hold tabs and line
breaks. Every form's text fields apply it (app/form_fields.py), and so do the services that
take text from elsewhere; the rules for particular fields are in app/accounts/validators.py
and app/fleet/validators.py.
"""

from __future__ import annotations

import re

NAME_RE = re.compile(r"^[^\x00-\x1f\x7f]+$")
# Text typed in a box of several lines: tab, new line and carriage return are allowed.
MULTILINE_TEXT_RE = re.compile(r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]+$")


def plain_text_error(value: str, multiline: bool = False) -> str | None:
    """No control characters (a NUL cannot even be stored by PostgreSQL); a text of several
    lines may hold tabs and line breaks."""
    if value and not (MULTILINE_TEXT_RE if multiline else NAME_RE).match(value):
        return "Remove the control characters."
    return None

"""What a registration plate and a VIN may look like. Plain functions: a message or None."""

from __future__ import annotations

import re

from ..plain_text import plain_text_error

# UK registrations after normalising (upper case, no spaces or dashes):
#  current (2001-): two letters, two-digit age identifier, three letters: AB12CDE
#  prefix (1983-2001): year letter, 1-3 digits, three letters: A123BCD
#  suffix (1963-1983): three letters, 1-3 digits, year letter: ABC123D
#  dateless (before 1963): 1-3 letters and 1-4 digits, either way round: AB1234, 1234AB
# I and Q are never issued in the current or prefix/suffix series' letter blocks, and Z only
# in dateless and Northern Irish marks, so those letters are refused where DVLA never uses them.
_CURRENT = re.compile(r"^[A-HJ-PR-Y][A-HJ-PR-Y](0[1-9]|[1-9]\d)[A-HJ-PR-Z]{3}$")
_PREFIX = re.compile(r"^[A-HJ-NPR-Y]\d{1,3}[A-HJ-PR-Y]{3}$")
_SUFFIX = re.compile(r"^[A-HJ-PR-Y]{3}\d{1,3}[A-HJ-NPR-Y]$")
_DATELESS = re.compile(r"^([A-Z]{1,3}\d{1,4}|\d{1,4}[A-Z]{1,3})$")
PLATE_FORMATS = (_CURRENT, _PREFIX, _SUFFIX, _DATELESS)

# ISO 3779: 17 characters, digits and capitals except I, O and Q (easily misread as 1 and 0).
VIN_RE = re.compile(r"^[A-HJ-NPR-Z0-9]{17}$")
_SPACES = re.compile(r"[\s\-]+")
# Letters, digits, spaces and the punctuation makes and models really use (Mercedes-Benz,
# Land Rover, "Model 3", "C-Class", "i10", "Ceed Sportswagon", "Citroën ë-C4").
NAME_RE = re.compile(r"^[\w][\w .,&'/+()\-]*$", re.UNICODE)


def normalise_plate(plate: str) -> str:
    return _SPACES.sub("", plate or "").upper()


def format_plate(plate: str) -> str:
    """The way a current-style plate is written: AB12 CDE (others unchanged)."""
    return f"{plate[:4]} {plate[4:]}" if _CURRENT.match(plate) else plate


def plate_error(plate: str) -> str | None:
    compact = normalise_plate(plate)
    if not compact:
        return "Enter the registration plate."
    if len(compact) > 7:
        return "A UK registration has at most 7 characters, like AB12 CDE."
    if not compact.isalnum() or not compact.isascii():
        return "Use only letters and numbers, like AB12 CDE."
    if not any(f.match(compact) for f in PLATE_FORMATS):
        return "That is not a UK registration; enter it like AB12 CDE."
    return None


def normalise_vin(vin: str) -> str:
    return _SPACES.sub("", vin or "").upper()


def vin_error(vin: str) -> str | None:
    compact = normalise_vin(vin)
    if not compact:
        return "Enter the VIN (vehicle identification number)."
    if len(compact) != 17:
        return f"A VIN has 17 characters; this one has {len(compact)}."
    bad = sorted({c for c in compact if c in "IOQ"})
    if bad:
        return (f"A VIN never contains {', '.join(bad)} (letters I, O and Q are not used): "
                "check for the digits 1 and 0.")
    if not VIN_RE.match(compact):
        return "A VIN has only capital letters and digits."
    return None


def name_error(value: str, what: str) -> str | None:
    if not value:
        return f"Enter the {what}."
    if not NAME_RE.match(value):
        return f"Use letters, numbers, spaces and - . & ' / ( ) in the {what}."
    return None


def note_error(value: str, *, max_length: int) -> str | None:
    """Free text over several lines (a maintenance note): no control characters, not too long."""
    control_error = plain_text_error(value or "", multiline=True)
    if control_error:
        return control_error
    if len(value or "") > max_length:
        return f"Keep the note under {max_length} characters."
    return None

"""Rules for what people type in: UK licence numbers, postcodes, phones, passwords.

Plain functions returning an error message (or None), so forms, services and the
fuzzer all share one definition.
"""

from __future__ import annotations

import re
from datetime import date

import phonenumbers
from zxcvbn import zxcvbn

from ..licence import age_on, normalise_licence  # noqa: F401  (the licence's rules)
from ..plain_text import plain_text_error  # noqa: F401  (one of the rules for what people type)

# DVLA driving licence number, 16 characters:
#  1-5 surname (padded with 9), 6 decade of birth year, 7-8 birth month (+50 for women),
#  9-10 day of birth, 11 last digit of birth year, 12-13 initials (padded with 9),
#  14 an arbitrary digit (usually 9), 15-16 check characters.
LICENCE_RE = re.compile(r"^[A-Z9]{5}\d(?:[05][1-9]|[16][0-2])(?:0[1-9]|[12]\d|3[01])\d[A-Z9]{2}\d[A-Z\d]{2}$")
# UK postcode (BS 7666 shape), after normalising to upper case with one space.
POSTCODE_RE = re.compile(r"^(GIR 0AA|[A-Z]{1,2}\d[A-Z\d]? \d[A-Z]{2})$")


def normalise_email(email: str) -> str:
    return email.strip().lower()


def normalise_postcode(postcode: str) -> str:
    compact = re.sub(r"\s+", "", postcode or "").upper()
    return f"{compact[:-3]} {compact[-3:]}" if len(compact) > 3 else compact


def licence_surname_part(full_name: str) -> str:
    """The five surname characters DVLA encodes (MAC is written MC), padded with 9."""
    words = [w for w in re.split(r"\s+", full_name.strip()) if w]
    surname = re.sub(r"[^A-Z]", "", (words[-1] if words else "").upper())
    if surname.startswith("MAC"):
        surname = "MC" + surname[3:]
    return (surname[:5]).ljust(5, "9")


def licence_birth_parts(number: str) -> tuple[int, int, int]:
    """(month, day, two-digit year) of the birth date a licence number encodes."""
    month = int(number[6:8])
    if month > 50:  # women's licences add 50 to the month
        month -= 50
    return month, int(number[8:10]), int(number[5]) * 10 + int(number[10])


def licence_error(number: str, full_name: str | None, date_of_birth: date | None) -> str | None:
    number = normalise_licence(number)
    if len(number) != 16:
        return "A UK driving licence number has 16 characters (see section 5 of your licence)."
    if not LICENCE_RE.match(number):
        return "That is not a valid UK driving licence number; check section 5 of your licence."
    if full_name and number[:5] != licence_surname_part(full_name):
        return "The licence number does not match the surname in your full name."
    if date_of_birth:
        if licence_birth_parts(number) != (
                date_of_birth.month, date_of_birth.day, date_of_birth.year % 100):
            return "The licence number does not match your date of birth."
    return None


def postcode_error(postcode: str) -> str | None:
    if not POSTCODE_RE.match(normalise_postcode(postcode)):
        return "Enter a UK postcode, like SW1A 1AA."
    return None


def normalise_phone(phone: str) -> str | None:
    """E.164 form of a valid phone number (UK by default), or None."""
    try:
        parsed = phonenumbers.parse(phone, "GB")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def password_error(password: str, *, min_length: int, min_score: int,
                   user_inputs: list[str] | tuple[str, ...] = ()) -> str | None:
    if len(password) < min_length:
        return f"Use at least {min_length} characters."
    if len(password) > 128:
        return "Use at most 128 characters."
    result = zxcvbn(password, user_inputs=[u for u in user_inputs if u][:10])
    if result["score"] < min_score:
        feedback = result.get("feedback") or {}
        hint = feedback.get("warning") or " ".join(feedback.get("suggestions") or [])
        return ("That password is too easy to guess." + (f" {hint}" if hint else "")).strip()
    return None

"""Staff two-factor sign-in: TOTP enrolment and checks, recovery codes, password age.

Staff and admins give a second factor after their password: a six-digit code from an
authenticator app (RFC 6238 TOTP, 30-second steps, one step of clock drift either way), or
one of their single-use recovery codes. A code is accepted once: its time step is
remembered, so a code seen over someone's shoulder cannot be replayed. Plain functions over
the session that take `now` and raise `TwoFactorError`; the pages live in
`two_factor_routes.py`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta

import pyotp
import segno


from ..audit import record
from ..extensions import db
from ..models import User
from ..settings import settings
from .services import AccountError, hash_password, verify_password

TOTP_DIGITS = 6
TOTP_STEP_SECONDS = 30
TOTP_DRIFT_STEPS = 1
# Recovery codes: 10 characters from an alphabet without look-alikes (no 0/o, 1/l/i), shown
# as two groups of five. About 50 bits each: guessing one online is hopeless.
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
RECOVERY_LENGTH = 10
_SEPARATORS = re.compile(r"[\s-]+")


class TwoFactorError(AccountError):
    """A refused code or enrolment, with messages keyed by form field."""


def required_for(user: User) -> bool:
    """Staff and admins must give a second factor; customers need not."""
    return user.is_staff


def is_enrolled(user: User) -> bool:
    return bool(user.totp_secret and user.totp_enabled_at)


def password_expired(user: User, *, now: datetime) -> bool:
    """Staff passwords last STAFF_PASSWORD_MAX_AGE_DAYS; customers' do not expire."""
    if not user.is_staff:
        return False
    max_age = timedelta(days=settings().security.staff_password_max_age_days)
    return now - user.password_changed_at > max_age


def _totp(user: User) -> pyotp.TOTP:
    return pyotp.TOTP(user.totp_secret, digits=TOTP_DIGITS, interval=TOTP_STEP_SECONDS,
                      name=user.email, issuer=settings().security.two_factor_issuer)


def begin_enrolment(user: User) -> str:
    """Give the user a new secret to scan, unless one is already waiting. Commits."""
    if is_enrolled(user):
        raise TwoFactorError({"": "Two-factor sign-in is already set up for this account."})
    if not user.totp_secret:
        user.totp_secret = pyotp.random_base32()
        db.session.commit()
    return user.totp_secret


def provisioning_uri(user: User) -> str:
    """The otpauth:// address an authenticator app reads from the QR code."""
    return _totp(user).provisioning_uri()


def qr_svg(data: str, *, title: str) -> str:
    """The QR code for `data` as inline SVG markup, drawn here (no third party sees the secret)."""
    return segno.make(data, error="m").svg_inline(scale=5, border=2, title=title,
                                                  svgclass="qr-code", dark="#000", light="#fff")


def grouped_secret(secret: str) -> str:
    """The secret in groups of four, for typing into an app by hand."""
    return " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))


def _matching_step(user: User, code: str, now: datetime) -> int | None:
    totp = _totp(user)
    current = totp.timecode(now)
    for step in range(current - TOTP_DRIFT_STEPS, current + TOTP_DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _accept_totp(user: User, code: str, now: datetime) -> bool:
    step = _matching_step(user, code, now)
    if step is None:
        return False
    if user.totp_last_step is not None and step <= user.totp_last_step:
        raise TwoFactorError({"code": "That code has already been used. Wait for the next one."})
    user.totp_last_step = step
    return True


def confirm_enrolment(user: User, code: str, *, now: datetime) -> list[str]:
    """Switch two-factor on once the app shows a matching code; return new recovery codes.

    Commits. The codes are shown once and only their hashes are kept.
    """
    if is_enrolled(user):
        raise TwoFactorError({"": "Two-factor sign-in is already set up for this account."})
    if not user.totp_secret:
        raise TwoFactorError({"": "Start again: scan the QR code first."})
    code = _SEPARATORS.sub("", code or "")
    if not (code.isdigit() and len(code) == TOTP_DIGITS) or not _accept_totp(user, code, now):
        raise TwoFactorError({"code": "That code does not match. Check the time on your phone "
                                      "and enter the code your app shows now."})
    user.totp_enabled_at = now
    codes = _replace_recovery_codes(user)
    record(user, "user.two_factor_enrolled", user, {}, {"enrolled_at": now})
    db.session.commit()
    return codes


def verify(user: User, code: str, *, now: datetime) -> str:
    """Check a sign-in code: "totp" or "recovery" for the kind accepted. Commits.

    A recovery code works once and is then struck off.
    """
    if not is_enrolled(user):
        raise TwoFactorError({"": "Two-factor sign-in is not set up for this account yet."})
    compact = _SEPARATORS.sub("", code or "").lower()
    if compact.isdigit() and len(compact) == TOTP_DIGITS:
        if _accept_totp(user, compact, now):
            db.session.commit()
            return "totp"
    elif len(compact) == RECOVERY_LENGTH:
        digest = _hash_recovery(compact)
        remaining = list(user.recovery_code_hashes or [])
        matched = next((h for h in remaining if hmac.compare_digest(h, digest)), None)
        if matched is not None:
            remaining.remove(matched)
            user.recovery_code_hashes = remaining
            record(user, "user.recovery_code_used", user, {},
                   {"recovery_codes_left": len(remaining)})
            db.session.commit()
            return "recovery"
    raise TwoFactorError({"code": "That code is not right. Enter the six digits your app shows "
                                  "now, or one of your recovery codes."})


def _hash_recovery(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def _new_recovery_code() -> str:
    raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_LENGTH))
    return f"{raw[:5]}-{raw[5:]}"


def _replace_recovery_codes(user: User) -> list[str]:
    codes = [_new_recovery_code() for _ in range(settings().security.two_factor_recovery_codes)]
    user.recovery_code_hashes = [_hash_recovery(c.replace("-", "")) for c in codes]
    return codes


def regenerate_recovery_codes(user: User) -> list[str]:
    """New recovery codes; the old ones stop working. Commits."""
    if not is_enrolled(user):
        raise TwoFactorError({"": "Set up two-factor sign-in first."})
    codes = _replace_recovery_codes(user)
    record(user, "user.recovery_codes_replaced", user, {}, {"recovery_codes_left": len(codes)})
    db.session.commit()
    return codes


def reset(user: User, *, by: User) -> None:
    """Switch two-factor off (lost phone); they enrol again at their next sign-in. Commits.

    Their sessions end, so whoever holds the lost phone and a session is thrown out too.
    """
    was_enrolled = is_enrolled(user)
    user.totp_secret = ""
    user.totp_enabled_at = None
    user.totp_last_step = None
    user.recovery_code_hashes = []
    user.end_all_sessions()
    record(by, "user.two_factor_reset", user, {"enrolled": was_enrolled}, {"enrolled": False})
    db.session.commit()


def replace_expired_password(user: User, password: str, *, now: datetime) -> None:
    """Set a new password for a staff member whose password is too old. Commits.

    The caller has already checked the password's strength (form) and both factors.
    """
    if verify_password(user, password):
        raise TwoFactorError({"password": "Choose a new password, not the one you have now."})
    user.password_hash = hash_password(password)
    user.password_changed_at = now
    user.end_all_sessions()
    record(user, "user.password_renewed", user, {}, {"password_changed_at": now})
    db.session.commit()

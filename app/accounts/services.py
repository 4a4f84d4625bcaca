"""Account rules: who may sign up, signing in, profiles, passwords and their reset.

Plain functions over the session; they take what they need (`today`, `now`) and raise
`AccountError` with messages keyed by form field, which routes show beside the field.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..errors import FieldErrors
from ..extensions import db
from ..mail import queue_email
from ..models import CustomerProfile, LicenceStatus, Role, User, utcnow
from ..settings import settings
from . import validators as v

RESET_SALT = "password-reset"


class AccountError(FieldErrors):
    """Refusal with a message per field ("" key: for the whole form)."""


@dataclass(frozen=True)
class ProfileData:
    full_name: str
    date_of_birth: date
    phone: str
    address_line1: str
    address_line2: str
    town: str
    postcode: str
    licence_number: str
    licence_expires_on: date

    @classmethod
    def from_form(cls, form) -> "ProfileData":
        return cls(**{f: getattr(form, f).data or "" for f in cls.__dataclass_fields__})


@lru_cache(maxsize=4)
def _hashing(time_cost: int, memory_kib: int, parallelism: int) -> tuple[PasswordHasher, str]:
    """The argon2 hasher for these costs, and a hash to verify against when the email is
    unknown (so that a miss costs as long as a hit)."""
    hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)
    return hasher, hasher.hash("not-a-real-password-just-for-timing")


def _hasher() -> tuple[PasswordHasher, str]:
    cfg = settings()
    return _hashing(cfg.security.password_hash_time_cost, cfg.security.password_hash_memory_kib,
                    cfg.security.password_hash_parallelism)


def hash_password(password: str) -> str:
    return _hasher()[0].hash(password)


def verify_password(user: User | None, password: str) -> bool:
    hasher, dummy = _hasher()
    try:
        hasher.verify(user.password_hash if user else dummy, password)
    except (VerificationError, InvalidHashError):
        return False
    if user and hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hasher.hash(password)
    return user is not None


def find_user_by_email(email: str) -> User | None:
    email = v.normalise_email(email)
    # No stored address holds a NUL, and PostgreSQL refuses one in a query (a 500, not a miss).
    if "\x00" in email:
        return None
    return db.session.scalar(select(User).where(User.email == email))


def profile_errors(data: ProfileData, *, today: date) -> dict[str, str]:
    """Rules across fields: legal age, licence matches the person, licence in date."""
    errors: dict[str, str] = {}
    min_age = settings().licence.legal_driving_age
    if data.date_of_birth > today:
        errors["date_of_birth"] = "Your date of birth cannot be in the future."
    elif v.age_on(data.date_of_birth, today) < min_age:
        errors["date_of_birth"] = f"You must be at least {min_age} to hire a car."
    elif v.age_on(data.date_of_birth, today) > 120:
        errors["date_of_birth"] = "Check your date of birth."
    licence = v.licence_error(data.licence_number, data.full_name,
                              None if "date_of_birth" in errors else data.date_of_birth)
    if licence:
        errors["licence_number"] = licence
    if data.licence_expires_on < today:
        errors["licence_expires_on"] = "Your licence has expired; we need a valid licence."
    return errors


def _apply_profile(profile: CustomerProfile, data: ProfileData) -> None:
    licence = v.normalise_licence(data.licence_number)
    if profile.licence_number != licence or profile.licence_expires_on != data.licence_expires_on:
        # A different licence has to be checked again.
        profile.licence_status = LicenceStatus.UNCHECKED.value
        profile.licence_checked_at = None
        profile.licence_refusal_reason = ""
    profile.date_of_birth = data.date_of_birth
    profile.phone = v.normalise_phone(data.phone) or data.phone
    profile.address_line1 = data.address_line1
    profile.address_line2 = data.address_line2
    profile.town = data.town
    profile.postcode = v.normalise_postcode(data.postcode)
    profile.licence_number = licence
    profile.licence_expires_on = data.licence_expires_on


def sign_up(*, email: str, password: str, data: ProfileData, today: date) -> User:
    """Create a customer account. Commits."""
    errors = profile_errors(data, today=today)
    email = v.normalise_email(email)
    if find_user_by_email(email) is not None:
        errors["email"] = "An account with this email already exists. Sign in or reset your password."
    if errors:
        raise AccountError(errors)
    user = User(email=email, full_name=data.full_name, password_hash=hash_password(password),
                role=Role.CUSTOMER.value)
    user.profile = CustomerProfile(licence_status=LicenceStatus.UNCHECKED.value,
                                   licence_refusal_reason="", address_line2="")
    _apply_profile(user.profile, data)
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError:  # the same email signed up concurrently
        db.session.rollback()
        raise AccountError({"email": "An account with this email already exists."})
    return user


def update_profile(user: User, data: ProfileData, *, today: date) -> None:
    errors = profile_errors(data, today=today)
    if errors:
        raise AccountError(errors)
    user.full_name = data.full_name
    _apply_profile(user.profile, data)
    db.session.commit()


def authenticate(email: str, password: str, *, now: datetime) -> User:
    """The user for these credentials; one message for every failure (no enumeration)."""
    user = find_user_by_email(email)
    if not verify_password(user, password) or user is None or not user.active:
        raise AccountError({"": "That email and password do not match an active account."})
    user.last_sign_in_at = now
    db.session.commit()
    return user


def change_password(user: User, current: str, new: str, *, now: datetime) -> None:
    """Change the password and end every other session (the caller re-signs this one in)."""
    if not verify_password(user, current):
        raise AccountError({"current_password": "That is not your current password."})
    _set_password(user, new, now)
    db.session.commit()


def _set_password(user: User, password: str, now: datetime) -> None:
    user.password_hash = hash_password(password)
    user.password_changed_at = now
    user.end_all_sessions()


# --- emailed single-use links (password reset here; staff invitations in app/admin) ----------

@dataclass(frozen=True)
class LinkRefusals:
    """What to tell someone whose link cannot be used, by reason."""
    expired: str
    invalid: str
    used: str


def _link_serializer(salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=salt)


def make_link_token(user: User, *, salt: str) -> str:
    """A signed token for an emailed link, bound to the user's session token.

    Using the link rotates that token (as does any password change or "sign out
    everywhere"), so the link works once, and a newer link makes older ones stop working.
    The link carries a digest of the token, never the token itself (the payload is signed,
    not encrypted: anyone holding the email could read it).
    """
    return _link_serializer(salt).dumps({"uid": user.id, "st": _session_digest(user)})


def _session_digest(user: User) -> str:
    return hashlib.sha256(f"link:{user.session_token}".encode()).hexdigest()


def user_for_link_token(token: str, *, salt: str, max_age: int, refusals: LinkRefusals) -> User:
    """The active user a link token names, or AccountError saying why it cannot be used."""
    try:
        payload: dict[str, Any] = _link_serializer(salt).loads(token, max_age=max_age)
    except SignatureExpired:
        raise AccountError({"": refusals.expired})
    except BadSignature:
        raise AccountError({"": refusals.invalid})
    user = db.session.get(User, payload.get("uid"))
    if user is None or not user.active or not hmac.compare_digest(_session_digest(user),
                                                                   str(payload.get("st", ""))):
        raise AccountError({"": refusals.used})
    return user


def public_url(path: str) -> str:
    """An absolute address on the portal, for links in emails."""
    return f"{current_app.config['PUBLIC_BASE_URL'].rstrip('/')}{path}"


RESET_REFUSALS = LinkRefusals(
    expired="That reset link has expired. Ask for a new one.",
    invalid="That reset link is not valid. Ask for a new one.",
    used="That reset link has already been used. Ask for a new one.")


def make_reset_token(user: User) -> str:
    return make_link_token(user, salt=RESET_SALT)


def request_password_reset(email: str) -> None:
    """Email a reset link if the account exists; answer the same either way. Commits."""
    user = find_user_by_email(email)
    if user is None or not user.active:
        return
    token = make_reset_token(user)
    link = public_url(f"/account/reset/{token}")
    minutes = settings().security.password_reset_max_age_seconds // 60
    queue_email(key=f"user:{user.id}:reset:{token[-16:]}", to=user.email,
                subject="Reset your ACME Rentals password",
                template="accounts/emails/password_reset.txt", user=user, minutes=minutes, link=link)


def user_for_reset_token(token: str) -> User:
    return user_for_link_token(token, salt=RESET_SALT, refusals=RESET_REFUSALS,
                               max_age=settings().security.password_reset_max_age_seconds)


def reset_password(token: str, password: str, *, now: datetime) -> User:
    user = user_for_reset_token(token)
    _set_password(user, password, now)
    db.session.commit()
    return user


def local_today() -> date:
    """Today where the business is (dates of birth and expiry are local dates)."""
    return datetime.now(ZoneInfo(current_app.config["DEFAULT_TIMEZONE"])).date()

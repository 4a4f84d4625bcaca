"""People: accounts with a role, and customers' profiles with their licence."""

from __future__ import annotations

import enum
import hashlib
import secrets
from datetime import date, datetime
from typing import TYPE_CHECKING, Optional

from flask_login import UserMixin
from sqlalchemy import JSON, CheckConstraint, Date, ForeignKey, String, delete
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .types import UTCDateTime, utcnow

if TYPE_CHECKING:
    from .fleet import Branch


class Role(str, enum.Enum):
    CUSTOMER = "customer"
    STAFF = "staff"
    ADMIN = "admin"


class LicenceStatus(str, enum.Enum):
    UNCHECKED = "unchecked"
    PENDING = "pending"
    VERIFIED = "verified"
    REFUSED = "refused"


ROLE_VALUES = tuple(r.value for r in Role)
LICENCE_STATUS_VALUES = tuple(s.value for s in LicenceStatus)


def new_session_token() -> str:
    return secrets.token_urlsafe(24)


class User(UserMixin, db.Model):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint(f"role IN {ROLE_VALUES!r}", name="role_known"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stored lower-cased, so the unique constraint is case-insensitive.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    full_name: Mapped[str] = mapped_column(String(120))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=Role.CUSTOMER.value)
    active: Mapped[bool] = mapped_column(default=True)
    # Emailed links (password reset, invitation) are bound to it: rotating it, as every
    # "end all sessions" does, makes the links already sent stop working.
    session_token: Mapped[str] = mapped_column(String(64), default=new_session_token)
    branch_id: Mapped[Optional[int]] = mapped_column(ForeignKey("branches.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_sign_in_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    # Staff two-factor (app/accounts/twofactor.py): base32 TOTP secret, set while enrolling and
    # in use once totp_enabled_at is set; the last accepted time step refuses a replayed code.
    totp_secret: Mapped[str] = mapped_column(String(32), default="")
    totp_enabled_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    totp_last_step: Mapped[Optional[int]]
    # SHA-256 of each unused recovery code (codes are random, so a fast hash is enough).
    recovery_code_hashes: Mapped[list] = mapped_column(JSON, default=list)
    # Staff invited by an admin: pending until they set a password through the emailed link.
    invited_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    invite_accepted_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    # UK GDPR (issue 18): the customer asked for their account to be deleted; what the law
    # lets us keep (name and address for invoices) stays, the rest is gone (app/privacy).
    erased_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())

    profile: Mapped[Optional["CustomerProfile"]] = relationship(
        back_populates="user", uselist=False, cascade="all, delete-orphan"
    )
    branch: Mapped[Optional["Branch"]] = relationship()

    # The key of the signed-in session (one device's sign-in) this object was loaded for or
    # signed in with; not stored: only its hash is, in user_sessions.
    _session_key = None

    # Flask-Login keeps this in the session and remember-me cookies: "<user id>:<session key>".
    def get_id(self) -> str:
        if not self._session_key:
            raise RuntimeError("no signed-in session: start one (accounts.sessions.begin)")
        return f"{self.id}:{self._session_key}"

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users
        return self.active

    @property
    def is_staff(self) -> bool:
        return self.role in (Role.STAFF.value, Role.ADMIN.value)

    @property
    def is_erased(self) -> bool:
        return self.erased_at is not None

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN.value

    def end_all_sessions(self) -> None:
        """Every device signed out, every emailed link void."""
        self.session_token = new_session_token()
        db.session.execute(delete(UserSession).where(UserSession.user_id == self.id))

    def __repr__(self) -> str:
        return f"<User {self.id} {self.role}>"


def session_key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class UserSession(db.Model):
    """One device's sign-in: its cookie carries the key, the database only its hash. Signing
    out deletes the row, so every copy of that cookie stops working; other devices stay."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CustomerProfile(db.Model):
    __tablename__ = "customer_profiles"
    __table_args__ = (
        CheckConstraint(f"licence_status IN {LICENCE_STATUS_VALUES!r}", name="licence_status_known"),
    )

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    date_of_birth: Mapped[date] = mapped_column(Date)
    phone: Mapped[str] = mapped_column(String(20))  # E.164
    address_line1: Mapped[str] = mapped_column(String(100))
    address_line2: Mapped[str] = mapped_column(String(100), default="")
    town: Mapped[str] = mapped_column(String(60))
    postcode: Mapped[str] = mapped_column(String(8))
    licence_number: Mapped[str] = mapped_column(String(16))
    licence_expires_on: Mapped[date] = mapped_column(Date)
    licence_status: Mapped[str] = mapped_column(String(16), default=LicenceStatus.UNCHECKED.value)
    licence_checked_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    licence_refusal_reason: Mapped[str] = mapped_column(String(200), default="")

    user: Mapped[User] = relationship(back_populates="profile")

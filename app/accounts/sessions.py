"""Signed-in sessions, one per device: what signing in, signing out and Flask-Login's loader
do with them.

A sign-in makes a random key; the session (and "remember me") cookie carries
"<user id>:<key>", the database only the key's hash (`UserSession`). Signing out deletes that
row: the cookie, and every copy of it, stops working at once, while the person's other devices
stay signed in. "Sign out everywhere", a password change or reset and a deactivation delete
every row of the account (`User.end_all_sessions`).
"""

from __future__ import annotations

import secrets
from functools import lru_cache


from flask_login import login_user, logout_user
from sqlalchemy import bindparam, delete, select
from sqlalchemy.orm import joinedload

from .. import refdata
from ..extensions import db
from ..models import User, UserSession, session_key_hash, utcnow
from ..settings import settings


def start(user: User) -> str:
    """A new session for `user` (committed); the key goes into the cookie via `user.get_id()`.

    Beyond USER_SESSIONS_MAX sessions the oldest end: a person who never signs out does not
    pile up rows."""
    key = secrets.token_urlsafe(32)
    db.session.add(UserSession(user_id=user.id, key_hash=session_key_hash(key), created_at=utcnow()))
    db.session.flush()
    keep = settings().security.user_sessions_max
    newest = select(UserSession.id).where(UserSession.user_id == user.id) \
        .order_by(UserSession.id.desc()).limit(keep)
    db.session.execute(delete(UserSession).where(UserSession.user_id == user.id,
                                                 UserSession.id.not_in(newest.scalar_subquery())))
    db.session.commit()
    user._session_key = key
    return key


def begin(user: User, *, remember: bool = False) -> None:
    """Sign `user` in on this device (the request's browser)."""
    start(user)
    login_user(user, remember=remember)


def end_this(user: User) -> None:
    """Sign out on this device only: this session's cookie and its copies stop working."""
    if user._session_key:
        db.session.execute(delete(UserSession).where(
            UserSession.key_hash == session_key_hash(user._session_key)))
        db.session.commit()
    logout_user()


def end_all(user: User) -> None:
    """Sign out on every device (and void emailed links)."""
    user.end_all_sessions()
    db.session.commit()
    logout_user()


@lru_cache(maxsize=1)
def _load_statement():
    """The loader's statement, built once: every request runs it, and building it (and its
    cache key, with the joined profile) anew cost more than running it (issue 19)."""
    return (select(User, refdata.version_column()).join(UserSession, UserSession.user_id == User.id)
            .options(joinedload(User.profile))
            .where(User.id == bindparam("user_id"), UserSession.key_hash == bindparam("key_hash")))


def load(session_id: str) -> User | None:
    """Flask-Login's loader: "<user id>:<key>" of a session that still exists, of an active user.

    One round trip: the user, their profile (a customer's pages price for their age) and the
    reference data's version (app/refdata.py), which the request's pages then need not ask for.
    """
    user_id, _, key = session_id.partition(":")
    if not user_id.isdigit() or not key or not key.isprintable() or len(key) > 128:
        return None
    row = db.session.execute(_load_statement(), {"user_id": int(user_id),
                                                 "key_hash": session_key_hash(key)}).first()
    user = row[0] if row is not None else None
    if row is not None:
        refdata.saw_version(row[1])
    if user is None or not user.active:
        return None
    user._session_key = key
    return user

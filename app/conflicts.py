"""Write conflicts that are expected, redone on a fresh read instead of failing.

Hires and payments carry a version (SQLAlchemy's version_id_col): an UPDATE based on a stale
read matches no row and raises StaleDataError rather than undoing another writer's change.
When a job and a request touch the same row at once that is expected, not an error: the
loser rolls back and runs again on what the winner committed. Only functions that re-read
what they change (and are safe to run twice) may be wrapped.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

from flask import current_app
from sqlalchemy.orm.exc import StaleDataError

from .extensions import db
from .logging_setup import log

F = TypeVar("F", bound=Callable[..., Any])


def retry_on_conflict(fn: F) -> F:
    """Run `fn` again (up to DB_CONFLICT_RETRIES times) when another writer changed its row first."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        retries = current_app.config["DB_CONFLICT_RETRIES"]
        for attempt in range(retries + 1):
            try:
                return fn(*args, **kwargs)
            except StaleDataError:
                db.session.rollback()
                if attempt == retries:
                    raise
                log().info("write conflict: done again on a fresh read",
                           what=getattr(fn, "__name__", str(fn)), attempt=attempt + 1)
        raise AssertionError("unreachable")

    return wrapper  # type: ignore[return-value]

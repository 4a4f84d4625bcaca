"""Who may see a hire, and a hire found by its reference: one function each, used everywhere.

- `hire_by_reference(reference)`   the hire with that reference, or None. A reference is
  read the way people type it (any case, spaces around it); anything that cannot be a
  reference (not ASCII letters and digits) is None without a query, so a NUL or a
  thousand characters never reach the database.
- `hire_visible_to(reference, user)` the same hire if `user` may see it: its own customer,
  or any staff member or admin. Anyone else (another customer, nobody signed in) gets None,
  exactly as for a hire that does not exist, so that a route answers 404 and other people's
  bookings are not revealed, not even by a 403.

Which pages a role may open at all is the route's declaration (app/security.py); this
module answers the question for one hire. A shared service: areas import it, it imports
only the models.
"""

from __future__ import annotations

from typing import Any, Optional

from sqlalchemy import select

from .extensions import db
from .models import Hire


def _canonical(reference: str) -> Optional[str]:
    reference = reference.strip().upper()
    if not reference or not (reference.isascii() and reference.isalnum()):
        return None  # no reference looks like that (and PostgreSQL refuses a NUL in a query)
    return reference


def hire_by_reference(reference: str) -> Optional[Hire]:
    """The hire with this reference (whoever asks), or None."""
    canonical = _canonical(reference)
    if canonical is None:
        return None
    return db.session.scalar(select(Hire).where(Hire.reference == canonical))


def may_see(hire: Hire, user: Any) -> bool:
    """Its own customer, and staff and admins, may see a hire; nobody else."""
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    return bool(user.is_staff) or hire.customer_id == user.id


def hire_visible_to(reference: str, user: Any) -> Optional[Hire]:
    """The hire with this reference if `user` may see it, else None (answer 404, never 403)."""
    hire = hire_by_reference(reference)
    if hire is None or not may_see(hire, user):
        return None
    return hire

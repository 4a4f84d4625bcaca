"""Old import path, kept only for `app/payments` (`from ..booking.services import confirm_hire`).

Booking's rules now live in modules named for what they do (see `app/booking/__init__.py`).
The payments area is being restructured separately and is not edited here; once its imports
follow `app.booking.holds`, this module can go.
"""

from .holds import confirm_hire

__all__ = ["confirm_hire"]

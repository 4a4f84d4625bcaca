"""Availability search, quotes, hire creation, the customer's bookings."""

from flask import Blueprint, current_app

bp = Blueprint("booking", __name__)


@bp.before_app_request
def _start_dev_ticker() -> None:
    """Development: expire holds and send reminders from the in-process job pool."""
    from ..jobs.booking import start_dev_ticker
    start_dev_ticker(current_app._get_current_object())  # type: ignore[attr-defined]


from . import routes  # noqa: E402,F401

"""Availability search, quotes, hire creation, the customer's bookings."""

from flask import Blueprint

bp = Blueprint("booking", __name__)

from . import routes  # noqa: E402,F401

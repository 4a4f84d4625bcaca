"""Sign up, sign in and out, profile, password change and reset."""

from flask import Blueprint

bp = Blueprint("accounts", __name__)

from . import routes, twofactor_routes  # noqa: E402,F401

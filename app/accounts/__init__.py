"""Sign up, sign in and out, profile, password change and reset; the customer's licence page
(its checks and rules are the licence package, app/licence)."""

from flask import Blueprint

bp = Blueprint("accounts", __name__)

from . import routes, twofactor_routes  # noqa: E402,F401

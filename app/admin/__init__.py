"""Staff accounts, prices, reports. Admins only."""

from flask import Blueprint

from ..security import guard_blueprint

bp = Blueprint("admin", __name__)
guard_blueprint(bp, "admin")

from . import routes  # noqa: E402,F401

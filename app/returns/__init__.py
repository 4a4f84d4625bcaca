"""The counter: pickups and returns. Staff and admins only."""

from flask import Blueprint

from ..security import guard_blueprint

bp = Blueprint("returns", __name__)
guard_blueprint(bp, "staff", "admin")

from . import licence_routes, routes  # noqa: E402,F401

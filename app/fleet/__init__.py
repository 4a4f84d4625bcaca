"""Cars, classes, branches and maintenance. Staff and admins only."""

from flask import Blueprint

from ..security import guard_blueprint

bp = Blueprint("fleet", __name__)
guard_blueprint(bp, "staff", "admin")

from . import routes  # noqa: E402,F401

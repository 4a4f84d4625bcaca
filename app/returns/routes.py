from flask import render_template

from . import bp


@bp.get("/")
def board():
    """The counter board (filled in by the counter issue)."""
    return render_template("staff/home.html", area="Counter")

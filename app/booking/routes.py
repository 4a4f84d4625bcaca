from flask import render_template

from ..security import allow
from . import bp


@bp.get("/")
@allow("public")
def search():
    """Placeholder home of the booking area until the booking issue lands."""
    return render_template("booking/search.html")

from flask import render_template
from sqlalchemy import select

from ..extensions import db
from ..models import User
from . import bp


@bp.get("/")
def home():
    """Admin home: the people with access to the staff area."""
    staff = db.session.scalars(
        select(User).where(User.role.in_(("staff", "admin"))).order_by(User.full_name)).all()
    return render_template("admin/home.html", staff=staff)

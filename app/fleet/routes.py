from flask import render_template
from sqlalchemy import select

from ..extensions import db
from ..models import Car
from . import bp


@bp.get("/")
def cars():
    """The fleet list."""
    fleet = db.session.scalars(select(Car).order_by(Car.plate)).all()
    return render_template("fleet/cars.html", cars=fleet)

from flask import abort, current_app, jsonify, render_template
from sqlalchemy import select, text

from ..extensions import db, limiter
from ..models import OutboundEmail
from ..security import allow
from . import bp


@bp.get("/")
@allow("public")
def home():
    return render_template("main/home.html")


@bp.get("/healthz")
@allow("public")
@limiter.exempt
def healthz():
    """App, database and (when configured) Redis; 503 when any is down."""
    checks: dict[str, str] = {"app": "ok"}
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any failure means "down", whatever the driver raised
        db.session.rollback()
        checks["database"] = f"down: {type(exc).__name__}"
    if current_app.config["REDIS_URL"]:
        from ..jobs import redis_connection
        try:
            redis_connection().ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"down: {type(exc).__name__}"
    healthy = all(v == "ok" for v in checks.values())
    return jsonify(status="ok" if healthy else "degraded", checks=checks), 200 if healthy else 503


@bp.get("/dev/outbox")
@allow("public")
def outbox():
    """Development only: the emails the portal would have sent."""
    if current_app.config["ENV_NAME"] != "development" or current_app.config["MAIL_BACKEND"] != "outbox":
        abort(404)
    emails = db.session.scalars(select(OutboundEmail).order_by(OutboundEmail.id.desc()).limit(50)).all()
    return render_template("main/outbox.html", emails=emails)

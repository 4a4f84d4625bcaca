from io import BytesIO
from pathlib import Path

from flask import abort, current_app, jsonify, render_template, send_file
from sqlalchemy import select, text
from werkzeug.datastructures import MultiDict

from ..booking.forms import TripForm
from ..booking.storefront import branch_hours, car_classes_on_offer, default_search_args, included_terms
from ..extensions import db, limiter
from ..models import Branch, OutboundEmail, utcnow
from ..security import allow
from . import bp


@bp.get("/")
@allow("public")
def home():
    """The storefront: the search itself (where and when, in the branch's time), the car
    classes with their "from" prices, what every hire includes, and the branches."""
    branches = list(db.session.scalars(select(Branch).order_by(Branch.name)))
    defaults = default_search_args(branches, utcnow())
    form = TripForm(formdata=MultiDict(defaults))
    form.set_branches(branches)
    offers = car_classes_on_offer()
    return render_template("main/home.html", form=form, offers=offers, terms=included_terms(offers),
                           branches=[(b, branch_hours(b)) for b in branches],
                           search_defaults=defaults)


@bp.get("/favicon.ico")
@allow("public")
@limiter.exempt
def favicon():
    """Browsers ask for /favicon.ico by themselves; pages name the SVG icon too. (Read whole:
    5 KB, and no file is left open for the server to close.)"""
    data = (Path(current_app.static_folder or "") / "favicon.ico").read_bytes()
    response = current_app.response_class(data, mimetype="image/vnd.microsoft.icon")
    response.cache_control.public = True
    response.cache_control.max_age = current_app.config["FAVICON_CACHE_SECONDS"]
    return response


@bp.get("/accessibility")
@allow("public")
def accessibility():
    """The accessibility statement: what is tested, how, and how to report a problem."""
    cfg = current_app.config
    return render_template("main/accessibility.html", contact=cfg["ACCESSIBILITY_CONTACT_EMAIL"],
                           reply_days=cfg["ACCESSIBILITY_REPLY_WORKING_DAYS"],
                           reviewed_on=cfg["ACCESSIBILITY_REVIEWED_ON"])


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
        from ..queueing import redis_connection
        try:
            redis_connection().ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"down: {type(exc).__name__}"
    healthy = all(v == "ok" for v in checks.values())
    return jsonify(status="ok" if healthy else "degraded", checks=checks), 200 if healthy else 503


def _outbox_or_404() -> None:
    """The outbox exists only in development with the outbox mail backend (else 404)."""
    if current_app.config["ENV_NAME"] != "development" or current_app.config["MAIL_BACKEND"] != "outbox":
        abort(404)


@bp.get("/dev/outbox")
@allow("public")
def outbox():
    """Development only: the emails the portal would have sent, with their attachments."""
    _outbox_or_404()
    emails = db.session.scalars(select(OutboundEmail).order_by(OutboundEmail.id.desc()).limit(50)).all()
    return render_template("main/outbox.html", emails=emails)


@bp.get("/dev/outbox/<int:email_id>/<filename>")
@allow("public")
def outbox_attachment(email_id: int, filename: str):
    """Development only: download one attachment of an email in the outbox."""
    _outbox_or_404()
    email = db.session.get(OutboundEmail, email_id)
    found = next((a for a in (email.attachments if email else []) if a.filename == filename), None)
    if found is None:
        abort(404)
    return send_file(BytesIO(found.data), mimetype=found.mimetype, as_attachment=True,
                     download_name=found.filename)

"""The customer's own data (/account/data) and the admins' retention list. Thin."""

from __future__ import annotations

from flask import abort, current_app, flash, send_file, url_for
from flask_login import current_user, logout_user

from ..accounts.services import verify_password
from ..extensions import db
from ..models import DataExport, utcnow
from ..security import allow
from ..web import add_errors, render, see_other
from . import bp, exports
from .erasure import ErasureRefused, erase_account, erasure_blockers
from .forms import DeleteAccountForm, ExportForm
from .retention import due_for_deletion


def _page(status: int = 200, *, delete_form=None):
    user = current_user
    return render("privacy/data.html", "privacy/partials/_export.html", status, user=user,
                  export=exports.latest_export(user), now=utcnow(), export_form=ExportForm(formdata=None),
                  delete_form=delete_form or DeleteAccountForm(formdata=None),
                  blockers=erasure_blockers(user), hours=current_app.config["DATA_EXPORT_HOURS"],
                  poll_seconds=current_app.config["DATA_EXPORT_POLL_SECONDS"])


@bp.get("/account/data")
@allow("customer")
def my_data():
    """Download my data, delete my account; the export's status polls itself while it is built."""
    return _page()


@bp.post("/account/data/export")
@allow("customer")
def request_export():
    """Start building the ZIP (a job); the page shows it as being prepared."""
    form = ExportForm()
    if not form.validate_on_submit():
        return _page(400)
    exports.request_export(current_user, now=utcnow())
    flash("We are preparing your data; it takes a few seconds.", "info")
    return see_other(url_for("privacy.my_data"))


@bp.get("/account/data/export/<int:export_id>")
@allow("customer")
def download_export(export_id: int):
    """The ZIP, to its owner only, while it is kept (410 once expired)."""
    export = db.session.get(DataExport, export_id)
    if export is None or export.user_id != current_user.id:
        abort(404)
    if not export.available(utcnow()):
        abort(410, description="This download has expired. Prepare a new one from your data page.")
    path = exports.export_path(export)
    if path is None or not path.is_file():
        abort(410, description="This download is no longer available. Prepare a new one.")
    response = send_file(path, mimetype="application/zip", as_attachment=True,
                         download_name=f"acme-my-data-{export.ready_at:%Y%m%d}.zip")
    response.cache_control.private = True
    response.cache_control.no_store = True
    return response


@bp.post("/account/data/delete")
@allow("customer")
def delete_account():
    """Erase the account after the password is given again; refused (409) while anything is open."""
    form = DeleteAccountForm()
    if not form.validate_on_submit():
        return _page(422, delete_form=form)
    if not verify_password(current_user, form.password.data or ""):
        add_errors(form, {"password": "That is not your password."})
        return _page(422, delete_form=form)
    try:
        erase_account(current_user._get_current_object(), now=utcnow())
    except ErasureRefused:
        return _page(409, delete_form=form)
    logout_user()
    flash("Your account is deleted. We keep only what the law requires for our accounts "
          "(your name and address on invoices).", "info")
    return see_other(url_for("main.home"))


@bp.get("/admin/privacy/retention")
@allow("admin")
def retention():
    """Admins: whose licence data is due for deletion now or within RETENTION_LOOKAHEAD_DAYS."""
    now = utcnow()
    days = current_app.config["RETENTION_LOOKAHEAD_DAYS"]
    return render("privacy/retention.html", "privacy/retention.html", due=due_for_deletion(now, within_days=days),
                  now=now, days=days, keep_days=current_app.config["PERSONAL_DATA_RETENTION_DAYS"],
                  never_hired_days=current_app.config["NEVER_HIRED_RETENTION_DAYS"])

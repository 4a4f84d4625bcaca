"""The counter's licence re-check for a hire (issue 3). Staff and admins, by the blueprint's guard.

The pickup page (step 1) shows the same status fragment and re-check form: POST starts a
re-check (a job asks the service), GET shows the hire's latest check with its time, polling
while it runs. A final answer fetched by htmx carries the `licence-checked` event, so the
pickup page refreshes its steps and hand-over (which depend on the answer) in place.
"""

from __future__ import annotations

from flask import abort, make_response, render_template, url_for
from flask_login import current_user

from .. import licence
from ..accounts.forms import LicenceRecheckForm
from ..hire_access import hire_visible_to
from ..models import Hire, utcnow
from ..web import add_errors, form_status, render, see_other, wants_fragment
from . import bp


def _hire(reference: str) -> Hire:
    """The hire staff asked for (staff and admins may see every hire), or 404."""
    hire = hire_visible_to(reference, current_user)
    if hire is None:
        abort(404)
    return hire


LICENCE_CHECKED_EVENT = "licence-checked"


def licence_context(hire: Hire, form: LicenceRecheckForm | None = None) -> dict:
    """What the status fragment and the re-check form need (a fresh form unless given)."""
    return {"hire": hire, "licence_view": licence.status_for_hire(hire, now=utcnow()),
            "recheck_form": form if form is not None else LicenceRecheckForm(formdata=None),
            "poll_url": url_for("counter.licence_check_status", reference=hire.reference)}


@bp.get("/hires/<reference>/licence-check")
def licence_check_status(reference: str):
    """The hire's latest licence check, with when and by whom (the fragment alone for htmx)."""
    hire = _hire(reference)
    context = licence_context(hire)
    body, status = render("accounts/licence_counter.html", "accounts/partials/_licence_status.html",
                          **context)
    response = make_response(body, status)
    if wants_fragment() and context["licence_view"].is_final:
        response.headers["HX-Trigger"] = LICENCE_CHECKED_EVENT
    return response


@bp.post("/hires/<reference>/licence-check")
def licence_recheck(reference: str):
    """Check the hirer's licence again now (with a fresh check code, or the last one shared)."""
    hire = _hire(reference)
    form = LicenceRecheckForm()
    if form.validate_on_submit():
        try:
            licence.recheck_for_hire(hire, current_user, utcnow(), check_code=form.check_code.data or None)
        except licence.LicenceError as exc:
            add_errors(form, exc.errors)
        else:
            if not wants_fragment():
                return see_other(url_for("counter.licence_check_status", reference=hire.reference))
            response = make_response(render_template(
                "accounts/partials/_licence_recheck_form.html", hire=hire,
                recheck_form=LicenceRecheckForm(formdata=None)))
            response.headers["HX-Trigger"] = "licence-check-started"
            return response
    return render("accounts/licence_counter.html", "accounts/partials/_licence_recheck_form.html",
                  form_status(form), **licence_context(hire, form))

"""The offline counter's addresses (issue 20). Staff and admins only (the blueprint's guard).

- `/counter/offline`: the page the service worker shows for any counter page while the
  tablet is offline; static/js/offline-counter.js fills it from what was synced.
- `/counter/offline/sync`: JSON, today's and tomorrow's hires and the charge rules, with a
  fresh CSRF token for sending the queue.
- `/counter/offline/steps`: JSON in and out, the queued steps (CSRF token in `X-CSRFToken`).
"""

from __future__ import annotations

from flask import jsonify, render_template, request
from flask_login import current_user
from flask_wtf.csrf import generate_csrf

from ..models import utcnow
from . import bp, offline


@bp.get("/offline")
def offline_page():
    """The shell of the counter for when the tablet has no connection."""
    return render_template("counter/offline.html")


@bp.get("/offline/sync")
def offline_sync():
    """What the tablet keeps for working offline: its branch's hires and the charge rules."""
    payload = offline.sync_payload(branch_id=current_user.branch_id, now=utcnow())
    # Whose copy this is: the tablet shows and sends only the signed-in person's queued steps.
    response = jsonify(csrf_token=generate_csrf(), staff_id=current_user.id, **payload)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/offline/steps")
def offline_steps():
    """Apply the steps done offline, in order; one answer per step (`offline.apply_steps`)."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return jsonify(error="Please check your input", message="Send the steps as JSON: {\"steps\": [...]}.",
                       status=400), 400
    try:
        results = offline.apply_steps(body.get("steps"), by=current_user, now=utcnow())
    except offline.BatchError as exc:
        return jsonify(error="Please check your input", message=str(exc), status=422), 422
    return jsonify(results=results)

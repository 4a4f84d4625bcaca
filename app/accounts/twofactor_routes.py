"""Pages for the second factor, staff password renewal and accepting a staff invitation.

After a staff member's password is accepted, `hand_off` remembers in the (signed) session
who is half signed in, for TWO_FACTOR_PENDING_MAX_AGE_SECONDS; only a correct code (or, on
first sign-in, a completed enrolment) calls `sessions.begin`. Too many wrong codes throw the
half sign-in away, so the password must be given again.
"""

from __future__ import annotations

from typing import Optional

from flask import flash, redirect, render_template, request, session, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from ..extensions import db, limiter
from ..form_fields import ConfirmForm
from ..models import User, utcnow
from ..security import allow
from ..settings import settings
from ..web import add_errors, form_status, safe_path, see_other
from . import bp, invites, sessions, twofactor
from .services import AccountError
from .twofactor_forms import AcceptInviteForm, NewPasswordForm, TwoFactorCodeForm

PENDING = "two_factor_pending"
# Pages a staff member with an expired password may still use.
EXPIRED_PASSWORD_ALLOWED = frozenset({"accounts.change_password", "accounts.sign_out", "static",
                                      "main.healthz"})


def hand_off(user: User, *, remember: bool, next_url: str) -> Response:
    """The password was right: ask for the second factor (or its enrolment) before signing in."""
    session[PENDING] = {"uid": user.id, "st": user.session_token, "since": utcnow().timestamp(),
                        "remember": bool(remember), "next": next_url, "fails": 0,
                        "verified": False}
    target = "accounts.two_factor" if twofactor.is_enrolled(user) else "accounts.two_factor_enrol"
    return see_other(url_for(target))


def _pending() -> tuple[Optional[dict], Optional[User]]:
    """The half-signed-in state and its user, if still valid."""
    state = session.get(PENDING)
    if not isinstance(state, dict):
        return None, None
    age = utcnow().timestamp() - float(state.get("since", 0))
    user = db.session.get(User, state.get("uid")) if isinstance(state.get("uid"), int) else None
    if (not 0 <= age <= settings().security.two_factor_pending_max_age_seconds
            or user is None or not user.active or user.session_token != state.get("st")):
        session.pop(PENDING, None)
        return None, None
    return state, user


def _start_again() -> tuple[str, int]:
    return render_template("accounts/two_factor_expired.html"), 200


def _finish(state: dict, user: User) -> Response:
    """Both factors given: renew an expired password first, else sign in."""
    if twofactor.password_expired(user, now=utcnow()):
        state["verified"] = True
        session[PENDING] = state
        return see_other(url_for("accounts.two_factor_new_password"))
    session.pop(PENDING, None)
    sessions.begin(user, remember=bool(state.get("remember")))
    return see_other(safe_path(state.get("next", ""), url_for("main.home")))


def _continue_url(state: dict, user: User) -> str:
    if twofactor.password_expired(user, now=utcnow()):
        return url_for("accounts.two_factor_new_password")
    return safe_path(state.get("next", ""), url_for("main.home"))


@bp.route("/two-factor", methods=["GET", "POST"])
@allow("public")
@limiter.limit(lambda: settings().security.two_factor_rate_limit, methods=["POST"])
def two_factor():
    """Second step of a staff sign-in: a code from the authenticator app or a recovery code."""
    state, user = _pending()
    if user is None:
        return _start_again()
    if not twofactor.is_enrolled(user):
        return redirect(url_for("accounts.two_factor_enrol"))
    if state.get("verified"):
        return redirect(url_for("accounts.two_factor_new_password"))
    form = TwoFactorCodeForm()
    if form.validate_on_submit():
        try:
            kind = twofactor.verify(user, form.code.data, now=utcnow())
        except twofactor.TwoFactorError as exc:
            state["fails"] = int(state.get("fails", 0)) + 1
            if state["fails"] >= settings().security.two_factor_max_attempts:
                session.pop(PENDING, None)
                flash("Too many wrong codes. Sign in again with your password.", "error")
                return see_other(url_for("accounts.sign_in"))
            session[PENDING] = state
            add_errors(form, exc.errors)
        else:
            if kind == "recovery":
                left = len(user.recovery_code_hashes or [])
                flash(f"You used a recovery code; {left} left. Make new ones from your "
                      f"two-factor page if you are running low.", "info")
            return _finish(state, user)
    return render_template("accounts/two_factor.html", form=form), form_status(form)


@bp.route("/two-factor/set-up", methods=["GET", "POST"])
@allow("public")
@limiter.limit(lambda: settings().security.two_factor_rate_limit, methods=["POST"])
def two_factor_enrol():
    """First staff sign-in: scan the QR code, confirm with a code, keep the recovery codes."""
    state, user = _pending()
    if user is None:
        return _start_again()
    if twofactor.is_enrolled(user):
        return redirect(url_for("accounts.two_factor"))
    secret = twofactor.begin_enrolment(user)
    form = TwoFactorCodeForm()
    if form.validate_on_submit():
        try:
            codes = twofactor.confirm_enrolment(user, form.code.data, now=utcnow())
        except twofactor.TwoFactorError as exc:
            add_errors(form, exc.errors)
        else:
            next_url = _continue_url(state, user)
            if twofactor.password_expired(user, now=utcnow()):
                state["verified"] = True
                session[PENDING] = state
            else:
                session.pop(PENDING, None)
                sessions.begin(user, remember=bool(state.get("remember")))
            # Shown once, here; only their hashes are kept.
            return render_template("accounts/two_factor_codes.html", codes=codes,
                                   next_url=next_url, first_time=True)
    uri = twofactor.provisioning_uri(user)
    return render_template(
        "accounts/two_factor_enrol.html", form=form, email=user.email,
        qr_svg=twofactor.qr_svg(uri, title="QR code for your authenticator app"),
        secret=twofactor.grouped_secret(secret),
    ), form_status(form)


@bp.route("/two-factor/new-password", methods=["GET", "POST"])
@allow("public")
def two_factor_new_password():
    """A staff password older than STAFF_PASSWORD_MAX_AGE_DAYS: choose a new one to sign in."""
    state, user = _pending()
    if user is None or not state.get("verified"):
        return _start_again()
    form = NewPasswordForm()
    if form.validate_on_submit():
        try:
            twofactor.replace_expired_password(user, form.password.data, now=utcnow())
        except twofactor.TwoFactorError as exc:
            add_errors(form, exc.errors)
        else:
            session.pop(PENDING, None)
            sessions.begin(user, remember=bool(state.get("remember")))
            flash("Your new password is set.", "success")
            return see_other(safe_path(state.get("next", ""), url_for("main.home")))
    days = settings().security.staff_password_max_age_days
    return render_template("accounts/two_factor_new_password.html", form=form,
                           days=days), form_status(form)


@bp.route("/two-factor/recovery-codes", methods=["GET", "POST"])
@allow("staff", "admin")
def recovery_codes():
    """See how many recovery codes are left, and replace them all."""
    if request.method == "POST":
        if ConfirmForm().validate_on_submit():
            try:
                codes = twofactor.regenerate_recovery_codes(current_user)
            except twofactor.TwoFactorError as exc:
                flash(exc.errors[""], "error")
                return see_other(url_for("accounts.recovery_codes"))
            return render_template("accounts/two_factor_codes.html", codes=codes,
                                   next_url=url_for("accounts.recovery_codes"), first_time=False)
    left = len(current_user.recovery_code_hashes or [])
    return render_template("accounts/two_factor_recovery.html", left=left, form=ConfirmForm(),
                           enrolled=twofactor.is_enrolled(current_user))


@bp.route("/invite/<token>", methods=["GET", "POST"])
@allow("public")
def accept_invite(token: str):
    """A new member of staff chooses a password, then sets up two-factor sign-in."""
    try:
        invited = invites.user_for_invite(token)
    except AccountError as exc:
        return render_template("accounts/staff_invite_invalid.html", message=exc.errors[""]), 400
    form = AcceptInviteForm(invited_email=invited.email, invited_name=invited.full_name)
    if form.validate_on_submit():
        try:
            user = invites.accept_invite(token, form.password.data, now=utcnow())
        except AccountError as exc:
            add_errors(form, exc.errors)
        else:
            flash("Your password is set. Now set up two-factor sign-in.", "success")
            return hand_off(user, remember=False, next_url=url_for("counter.board"))
    return render_template("accounts/staff_invite.html", form=form, user=invited,
                           token=token), form_status(form)


def staff_password_in_date():
    """before_request (registered in app/request_hooks.py): a signed-in staff member whose password has expired must renew it before going on."""
    if request.endpoint is None or request.endpoint in EXPIRED_PASSWORD_ALLOWED:
        return None
    if not current_user.is_authenticated or not current_user.is_staff:
        return None
    if twofactor.password_expired(current_user, now=utcnow()):
        days = settings().security.staff_password_max_age_days
        flash(f"Staff passwords last {days} days and yours has expired. Choose a new one.",
              "info")
        return redirect(url_for("accounts.change_password"))
    return None

"""Account pages. Thin: parse the form, call a service, render."""

from __future__ import annotations

from flask import flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user, logout_user

from .. import licence
from ..extensions import limiter
from ..models import utcnow
from ..security import allow
from ..settings import settings
from ..web import add_errors, form_status, render, safe_path, see_other, wants_fragment
from . import bp, services, sessions, twofactor
from .forms import ChangePasswordForm, ForgotPasswordForm, ProfileForm, ResetPasswordForm, SignInForm, SignUpForm
from .forms import LicenceCheckForm
from .services import AccountError, ProfileData
from .twofactor_routes import hand_off as two_factor_hand_off


def _home_for(user) -> str:
    return url_for("counter.board") if user.is_staff else url_for("accounts.profile")


def _cross_field_errors(form) -> None:
    """Run the rules across fields on whatever parsed, so every message shows at once."""
    if form.date_of_birth.data and form.licence_expires_on.data and form.licence_number.data:
        errors = services.profile_errors(ProfileData.from_form(form), today=services.local_today())
        add_errors(form, {k: m for k, m in errors.items() if not getattr(form, k).errors})


@bp.route("/sign-up", methods=["GET", "POST"])
@allow("public")
def sign_up():
    if current_user.is_authenticated:
        return redirect(_home_for(current_user))
    form = SignUpForm()
    if form.validate_on_submit():
        try:
            user = services.sign_up(email=form.email.data, password=form.password.data,
                                    data=ProfileData.from_form(form), today=services.local_today())
        except AccountError as exc:
            add_errors(form, exc.errors)
        else:
            sessions.begin(user)
            flash(f"Welcome, {user.full_name}. Your account is ready.", "success")
            if form.check_code.data:
                try:
                    licence.start_customer_check(user, form.check_code.data, now=utcnow())
                except licence.LicenceError as exc:
                    flash(" ".join(exc.errors.values()), "error")
            return see_other(url_for("accounts.profile"))
    elif form.is_submitted():
        _cross_field_errors(form)
    form.forget_refused_passwords()
    page, status = render("accounts/sign_up.html", "accounts/partials/_sign_up_form.html",
                          form_status(form), form=form)
    return page, status, {"Cache-Control": "no-store"}  # it may carry the typed passwords


@bp.route("/sign-in", methods=["GET", "POST"])
@allow("public")
@limiter.limit(lambda: settings().security.signin_rate_limit, methods=["POST"])
@limiter.limit(lambda: settings().security.signin_account_rate_limit, methods=["POST"],
               key_func=lambda: "account:" + (request.form.get("email") or "").strip().lower()[:254])
def sign_in():
    if current_user.is_authenticated:
        return redirect(_home_for(current_user))
    form = SignInForm()
    if form.validate_on_submit():
        try:
            user = services.authenticate(form.email.data, form.password.data, now=utcnow())
        except AccountError as exc:
            add_errors(form, exc.errors)
        else:
            next_url = safe_path(request.args.get("next"), _home_for(user))
            if twofactor.required_for(user):
                # Staff and admins give a second factor before they are signed in.
                return two_factor_hand_off(user, remember=form.remember.data, next_url=next_url)
            sessions.begin(user, remember=form.remember.data)
            return see_other(next_url)
    return render("accounts/sign_in.html", "accounts/partials/_sign_in_form.html",
                  form_status(form), form=form)


@bp.post("/sign-out")
@allow("customer", "staff", "admin")
def sign_out():
    """Sign out on this device: its session ends on the server, so a copied cookie dies too;
    the person's other devices stay signed in ("Sign out everywhere" ends those)."""
    sessions.end_this(current_user._get_current_object())
    flash("You are signed out.", "info")
    return see_other(url_for("main.home"))


@bp.post("/sign-out-everywhere")
@allow("customer", "staff", "admin")
def sign_out_everywhere():
    """End every session of this account: other devices, copied cookies, "remember me"."""
    sessions.end_all(current_user._get_current_object())
    flash("You are signed out on every device. Sign in again to continue.", "info")
    return see_other(url_for("accounts.sign_in"))


@bp.route("/profile", methods=["GET", "POST"])
@allow("customer")
def profile():
    user = current_user
    form = ProfileForm(obj=user.profile if request.method == "GET" else None)
    if request.method == "GET":
        form.full_name.data = user.full_name
    if form.validate_on_submit():
        try:
            services.update_profile(user, ProfileData.from_form(form), today=services.local_today())
        except AccountError as exc:
            add_errors(form, exc.errors)
        else:
            flash("Your details are saved.", "success")
            return see_other(url_for("accounts.profile"))
    elif form.is_submitted():
        _cross_field_errors(form)
    return render("accounts/profile.html", "accounts/partials/_profile_form.html",
                  form_status(form), form=form, user=user, **_licence_context(user))


@bp.route("/password", methods=["GET", "POST"])
@allow("customer", "staff", "admin")
def change_password():
    form = ChangePasswordForm()
    form.user_inputs = (current_user.email, current_user.full_name)
    if form.validate_on_submit():
        try:
            services.change_password(current_user, form.current_password.data, form.password.data,
                                     now=utcnow())
        except AccountError as exc:
            add_errors(form, exc.errors)
        else:
            # Every session ended; this device gets a new one. login_user needs the user
            # itself: given the current_user proxy it would resolve to itself (recursion).
            user = current_user._get_current_object()
            sessions.begin(user)
            flash("Your password is changed. Other devices have been signed out.", "success")
            return see_other(_home_for(user))
    return render("accounts/password.html", "accounts/partials/_password_form.html",
                  form_status(form), form=form)


@bp.route("/forgot-password", methods=["GET", "POST"])
@allow("public")
@limiter.limit(lambda: settings().security.password_reset_rate_limit, methods=["POST"])
def forgot_password():
    form = ForgotPasswordForm()
    if form.validate_on_submit():
        services.request_password_reset(form.email.data)
        # The same answer whether or not the account exists.
        flash("If an account uses that email, we have sent it a link to reset the password.", "info")
        return see_other(url_for("accounts.sign_in"))
    return render("accounts/forgot_password.html", "accounts/partials/_forgot_form.html",
                  form_status(form), form=form)


@bp.route("/reset/<token>", methods=["GET", "POST"])
@allow("public")
def reset_password(token: str):
    form = ResetPasswordForm()
    try:
        owner = services.user_for_reset_token(token)
    except AccountError as exc:
        return render("accounts/reset_invalid.html", "accounts/reset_invalid.html", 400,
                      message=exc.errors[""])
    form.user_inputs = (owner.email, owner.full_name)
    if form.validate_on_submit():
        try:
            user = services.reset_password(token, form.password.data, now=utcnow())
        except AccountError as exc:
            add_errors(form, exc.errors)
        else:
            logout_user()
            flash("Your password is reset. Sign in with the new one.", "success")
            return see_other(url_for("accounts.sign_in", email=user.email))
    return render("accounts/reset_password.html", "accounts/partials/_reset_form.html",
                  form_status(form), form=form, token=token)


# --- driving-licence check (issue 3) -------------------------------------------------------

def _licence_context(user, form: LicenceCheckForm | None = None) -> dict:
    """What the licence panel (status fragment + check-code form) needs."""
    return {"licence_view": licence.status_for_customer(user, now=utcnow()),
            "licence_form": form or LicenceCheckForm(formdata=None),
            "poll_url": url_for("accounts.licence_status")}


@bp.route("/licence", methods=["GET", "POST"])
@allow("customer")
def licence_check():
    """The licence page; POST a gov.uk check code to start a check (answered by a job)."""
    form = LicenceCheckForm()
    if form.validate_on_submit():
        try:
            licence.start_customer_check(current_user, form.check_code.data, now=utcnow())
        except licence.LicenceError as exc:
            add_errors(form, exc.errors)
        else:
            if not wants_fragment():
                return see_other(url_for("accounts.licence_check"))
            # A fresh form; the event makes the status fragment fetch "Checking…" and poll.
            response = make_response(render_template(
                "accounts/partials/_licence_form.html", user=current_user,
                licence_form=LicenceCheckForm(formdata=None)))
            response.headers["HX-Trigger"] = "licence-check-started"
            return response
    return render("accounts/licence.html", "accounts/partials/_licence_form.html",
                  form_status(form), user=current_user, **_licence_context(current_user, form))


@bp.get("/licence/status")
@allow("customer")
def licence_status():
    """The self-polling status fragment (the whole licence page without htmx)."""
    return render("accounts/licence.html", "accounts/partials/_licence_status.html",
                  user=current_user, **_licence_context(current_user))

"""Staff pages (/admin/staff): joiners, leavers, role and branch changes, a fresh invitation,
a two-factor reset. Admins only (the blueprint's guard). Thin: the rules are staff.py's.
"""

from __future__ import annotations

from flask import abort, flash, render_template, request, url_for
from flask_login import current_user

from ..form_fields import ConfirmForm
from ..models import utcnow
from ..web import add_errors, form_status, see_other
from . import bp
from . import staff as staff_accounts  # the views below include one named `staff`
from .forms import InviteForm, StaffForm
from .services import AdminError, branches


@bp.get("/staff")
def staff():
    """Everyone with access to the staff area, and their state."""
    return render_template("admin/staff.html", staff=staff_accounts.staff_members(),
                           pending=staff_accounts.invite_pending,
                           enrolled=staff_accounts.is_enrolled)


def _staff_data(form) -> staff_accounts.StaffData:
    return staff_accounts.StaffData(full_name=form.full_name.data or "",
                                    role=form.role.data or "",
                                    branch_id=form.branch_id.data or None)


@bp.route("/staff/invite", methods=["GET", "POST"])
def invite():
    """A joiner: create their account and email them a link to choose a password."""
    form = InviteForm()
    form.set_branches(branches())
    if form.validate_on_submit():
        try:
            user = staff_accounts.invite_staff(form.email.data, _staff_data(form),
                                               by=current_user, now=utcnow())
        except AdminError as exc:
            add_errors(form, exc.errors)
        else:
            flash(f"{user.full_name} is invited: we have emailed {user.email} a link to set "
                  f"a password.", "success")
            return see_other(url_for("admin.staff"))
    return render_template("admin/invite.html", form=form), form_status(form)


def _member_or_404(user_id: int):
    user = staff_accounts.staff_member(user_id)
    if user is None:
        abort(404)
    return user


def _member_page(user, form, status: int = 200):
    return render_template("admin/staff_member.html", member=user, form=form,
                           confirm=ConfirmForm(formdata=None),
                           pending=staff_accounts.invite_pending(user),
                           enrolled=staff_accounts.is_enrolled(user)), status


@bp.route("/staff/<int:user_id>", methods=["GET", "POST"])
def staff_member(user_id: int):
    """Change a member of staff's name, role and branch (effective on their next request)."""
    user = _member_or_404(user_id)
    form = StaffForm(obj=user if request.method == "GET" else None)
    form.set_branches(branches())
    if request.method == "GET":
        form.branch_id.data = user.branch_id or 0
    if form.validate_on_submit():
        try:
            staff_accounts.update_staff(user, _staff_data(form), by=current_user)
        except AdminError as exc:
            add_errors(form, exc.errors)
        else:
            flash(f"{user.full_name}'s account is saved.", "success")
            return see_other(url_for("admin.staff_member", user_id=user.id))
    return _member_page(user, form, form_status(form))


def _staff_action(user_id: int, action, done: str):
    user = _member_or_404(user_id)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    try:
        action(user)
    except AdminError as exc:
        flash(" ".join(exc.errors.values()), "error")
        return see_other(url_for("admin.staff_member", user_id=user.id))
    flash(done.format(name=user.full_name), "success")
    return see_other(url_for("admin.staff_member", user_id=user.id))


@bp.post("/staff/<int:user_id>/deactivate")
def deactivate(user_id: int):
    """A leaver: end their sessions now; they can no longer sign in."""
    return _staff_action(user_id,
                         lambda u: staff_accounts.deactivate(u, by=current_user, now=utcnow()),
                         "{name} is deactivated and signed out everywhere.")


@bp.post("/staff/<int:user_id>/reactivate")
def reactivate(user_id: int):
    """Let a returning member of staff sign in again."""
    return _staff_action(user_id, lambda u: staff_accounts.reactivate(u, by=current_user),
                         "{name} can sign in again.")


@bp.post("/staff/<int:user_id>/resend-invite")
def resend_invite(user_id: int):
    """Email a fresh invitation link (the old one stops working)."""
    return _staff_action(user_id, lambda u: staff_accounts.resend_invite(u, by=current_user),
                         "A new invitation is on its way to {name}.")


@bp.post("/staff/<int:user_id>/reset-two-factor")
def reset_two_factor(user_id: int):
    """Lost phone: switch their two-factor off; they set it up again at their next sign-in."""
    return _staff_action(user_id,
                         lambda u: staff_accounts.reset_two_factor(u, by=current_user),
                         "{name}'s two-factor sign-in is reset and their sessions ended.")

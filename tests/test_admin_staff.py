"""Staff joiners and leavers: invitations, roles and branches, deactivation."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pyotp
from sqlalchemy import select

from app.admin import staff
from app.extensions import db
from app.models import AuditRecord, OutboundEmail, User
from tests import factories
from tests.conftest import AuthActions, post_form

NEW_PASSWORD = "Counter-shift-passphrase-77"


def _invite(client, email="sam.new@example.com", role="staff", branch=None, **extra):
    branch = branch or factories.make_branch()
    data = {"full_name": "Sam New", "email": email, "role": role, "branch_id": str(branch.id), **extra}
    return post_form(client, "/admin/staff/invite", data), branch


def _invite_link(email: str) -> str:
    mail = db.session.scalars(select(OutboundEmail).where(OutboundEmail.to_address == email)
                              .order_by(OutboundEmail.id.desc())).first()
    assert mail is not None, "no invitation email"
    return re.search(r"https?://[^/\s]+(/account/invite/\S+)", mail.body_text).group(1)


def test_admin_invites_staff_who_set_a_password_enrol_and_sign_in(app, client, auth):
    admin = auth.sign_in_as("admin")
    response, branch = _invite(client, email="Sam.New@Example.com")
    assert response.status_code == 303
    user = db.session.scalar(select(User).where(User.email == "sam.new@example.com"))
    assert (user.role, user.branch_id, user.active) == ("staff", branch.id, True)
    assert user.invited_at is not None and user.invite_accepted_at is None
    # Until the invitation is accepted there is no password that works.
    assert AuthActions(app.test_client()).sign_in(user.email, "").status_code == 422

    joiner = app.test_client()
    link = _invite_link("sam.new@example.com")
    page = joiner.get(link).get_data(as_text=True)
    assert "Welcome, Sam New" in page
    weak = post_form(joiner, link, {"password": "sam.new", "confirm_password": "sam.new"})
    assert weak.status_code == 422
    response = post_form(joiner, link, {"password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    assert response.headers["Location"].endswith("/account/two-factor/set-up")
    page = joiner.get("/account/two-factor/set-up").get_data(as_text=True)
    db.session.refresh(user)
    secret = user.totp_secret
    assert "<svg" in page and secret
    response = post_form(joiner, "/account/two-factor/set-up", {"code": pyotp.TOTP(secret).now()})
    assert response.status_code == 200 and "recovery-codes" in response.get_data(as_text=True)
    assert joiner.get("/counter/").status_code == 200
    assert joiner.get("/admin/").status_code == 403  # staff, not admin
    actions = db.session.scalars(select(AuditRecord.action).where(
        AuditRecord.object_type == "user", AuditRecord.object_id == str(user.id))).all()
    assert {"user.invited", "user.invite_accepted", "user.two_factor_enrolled"} <= set(actions)
    invited = db.session.scalar(select(AuditRecord).where(AuditRecord.action == "user.invited"))
    assert invited.actor_id == admin.id and invited.request_id


def test_an_invitation_link_works_once(app, client, auth):
    auth.sign_in_as("admin")
    _invite(client)
    link = _invite_link("sam.new@example.com")
    joiner = app.test_client()
    post_form(joiner, link, {"password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    again = app.test_client().get(link)
    assert again.status_code == 400
    assert "already been used" in again.get_data(as_text=True)


def test_an_old_invitation_link_expires(make_app):
    app = make_app(STAFF_INVITE_MAX_AGE_SECONDS=-1)
    with app.app_context():
        admin = factories.make_user("admin")
        user = staff.invite_staff("late@example.com", staff.StaffData(
            "Late Joiner", "staff", factories.make_branch().id), by=admin,
            now=datetime.now(timezone.utc))
        response = app.test_client().get(_invite_link(user.email))
        assert response.status_code == 400
        assert "expired" in response.get_data(as_text=True)


def test_a_new_invitation_replaces_the_old_link(app, client, auth):
    auth.sign_in_as("admin")
    _invite(client)
    first = _invite_link("sam.new@example.com")
    user = db.session.scalar(select(User).where(User.email == "sam.new@example.com"))
    assert post_form(client, f"/admin/staff/{user.id}/resend-invite", {},
                     token_from=f"/admin/staff/{user.id}").status_code == 303
    second = _invite_link("sam.new@example.com")
    assert first != second
    assert app.test_client().get(first).status_code == 400
    assert app.test_client().get(second).status_code == 200


def test_invitation_checks_its_fields(client, auth):
    auth.sign_in_as("admin")
    customer = factories.make_user("customer", email="taken@example.com")
    response, _ = _invite(client, email="TAKEN@example.com")
    assert response.status_code == 422
    assert "already uses this email" in response.get_data(as_text=True)
    response = post_form(client, "/admin/staff/invite",
                         {"full_name": "X\x07", "email": "not-an-email", "role": "owner", "branch_id": "0"})
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Enter an email address like name@example.com." in page
    assert "Not a valid choice" in page or "Choose staff or admin" in page
    response = post_form(client, "/admin/staff/invite",
                         {"full_name": "No Branch", "email": "nb@example.com", "role": "staff", "branch_id": "0"})
    assert response.status_code == 422
    assert "Counter staff work at a branch" in response.get_data(as_text=True)
    assert db.session.get(User, customer.id).role == "customer"


def test_a_deactivated_leaver_is_thrown_out_at_once_and_cannot_sign_in(app, client, auth):
    auth.sign_in_as("admin")
    leaver_client = app.test_client()
    leaver = AuthActions(leaver_client).sign_in_as("staff")
    assert leaver_client.get("/counter/").status_code == 200
    response = post_form(client, f"/admin/staff/{leaver.id}/deactivate", {},
                         token_from=f"/admin/staff/{leaver.id}")
    assert response.status_code == 303
    # Their open session is refused on its very next request.
    response = leaver_client.get("/counter/")
    assert response.status_code == 302 and "/account/sign-in" in response.headers["Location"]
    # And the right password no longer gets them in.
    response = AuthActions(app.test_client()).sign_in(leaver.email)
    assert response.status_code == 422
    assert "active account" in response.get_data(as_text=True)
    record = db.session.scalar(select(AuditRecord).where(AuditRecord.action == "user.deactivated"))
    assert record.object_id == str(leaver.id)


def test_role_changes_apply_on_the_next_request(app, client, auth):
    auth.sign_in_as("admin")
    other_client = app.test_client()
    other = AuthActions(other_client).sign_in_as("admin")
    assert other_client.get("/admin/").status_code == 200
    response = post_form(client, f"/admin/staff/{other.id}",
                         {"full_name": other.full_name, "role": "staff",
                          "branch_id": str(factories.make_branch().id)})
    assert response.status_code == 303
    assert other_client.get("/admin/").status_code == 403
    assert other_client.get("/counter/").status_code == 200  # still signed in, as staff
    response = post_form(client, f"/admin/staff/{other.id}",
                         {"full_name": other.full_name, "role": "admin", "branch_id": "0"})
    assert response.status_code == 303
    assert other_client.get("/admin/").status_code == 200
    changes = db.session.scalars(select(AuditRecord).where(AuditRecord.action == "user.role_changed")
                                 .order_by(AuditRecord.id)).all()
    assert [(c.old["role"], c.new["role"]) for c in changes] == [("admin", "staff"), ("staff", "admin")]


def test_admins_cannot_lock_themselves_or_everyone_out(client, auth):
    admin = auth.sign_in_as("admin")
    response = post_form(client, f"/admin/staff/{admin.id}/deactivate", {},
                         token_from=f"/admin/staff/{admin.id}", follow_redirects=True)
    assert "cannot deactivate your own account" in response.get_data(as_text=True)
    response = post_form(client, f"/admin/staff/{admin.id}",
                         {"full_name": admin.full_name, "role": "staff", "branch_id": "0"})
    assert response.status_code == 422
    assert "cannot change your own role" in response.get_data(as_text=True)
    assert db.session.get(User, admin.id).active


def test_customers_are_not_staff_members(client, auth):
    auth.sign_in_as("admin")
    customer = factories.make_user("customer")
    assert client.get(f"/admin/staff/{customer.id}").status_code == 404
    assert post_form(client, f"/admin/staff/{customer.id}/deactivate", {},
                     token_from="/admin/staff").status_code == 404
    assert db.session.get(User, customer.id).active


def test_a_reactivated_member_signs_in_again(app, client, auth):
    admin = auth.sign_in_as("admin")
    member = factories.enrol_two_factor(factories.make_user("staff"))
    staff.deactivate(member, by=admin, now=datetime.now(timezone.utc))
    post_form(client, f"/admin/staff/{member.id}/reactivate", {}, token_from=f"/admin/staff/{member.id}")
    assert db.session.get(User, member.id).active
    other = app.test_client()
    assert AuthActions(other).sign_in(member.email).status_code == 303


def test_staff_list_shows_states(client, auth):
    admin = auth.sign_in_as("admin")
    _invite(client, email="invited@example.com")
    gone = factories.make_user("staff", email="gone@example.com", active=False)
    page = client.get("/admin/staff").get_data(as_text=True)
    assert "invited@example.com" in page and "Invited" in page
    assert "gone@example.com" in page and "Deactivated" in page
    assert admin.email in page

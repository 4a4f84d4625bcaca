"""Every email is built one way (issue 16): app/mail.py's `queue_email` renders a text
template under templates/<area>/emails/; no email body is written inline in a service.
"""

from __future__ import annotations

import ast
from pathlib import Path

from sqlalchemy import select

from app.accounts.services import request_password_reset
from app.extensions import db
from app.models import OutboundEmail
from tests import factories

APP = Path(__file__).resolve().parent.parent / "app"


def _calls(name: str):
    for path in sorted(APP.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                if called == name:
                    yield path.relative_to(APP.parent), node


def test_every_email_is_built_from_a_template():
    seen = 0
    for where, call in _calls("queue_email"):
        keywords = {k.arg for k in call.keywords}
        assert "template" in keywords and "body" not in keywords, f"{where}:{call.lineno}"
        seen += 1
    assert seen >= 7  # booking's emails, invites, resets, receipts, deposits, crypto, fleet


def test_only_the_builder_records_an_email():
    callers = {str(where) for where, _ in _calls("record_email")}
    assert callers <= {"app/mail.py"}, callers


def test_a_text_email_says_what_was_typed(app):
    """Text emails are not HTML: a name with & and an apostrophe arrives as typed."""
    user = factories.make_user(full_name="Siobhán O'Neil & Sons")
    request_password_reset(user.email)
    email = db.session.scalars(select(OutboundEmail).where(OutboundEmail.to_address == user.email)).one()
    assert email.subject == "Reset your ACME Rentals password"
    assert email.body_text.startswith("Hello Siobhán O'Neil & Sons,\n\nSomeone (hopefully you)")
    assert "/account/reset/" in email.body_text

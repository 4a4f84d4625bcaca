"""Who may see a hire, and a hire by its reference, are one function each (app/hire_access.py),
and every area answers the same: its customer and staff see it, anyone else gets 404.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from flask_login import AnonymousUserMixin

from app.hire_access import hire_by_reference, hire_visible_to
from tests import factories

APP = Path(__file__).resolve().parent.parent / "app"


def test_a_reference_is_read_the_way_people_type_it(app):
    hire = factories.make_hire()
    assert hire_by_reference(hire.reference) == hire
    assert hire_by_reference(f"  {hire.reference.lower()} ") == hire


@pytest.mark.parametrize("typed", ["", "   ", "AC\x00123", "AC-12'--", "ÀC123", "A" * 5000])
def test_what_cannot_be_a_reference_finds_nothing(app, typed):
    factories.make_hire()
    assert hire_by_reference(typed) is None


def test_its_customer_and_staff_see_a_hire_nobody_else_does(app):
    owner = factories.make_user()
    hire = factories.make_hire(customer=owner)
    assert hire_visible_to(hire.reference, owner) == hire
    assert hire_visible_to(hire.reference, factories.make_user("staff")) == hire
    assert hire_visible_to(hire.reference, factories.make_user("admin")) == hire
    assert hire_visible_to(hire.reference, factories.make_user()) is None
    assert hire_visible_to(hire.reference, AnonymousUserMixin()) is None
    assert hire_visible_to("ACNOSUCH1", owner) is None


def test_the_receipt_shows_to_its_customer_and_staff_and_is_404_for_another(app, client, auth):
    owner = factories.make_user(email="owner@example.com")
    hire = factories.make_hire(customer=owner)
    url = f"/pay/{hire.reference}/receipt"
    auth.sign_in_as("customer")
    assert client.get(url).status_code == 404  # not 403: its existence is not revealed
    auth.sign_out()
    auth.sign_in("owner@example.com")
    assert client.get(url).status_code == 200
    assert client.get(f"/pay/{hire.reference.lower()}/receipt").status_code == 200
    auth.sign_out()
    auth.sign_in_as("staff")
    assert client.get(url).status_code == 200


def _compares_hire_reference(node: ast.AST) -> bool:
    return (isinstance(node, ast.Compare) and isinstance(node.left, ast.Attribute)
            and node.left.attr == "reference" and isinstance(node.left.value, ast.Name)
            and node.left.value.id == "Hire")


def test_only_hire_access_looks_a_hire_up_by_reference():
    """A new lookup (`Hire.reference == ...`) elsewhere would decide visibility again."""
    elsewhere = [f"{path.relative_to(APP.parent)}:{node.lineno}"
                 for path in sorted(APP.rglob("*.py")) if path.name != "hire_access.py"
                 for node in ast.walk(ast.parse(path.read_text(), str(path)))
                 if _compares_hire_reference(node)]
    assert elsewhere == []

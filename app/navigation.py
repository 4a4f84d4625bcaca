"""The staff navigation: one list of the staff pages, each shown to the roles its route admits
(app/security.py decides, so the menu never offers a page that would answer 403), with the
number of items waiting where a page is a queue of work ("Crypto review (2)").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from flask import Flask, current_app
from flask_login import current_user

from .payments import review_count
from .security import audience_for

# (endpoint, label) in the order staff meet them during a day. Maintenance blocks are kept
# on each car's page under Fleet.
STAFF_PAGES: tuple[tuple[str, str], ...] = (
    ("counter.board", "Counter"),
    ("payments.crypto_review", "Crypto review"),
    ("fleet.cars", "Fleet"),
    ("paperwork.invoices", "Invoices"),
    ("admin.home", "Admin"),
    ("admin.prices", "Prices"),
    ("admin.staff", "Staff"),
    ("admin.reports_page", "Reports"),
    ("admin.audit", "Audit log"),
    ("privacy.retention", "Data retention"),
    ("accounts.recovery_codes", "Two-factor codes"),
    ("accounts.change_password", "Password"),
)


@dataclass(frozen=True)
class NavLink:
    endpoint: str
    label: str
    waiting: Optional[int] = None  # items waiting for someone, for the queues

    @property
    def text(self) -> str:
        return f"{self.label} ({self.waiting})" if self.waiting else self.label


# The pages that are queues, and the service that counts what waits on each.
WAITING_COUNTERS: dict[str, Callable[[], int]] = {"payments.crypto_review": review_count}


def staff_links(app: Flask, role: str) -> list[NavLink]:
    """The staff pages `role` may open, with their waiting counts."""
    links = []
    for endpoint, label in STAFF_PAGES:
        if role in (audience_for(app, endpoint) or ()):
            count = WAITING_COUNTERS.get(endpoint)
            links.append(NavLink(endpoint, label, count() if count else None))
    return links


def staff_navigation():
    """Context processor (app/request_hooks.py): `staff_nav` for the page header.

    A callable: the counts are queried only when a full page's header shows the menu."""
    def staff_nav() -> list[NavLink]:
        if not (current_user.is_authenticated and current_user.is_staff):
            return []
        return staff_links(current_app, current_user.role)
    return {"staff_nav": staff_nav}

"""Staff reach every staff page by following links from where signing in puts them (issue 14, §5).

The pages a role must reach are computed from the app's routes and their declared audiences,
so a new staff page that nothing links to fails this test.
"""

from __future__ import annotations

from collections import deque
from urllib.parse import urlsplit

import pytest
from werkzeug.exceptions import HTTPException

from app.models import utcnow
from app.payments import crypto
from app.security import PUBLIC, audience_for
from tests import factories
from tests.conftest import post_form
from tests.crypto_chain import chain_env  # noqa: F401
from tests.fuzz.crawler import parse
from tests.test_crypto_review_hold import underpaid_hire


# Staff-only GET routes that are not pages anyone follows a link to (issue 20).
NOT_LINKED = {
    "counter.offline_page": "the service worker shows it in place of any counter page while offline",
    "counter.offline_sync": "JSON: the tablet's offline copy, fetched by static/js/offline-counter.js",
}


def staff_pages(app, role: str) -> set[str]:
    """Every GET route without a path argument that `role` may use and visitors may not."""
    pages = set()
    for rule in app.url_map.iter_rules():
        if (rule.endpoint == "static" or "GET" not in rule.methods or rule.arguments
                or rule.endpoint in NOT_LINKED):
            continue
        audience = audience_for(app, rule.endpoint) or frozenset()
        if role in audience and PUBLIC not in audience:
            pages.add(rule.endpoint)
    return pages


def sign_in_staff(client, role: str) -> str:
    """Sign in with password and authenticator code; the page the sign-in lands on."""
    user = factories.enrol_two_factor(factories.make_user(role, branch=factories.make_branch()))
    response = post_form(client, "/account/sign-in", {"email": user.email, "password": factories.PASSWORD})
    assert response.status_code == 303
    response = post_form(client, "/account/two-factor", {"code": factories.two_factor_code(user)})
    assert response.status_code == 303, response.get_data(as_text=True)
    return urlsplit(response.headers["Location"]).path


def crawl_links(app, client, start: str) -> tuple[set[str], set[str]]:
    """(endpoints reached, endpoints refused) following only <a href> links from `start`."""
    adapter = app.url_map.bind("localhost")
    reached, refused, seen, queue = set(), set(), set(), deque([start])
    while queue:
        path = queue.popleft()
        parts = urlsplit(path)
        if parts.netloc not in ("", "localhost") or parts.path in seen:
            continue
        seen.add(parts.path)
        try:
            endpoint, args = adapter.match(parts.path, method="GET")
        except HTTPException:
            continue
        if args or parts.path.startswith("/dev/"):
            continue  # pages of one car, hire or person: not what this test counts
        response = client.get(parts.path + (f"?{parts.query}" if parts.query else ""))
        if response.status_code == 403:
            refused.add(endpoint)
        if response.status_code != 200:
            continue
        reached.add(endpoint)
        if response.mimetype == "text/html":
            links, _targets = parse(response.get_data(as_text=True), f"http://localhost{parts.path}")
            queue.extend(links)
    return reached, refused


@pytest.mark.parametrize("role", ["staff", "admin"])
def test_every_staff_page_is_reachable_by_links_from_the_landing_page(app, client, role):
    expected = staff_pages(app, role)
    # The table must hold what the business expects, so an empty or wrong set cannot pass.
    assert {"counter.board", "payments.crypto_review", "fleet.cars"} <= expected
    assert ("admin.audit" in expected) == (role == "admin")
    landing = sign_in_staff(client, role)
    reached, refused = crawl_links(app, client, landing)
    assert expected - reached == set(), f"{role} cannot reach these pages by links"
    assert refused == set(), f"{role} is offered links to pages they may not open"


def test_the_staff_menu_counts_the_payments_waiting_for_review(app, chain_env, client, auth):
    staff = auth.sign_in_as("staff", branch=factories.make_branch())
    assert ">Crypto review</a>" in client.get("/counter/").get_data(as_text=True)
    _first, payment = underpaid_hire(chain_env)
    underpaid_hire(chain_env)
    assert ">Crypto review (2)</a>" in client.get("/counter/").get_data(as_text=True)
    crypto.refund_reviewed(payment.id, staff, utcnow())
    assert ">Crypto review (1)</a>" in client.get("/fleet/").get_data(as_text=True)

"""Least privilege: every route x every role gets exactly the expected allow or refuse.

EXPECTED is written by hand, not derived from the code: it is what the business wants.
Adding a route means adding its row here, or `test_every_route_is_in_the_table` fails.
"""

from __future__ import annotations

import pytest

from app.security import undeclared_endpoints
from tests import factories

ANON, CUSTOMER, STAFF, ADMIN = "anonymous", "customer", "staff", "admin"
EVERYONE = {ANON, CUSTOMER, STAFF, ADMIN}
SIGNED_IN = {CUSTOMER, STAFF, ADMIN}
STAFF_AREA = {STAFF, ADMIN}

# endpoint -> (method, url, who may use it)
EXPECTED: dict[str, tuple[str, str, set[str]]] = {
    "main.home": ("GET", "/", EVERYONE),
    "main.healthz": ("GET", "/healthz", EVERYONE),
    "main.accessibility": ("GET", "/accessibility", EVERYONE),
    "main.favicon": ("GET", "/favicon.ico", EVERYONE),
    "main.outbox": ("GET", "/dev/outbox", EVERYONE),  # 404 outside development
    "main.outbox_attachment": ("GET", "/dev/outbox/0/none.ics", EVERYONE),  # likewise
    "accounts.sign_up": ("GET", "/account/sign-up", EVERYONE),
    "accounts.sign_in": ("GET", "/account/sign-in", EVERYONE),
    "accounts.sign_out": ("POST", "/account/sign-out", SIGNED_IN),
    "accounts.sign_out_everywhere": ("POST", "/account/sign-out-everywhere", SIGNED_IN),
    "accounts.profile": ("GET", "/account/profile", {CUSTOMER}),
    "accounts.change_password": ("GET", "/account/password", SIGNED_IN),
    "accounts.forgot_password": ("GET", "/account/forgot-password", EVERYONE),
    "accounts.reset_password": ("GET", "/account/reset/not-a-token", EVERYONE),
    "accounts.licence_check": ("GET", "/account/licence", {CUSTOMER}),
    "accounts.licence_status": ("GET", "/account/licence/status", {CUSTOMER}),
    # Counter re-check of a hire's licence (404 for staff: no such hire here).
    "counter.licence_check_status": ("GET", "/counter/hires/NOHIRE/licence-check", STAFF_AREA),
    "counter.licence_recheck": ("POST", "/counter/hires/NOHIRE/licence-check", STAFF_AREA),
    "booking.search": ("GET", "/book/", EVERYONE),
    # Booking (issue 4): quotes for anyone; the confirm step, booking and a customer's own
    # hires for customers only (car 999999 and NOHIRE name nothing: 422/404 when let in).
    "booking.quote": ("GET", "/book/cars/999999", EVERYONE),
    "booking.review": ("GET", "/book/cars/999999/review", {CUSTOMER}),
    "booking.confirm": ("POST", "/book/cars/999999/confirm", {CUSTOMER}),
    "booking.my_bookings": ("GET", "/book/mine", {CUSTOMER}),
    "booking.hire_detail": ("GET", "/book/hires/NOHIRE", {CUSTOMER}),
    "booking.cancel": ("GET", "/book/hires/NOHIRE/cancel", {CUSTOMER}),
    "booking.change": ("GET", "/book/hires/NOHIRE/change", {CUSTOMER}),
    "counter.board": ("GET", "/counter/", STAFF_AREA),
    "counter.hire": ("GET", "/counter/hires/NOHIRE", STAFF_AREA),
    "counter.start": ("POST", "/counter/hires/NOHIRE/pickup/start", STAFF_AREA),
    "counter.id_check": ("POST", "/counter/hires/NOHIRE/pickup/id-check", STAFF_AREA),
    "counter.condition": ("POST", "/counter/hires/NOHIRE/pickup/condition", STAFF_AREA),
    "counter.add_photo": ("POST", "/counter/hires/NOHIRE/pickup/photos", STAFF_AREA),
    "counter.signature": ("POST", "/counter/hires/NOHIRE/pickup/signature", STAFF_AREA),
    "counter.hand_over": ("POST", "/counter/hires/NOHIRE/pickup/hand-over", STAFF_AREA),
    "counter.refuse": ("POST", "/counter/hires/NOHIRE/pickup/refuse", STAFF_AREA),
    "counter.no_show": ("GET", "/counter/hires/NOHIRE/no-show", STAFF_AREA),
    "counter.mark_no_show": ("POST", "/counter/hires/NOHIRE/no-show", STAFF_AREA),
    "counter.add_damage": ("POST", "/counter/hires/NOHIRE/return/damage", STAFF_AREA),
    "counter.waive": ("POST", "/counter/hires/NOHIRE/return/waive", STAFF_AREA),
    "counter.settle": ("POST", "/counter/hires/NOHIRE/return/settle", STAFF_AREA),
    "counter.inspection_photo": ("GET", "/counter/photos/" + "0" * 64 + ".jpg", STAFF_AREA),
    # The offline counter (issue 20): its page, the sync, the queued steps (400 for staff:
    # no JSON body); the service worker itself holds nothing personal.
    "counter.offline_page": ("GET", "/counter/offline", STAFF_AREA),
    "counter.offline_sync": ("GET", "/counter/offline/sync", STAFF_AREA),
    "counter.offline_steps": ("POST", "/counter/offline/steps", STAFF_AREA),
    "main.service_worker": ("GET", "/sw.js", EVERYONE),
    "fleet.cars": ("GET", "/fleet/", STAFF_AREA),
    "admin.home": ("GET", "/admin/", {ADMIN}),
    # Card payments (issue 5): a customer's own hire only (404 here: no such hire); the
    # receipt also for staff; Stripe's webhook is public (400 here: no valid signature).
    "payments.start": ("GET", "/pay/NOHIRE", {CUSTOMER}),
    "payments.card": ("GET", "/pay/NOHIRE/card", {CUSTOMER}),
    "payments.card_continue": ("GET", "/pay/NOHIRE/card/continue", {CUSTOMER}),
    "payments.card_return": ("GET", "/pay/NOHIRE/return", {CUSTOMER}),
    "payments.status": ("GET", "/pay/NOHIRE/status", {CUSTOMER}),
    "payments.receipt": ("GET", "/pay/NOHIRE/receipt", SIGNED_IN),
    "payments.stripe_webhook": ("POST", "/pay/webhooks/stripe", EVERYONE),
    # Crypto payments (issue 5): a customer's own hire only (404 here: no such hire); the
    # review of payments the rules would not accept is staff work; the demo wallet is for
    # customers, and only in development (404 here).
    "payments.crypto_start": ("GET", "/pay/NOHIRE/crypto", {CUSTOMER}),
    "payments.crypto_new_quote": ("POST", "/pay/NOHIRE/crypto/quote", {CUSTOMER}),
    "payments.crypto_sent": ("POST", "/pay/NOHIRE/crypto/sent", {CUSTOMER}),
    "payments.crypto_status": ("GET", "/pay/NOHIRE/crypto/status", {CUSTOMER}),
    "payments.crypto_refund_address": ("GET", "/pay/NOHIRE/crypto/refunds/1", {CUSTOMER}),
    "payments.crypto_review": ("GET", "/pay/crypto/review", STAFF_AREA),
    "payments.crypto_review_accept": ("POST", "/pay/crypto/review/999999/accept", STAFF_AREA),
    "payments.crypto_review_refund": ("POST", "/pay/crypto/review/999999/refund", STAFF_AREA),
    "payments.crypto_demo_wallet": ("POST", "/pay/crypto/demo-wallet", {CUSTOMER}),
    # Fleet and administration (issue 8). Ids 999999 and NOHIRE name nothing (404 when let in).
    # The second sign-in step and invitations are public (the person is not signed in yet);
    # with nothing pending they say "sign in again", and a bad invitation link is a 400.
    "accounts.two_factor": ("GET", "/account/two-factor", EVERYONE),
    "accounts.two_factor_enrol": ("GET", "/account/two-factor/set-up", EVERYONE),
    "accounts.two_factor_new_password": ("GET", "/account/two-factor/new-password", EVERYONE),
    "accounts.recovery_codes": ("GET", "/account/two-factor/recovery-codes", STAFF_AREA),
    "accounts.accept_invite": ("GET", "/account/invite/not-a-token", EVERYONE),
    # Car photos are shown to customers in search (404 here: no such photo).
    "media.car_photo": ("GET", "/media/cars/" + "0" * 64 + ".jpg", EVERYONE),
    "media.car_photo_width": ("GET", "/media/cars/w320/" + "0" * 64 + ".jpg", EVERYONE),
    "fleet.new_car": ("GET", "/fleet/cars/new", STAFF_AREA),
    "fleet.car": ("GET", "/fleet/cars/999999", STAFF_AREA),
    "fleet.edit_car": ("GET", "/fleet/cars/999999/edit", STAFF_AREA),
    "fleet.retire_car": ("POST", "/fleet/cars/999999/retire", STAFF_AREA),
    "fleet.reinstate_car": ("POST", "/fleet/cars/999999/reinstate", STAFF_AREA),
    "fleet.add_photos": ("POST", "/fleet/cars/999999/photos", STAFF_AREA),
    "fleet.remove_photo": ("POST", "/fleet/cars/999999/photos/999999/delete", STAFF_AREA),
    "fleet.cover_photo": ("POST", "/fleet/cars/999999/photos/999999/cover", STAFF_AREA),
    "fleet.add_maintenance": ("POST", "/fleet/cars/999999/maintenance", STAFF_AREA),
    "fleet.remove_maintenance": ("POST", "/fleet/maintenance/999999/delete", STAFF_AREA),
    "fleet.hire": ("GET", "/fleet/hires/NOHIRE", STAFF_AREA),
    "fleet.move_hire": ("POST", "/fleet/hires/NOHIRE/move", STAFF_AREA),
    "admin.staff": ("GET", "/admin/staff", {ADMIN}),
    "admin.invite": ("GET", "/admin/staff/invite", {ADMIN}),
    "admin.staff_member": ("GET", "/admin/staff/999999", {ADMIN}),
    "admin.deactivate": ("POST", "/admin/staff/999999/deactivate", {ADMIN}),
    "admin.reactivate": ("POST", "/admin/staff/999999/reactivate", {ADMIN}),
    "admin.resend_invite": ("POST", "/admin/staff/999999/resend-invite", {ADMIN}),
    "admin.reset_two_factor": ("POST", "/admin/staff/999999/reset-two-factor", {ADMIN}),
    "admin.prices": ("GET", "/admin/prices", {ADMIN}),
    "admin.class_rates": ("POST", "/admin/prices/classes/999999", {ADMIN}),
    "admin.save_rate": ("POST", "/admin/prices/tier/999999", {ADMIN}),
    "admin.delete_rate": ("POST", "/admin/prices/tier/999999/delete", {ADMIN}),
    "admin.audit": ("GET", "/admin/audit", {ADMIN}),
    "admin.audit_csv": ("GET", "/admin/audit.csv", {ADMIN}),
    "admin.reports_page": ("GET", "/admin/reports", {ADMIN}),
    "admin.report_csv": ("GET", "/admin/reports/outcomes.csv", {ADMIN}),
    "admin.refresh_reports": ("POST", "/admin/reports/refresh", {ADMIN}),
    # Metrics (issue 9): staff and admins from anywhere; anyone else only over a direct
    # loopback connection (the Prometheus scraper on the host). The test client is loopback,
    # hence EVERYONE here; tests/test_metrics.py checks the refusals from elsewhere.
    "metrics.scrape": ("GET", "/metrics", EVERYONE),
    # Paperwork (issue 18): a hire's agreement and invoices for its customer and staff (404
    # here: no such hire or document; tests/test_paperwork_access.py proves another customer
    # is refused a real one); the list of invoices and its CSV for staff.
    "paperwork.agreement_status": ("GET", "/paperwork/hires/NOHIRE/agreement", SIGNED_IN),
    "paperwork.agreement_pdf": ("GET", "/paperwork/hires/NOHIRE/agreement.pdf", SIGNED_IN),
    "paperwork.addenda_status": ("GET", "/paperwork/hires/NOHIRE/addenda", SIGNED_IN),
    "paperwork.agreement_retry": ("POST", "/paperwork/hires/NOHIRE/agreement/retry", STAFF_AREA),
    "paperwork.invoice_download": ("GET", "/paperwork/documents/999999.pdf", SIGNED_IN),
    "paperwork.invoices": ("GET", "/paperwork/invoices", STAFF_AREA),
    "paperwork.invoices_csv": ("GET", "/paperwork/invoices.csv", STAFF_AREA),
    # Issue 18: online check-in and extensions on a customer's own hire (404 here: no such
    # hire); the licence photo also for staff; staff extend from the counter. The customer's
    # own data for customers; the retention list for admins.
    "booking.check_in": ("GET", "/book/hires/NOHIRE/check-in", {CUSTOMER}),
    "booking.add_driver": ("POST", "/book/hires/NOHIRE/check-in/drivers", {CUSTOMER}),
    "booking.licence_photo": ("GET", "/book/hires/NOHIRE/check-in/licence-photo/" + "0" * 64 + ".jpg",
                              {CUSTOMER, STAFF, ADMIN}),
    "booking.extend": ("GET", "/book/hires/NOHIRE/extend", {CUSTOMER}),
    "booking.staff_extend": ("GET", "/book/staff/hires/NOHIRE/extend", STAFF_AREA),
    "privacy.my_data": ("GET", "/account/data", {CUSTOMER}),
    "privacy.request_export": ("POST", "/account/data/export", {CUSTOMER}),
    "privacy.download_export": ("GET", "/account/data/export/999999", {CUSTOMER}),
    "privacy.delete_account": ("POST", "/account/data/delete", {CUSTOMER}),
    "privacy.retention": ("GET", "/admin/privacy/retention", {ADMIN}),
}
# Posting one ends the session: the client signs in again before the next route.
SIGN_OUTS = {"accounts.sign_out", "accounts.sign_out_everywhere"}


def test_every_route_declares_its_audience(app):
    assert undeclared_endpoints(app) == []


def test_every_route_is_in_the_table(app):
    routes = {e for e in app.view_functions if e != "static"}
    assert routes - EXPECTED.keys() == set(), "add the new routes to EXPECTED"
    assert EXPECTED.keys() - routes == set(), "EXPECTED names routes that do not exist"


def _signed_in_client(app, role: str):
    from tests.conftest import AuthActions
    client = app.test_client()
    if role != ANON:
        AuthActions(client).sign_in_as(role)
    return client


@pytest.mark.parametrize("role", [ANON, CUSTOMER, STAFF, ADMIN])
def test_route_by_role(app, role):
    client = _signed_in_client(app, role)
    failures = []
    for endpoint, (method, url, allowed) in EXPECTED.items():
        # CSRF is not what is being tested here.
        app.config["WTF_CSRF_ENABLED"] = False
        response = client.open(url, method=method)
        app.config["WTF_CSRF_ENABLED"] = True
        refused = (response.status_code == 403
                   or (role == ANON and response.status_code in (302, 401)
                       and "/account/sign-in" in response.headers.get("Location", "/account/sign-in")))
        if role in allowed and refused:
            failures.append(f"{role} refused at {method} {url} ({response.status_code})")
        if role not in allowed and not refused:
            failures.append(f"{role} let in at {method} {url} ({response.status_code})")
        if response.status_code >= 500:
            failures.append(f"{role} got {response.status_code} at {method} {url}")
        if method == "POST" and role != ANON and endpoint in SIGN_OUTS:
            client = _signed_in_client(app, role)  # signing out ended the session
    assert failures == []


def test_deactivated_user_session_is_refused(app, client, auth):
    user = auth.sign_in_as(STAFF)
    assert client.get("/counter/").status_code == 200
    user.active = False
    factories.db.session.commit()
    response = client.get("/counter/")
    assert response.status_code == 302 and "/account/sign-in" in response.headers["Location"]


def _with_nul_in_path(url: str) -> str | None:
    """The url with a NUL inside its last word-like path segment (None if it has none)."""
    path, _, query = url.partition("?")
    parts = path.split("/")
    for i in range(len(parts) - 1, -1, -1):
        if len(parts[i]) >= 2 and parts[i].isalnum() and not parts[i].isdigit():
            parts[i] = parts[i][:1] + "%00" + parts[i][1:]
            return "/".join(parts) + (f"?{query}" if query else "")
    return None


@pytest.mark.parametrize("role", [ANON, CUSTOMER, STAFF])
def test_a_nul_in_a_request_never_breaks_a_route(app, role):
    """PostgreSQL cannot hold or compare a NUL in text. One in the address is refused up front
    with a message (400); one in a query or a form field gets the form's own message or is
    ignored, for every route and role: never a 500 (the PostgreSQL pass is what proves it)."""
    client = _signed_in_client(app, role)
    failures = []
    for endpoint, (method, url, _allowed) in EXPECTED.items():
        if endpoint in SIGN_OUTS:
            continue
        if (in_path := _with_nul_in_path(url)) is not None:
            app.config["WTF_CSRF_ENABLED"] = False
            response = client.open(in_path, method=method)
            app.config["WTF_CSRF_ENABLED"] = True
            if response.status_code != 400 or "(a NUL)" not in response.get_data(as_text=True):
                failures.append(f"{role} {method} {in_path}: {response.status_code}")
        sep = "&" if "?" in url else "?"
        attempts = [(f"{url}{sep}q=A%00B", None)]
        if method == "POST":
            attempts.append((url, {"q": "A\x00B", "email": "a\x00@example.com", "reason": "\x00"}))
        for target, form in attempts:
            app.config["WTF_CSRF_ENABLED"] = False
            response = client.open(target, method=method, data=form)
            app.config["WTF_CSRF_ENABLED"] = True
            if response.status_code >= 500:
                failures.append(f"{role} {method} {target} {form or ''}: {response.status_code}")
    assert failures == []


def test_a_nul_in_the_counter_search_is_named_beside_the_box(app):
    client = _signed_in_client(app, STAFF)
    response = client.get("/counter/?q=AB%00C", headers={"HX-Request": "true"})
    page = response.get_data(as_text=True)
    assert response.status_code == 422 and 'id="q-error"' in page and "control characters" in page


def test_a_background_request_of_someone_signed_out_gets_401_and_leaves_their_session_alone(app):
    """A board's refresh, a script's fetch or the counter's worker asking after the session has
    ended must not set a session cookie of its own: it would replace the one of the sign-in page
    open meanwhile, and the person's sign-in would fail its CSRF check (the offline counter's
    flaky sign-in, session 8: the tablet's requests carried no cookie, their redirects set one)."""
    background = ({"Sec-Fetch-Mode": "same-origin", "Accept": "application/json"},  # a script's fetch
                  {"Sec-Fetch-Mode": "cors"})  # the service worker refreshing the offline page
    for headers in background:
        for url in ("/counter/offline/sync", "/counter/offline"):
            answer = app.test_client().get(url, headers=headers)  # no cookie, as the tablet's
            assert answer.status_code == 401, url
            assert answer.json == {"error": "Your session has ended: please sign in again."}
            assert not answer.headers.getlist("Set-Cookie"), url
    board = app.test_client().get("/counter/", headers={
        "HX-Request": "true", "Sec-Fetch-Mode": "cors", "HX-Current-URL": "http://localhost/counter/?branch=all"})
    assert board.status_code == 401 and not board.headers.getlist("Set-Cookie")
    # htmx takes the page (not the fragment) to sign in.
    assert board.headers["HX-Redirect"] == "/account/sign-in?next=%2Fcounter%2F%3Fbranch%3Dall"

    # With the sign-in page open, background requests in between leave its token valid.
    client = app.test_client()
    form = client.get("/account/sign-in")
    for headers in background:
        assert client.get("/counter/offline/sync", headers=headers).status_code == 401
    staff = factories.make_user("staff")
    signed_in = client.post("/account/sign-in", data={"email": staff.email, "password": factories.PASSWORD,
                                                      "csrf_token": _token(form)})
    assert signed_in.status_code == 303

    # Navigating to a page that needs signing in still leads to the sign-in page, with why.
    navigate = app.test_client().get("/counter/", headers={"Sec-Fetch-Mode": "navigate"})
    assert navigate.status_code == 302 and navigate.headers["Location"] == "/account/sign-in?next=%2Fcounter%2F"


def _token(response) -> str:
    from tests.conftest import CSRF_RE
    match = CSRF_RE.search(response.get_data(as_text=True))
    return match.group(1) or match.group(2)

"""Form fuzzer: for each role, crawl what that person can see, then post hostile values to every
form and htmx endpoint found.

Targets (issue 9): no 5xx and no stack trace; no payload reflected unescaped in HTML; nothing
stored that breaks a model rule (checked in SQL after the run). Oversize bodies get 413.
Run: `pytest tests/fuzz` (CI: after ./scripts/test, on PostgreSQL). See conftest.py for the
settings of a longer run.
"""

from __future__ import annotations

import os
import random
import re
import time
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from sqlalchemy import String, select, text

from app.extensions import db
from app.models import HireState, Payment, User
from devtools.licence_standin import LicenceStandIn
from devtools.stripe_standin import start as start_stripe_standin
from tests import factories
from tests.conftest import CSRF_RE, AuthActions

from .crawler import Crawler, Target, path_of, query_of
from .payloads import OVERSIZE_BYTES, as_files, form_payload, reflected
from .sweeps import (PATH_EDGES, field_probes, file_probes, is_off_site, path_probes,
                     redirect_probes)

DEFAULT_EXAMPLES = 3
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", DEFAULT_EXAMPLES))
# Seconds per role for the random part, after the sweeps (which always run in full).
DEFAULT_SECONDS = 10
SECONDS = float(os.environ.get("FUZZ_SECONDS", DEFAULT_SECONDS))
MAX_PAGES = int(os.environ.get("FUZZ_MAX_PAGES", 80))
SEED = os.environ.get("FUZZ_SEED")
SLOW_SECONDS = 2.0  # a request slower than this is printed (a denial-of-service lead)
ROLES = ["anonymous", "customer", "staff", "admin"]
SEEDS = ["/", "/book/", "/book/mine", "/account/sign-in", "/account/sign-up",
         "/account/forgot-password", "/account/profile", "/account/licence", "/account/password",
         "/counter/", "/fleet/", "/fleet/cars/new", "/admin/", "/admin/staff", "/admin/staff/invite",
         "/admin/prices", "/admin/audit", "/admin/reports", "/pay/crypto/review"]
# Never fuzzed: signing out (here or everywhere) ends the session the fuzzer works in (nothing to find there).
NOT_FUZZED = {"accounts.sign_out", "accounts.sign_out_everywhere"}
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Free text that may hold several lines; every other string column is one line.
MULTILINE_COLUMNS = {"notes", "description", "body", "reason", "details", "note", "message",
                     "text", "payload", "damage_notes", "html_body", "text_body", "outcome",
                     "raw_tx", "last_error", "failure_message", "refusal_reason"}
# Not written from forms (rendered emails, provider payloads, our own logs).
MACHINE_TABLES = {"outbound_emails", "stripe_events", "audit_records", "hire_state_changes",
                  "payment_state_changes", "chain_cursors", "licence_checks"}


@pytest.fixture
def services(app):
    """The licence and Stripe stand-ins, so forms that reach the outside world do so for real."""
    licence = LicenceStandIn(slow_seconds=0.5, pause_seconds=0.05).start()
    stripe = start_stripe_standin(slow_seconds=0.5)
    app.config.update(
        RATELIMIT_ENABLED=False,  # 429s would hide everything behind the limit
        LICENCE_API_URL=licence.url, LICENCE_API_KEY=licence.api_key,
        LICENCE_READ_TIMEOUT_SECONDS=0.3, LICENCE_RETRY_BACKOFF_SECONDS=0.01,
        STRIPE_API_BASE=stripe.url, STRIPE_SECRET_KEY="sk_test_fuzz",
        STRIPE_WEBHOOK_SECRET=stripe.webhook_secret, STRIPE_READ_TIMEOUT_SECONDS=0.3)
    from app.extensions import limiter
    limiter.enabled = False
    _watch_the_safety_net(app)
    yield
    limiter.enabled = True
    licence.stop()
    stripe.stop()


SAFETY_NET_HITS: list[str] = []


def _watch_the_safety_net(app):
    """The error handlers turn a value the database refused (DataError, OverflowError) into a
    400: a safety net, not the fix (the form or route should have named the field). Note each
    time it catches something, so that the fuzzer reports it; the answer stays the same."""
    from sqlalchemy.exc import DataError
    handlers = app.error_handler_spec[None][None]
    for exc in (DataError, OverflowError):
        original = handlers[exc]

        def noting(e, original=original):
            SAFETY_NET_HITS.append(f"{type(e).__name__}: {str(e).splitlines()[0][:120]}")
            return original(e)
        handlers[exc] = noting


def _seed_world():
    """Demo fleet and prices, plus hires in the states that put forms on the pages."""
    from app.demo import load_demo
    load_demo()
    customer = factories.make_user("customer", full_name="Fuzz Customer")
    cars = db.session.scalars(select(factories.Car).order_by(factories.Car.id)).all()
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    held = factories.make_hire(car=cars[0], customer=customer, start=now + timedelta(days=20),
                               state=HireState.HELD)
    held.hold_expires_at = now + timedelta(minutes=15)
    paid = [
        factories.make_hire(car=cars[1], customer=customer, start=now + timedelta(days=30)),
        factories.make_hire(car=cars[2], customer=customer, start=now + timedelta(hours=2)),  # pickup
        factories.make_hire(car=cars[3], customer=customer, start=now - timedelta(days=2),
                            state=HireState.ACTIVE),  # due back tomorrow
    ]
    for hire in paid:  # as card payment leaves them: the rental charged
        db.session.add(Payment(hire_id=hire.id, method="card", kind="charge", state="succeeded",
                               amount_pence=hire.total_pence, provider_ref=f"pi_fuzz_{hire.id}",
                               idempotency_key=f"hire:{hire.id}:charge:fuzz"))
    db.session.commit()
    return customer


def _token(client) -> str:
    html = client.get("/").get_data(as_text=True)
    match = CSRF_RE.search(html)
    return (match.group(1) or match.group(2)) if match else ""


class Session:
    """A signed-in browser for one role, signing in again if a fuzzed form ended its session."""

    def __init__(self, app, role: str, customer: User):
        self.app, self.role, self.customer = app, role, customer
        self.sign_in()

    def sign_in(self):
        self.client = self.app.test_client()
        if self.role == "customer":
            AuthActions(self.client).sign_in(self.customer.email)
        elif self.role != "anonymous":
            AuthActions(self.client).sign_in_as(self.role)
        self.csrf = _token(self.client)

    def still_signed_in(self) -> bool:
        if self.role == "anonymous":
            return True
        home = {"customer": "/book/mine", "staff": "/counter/", "admin": "/admin/"}[self.role]
        return self.client.get(home).status_code == 200


def _send(session: Session, target: Target, pairs, files, *, oversize: bool = False,
          path: str | None = None, query: list | None = None):
    headers = {"X-CSRFToken": session.csrf}
    if target.htmx:
        headers["HX-Request"] = "true"
    path = path or path_of(target.url)
    query = query_of(target.url) + list(query or [])
    if target.method == "GET":
        return session.client.get(path, query_string=query + pairs, headers=headers)
    if oversize:
        pairs, files = [("csrf_token", session.csrf), ("filler", "x" * OVERSIZE_BYTES)], []
    body, content_type = _encode(pairs, files, multipart=bool(files) or target.multipart)
    return session.client.open(path, method=target.method, data=body, headers=headers,
                               query_string=query, content_type=content_type)


def _encode(pairs, files, *, multipart: bool) -> tuple[bytes, str]:
    """The body a browser would send, built here: repeated fields stay repeated, and no
    temporary file is left open by the test client's own encoder."""
    if not multipart:
        from urllib.parse import urlencode
        return urlencode(pairs).encode(), "application/x-www-form-urlencoded"
    from werkzeug.datastructures import MultiDict
    from werkzeug.test import encode_multipart
    values = MultiDict(pairs)
    for name, upload in as_files(files):
        values.add(name, upload)
    boundary, body = encode_multipart(values)
    return body, f"multipart/form-data; boundary={boundary}"


def _check(response, target: Target, what: str, problems: list[str], *, redirect: bool = False):
    where = f"{target.method} {target.url} ({target.endpoint}) {what}"
    while SAFETY_NET_HITS:
        problems.append(f"the database refused a value ({SAFETY_NET_HITS.pop()}): only the "
                        f"safety net answered at {where}")
    body = response.get_data(as_text=True)
    if response.status_code >= 500:
        problems.append(f"{response.status_code} at {where}")
    if "Traceback (most recent call last)" in body:
        problems.append(f"stack trace shown at {where}")
    if response.mimetype == "text/html":
        for marker in reflected(body):
            problems.append(f"unescaped {marker!r} in the page at {where}")
    for cookie in response.headers.getlist("Set-Cookie"):
        if cookie.startswith("fz="):
            problems.append(f"header injection (cookie set) at {where}")
    if "X-Fz" in response.headers:
        problems.append(f"header injection (X-Fz set) at {where}")
    if redirect:
        for header in ("Location", "HX-Redirect", "HX-Location"):
            if is_off_site(response.headers.get(header, "")):
                problems.append(f"sent off the site ({header}: "
                                f"{response.headers[header]!r}) at {where}")


def _summary(pairs, files) -> str:
    def short(v):
        return repr(v if len(v) < 60 else v[:40] + f"...({len(v)} chars)")
    parts = [f"{k}={short(v)}" for k, v in pairs if k != "csrf_token"]
    parts += [f"{name}=<file {filename!r}, {len(content)} bytes>" for name, content, filename in files]
    return "{" + ", ".join(parts) + "}"


def _timed(send):
    began = time.monotonic()
    response = send()
    took = time.monotonic() - began
    return response, took


def _sweep_target(session: Session, target: Target, rule, problems: list[str],
                  spent: dict[str, list]) -> int:
    """Every probe of the sweeps for one target (see sweeps.py); `spent` adds up the
    requests and seconds of each sweep."""
    sent = 0
    sweeps = {"fields": field_probes(target, session.csrf),
              "uploads": file_probes(target, session.csrf),
              "redirects": redirect_probes(target, session.csrf),
              "addresses": path_probes(target, session.csrf, rule)
              if rule is not None and rule.arguments else []}
    for sweep, probes in sweeps.items():
        for probe in probes:
            response, took = _timed(lambda: _send(
                session, target, probe.pairs, probe.files, path=probe.path, query=probe.query))
            if took > SLOW_SECONDS:
                print(f"[fuzz] slow: {took:.1f} s at {target.method} {target.url} {probe.what}")
            sent += 1
            tally = spent.setdefault(sweep, [0, 0.0])
            tally[0], tally[1] = tally[0] + 1, tally[1] + took
            _check(response, target, probe.what, problems, redirect=probe.redirect)
            response.close()
    return sent


def _fuzz_target(session: Session, target: Target, problems: list[str], seed: int,
                 deadline: float) -> int:
    """Random combinations (hypothesis): EXAMPLES for this target, if the role's time is not up
    (checked per target: hypothesis needs each example to draw the same way when it replays)."""
    sent = 0
    if time.monotonic() > deadline:
        return 0

    @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), derandomize=False)
    @given(st.data())
    def run(data):
        nonlocal sent
        pairs, files = data.draw(form_payload(target, session.csrf))
        response, took = _timed(lambda: _send(session, target, pairs, files))
        if took > SLOW_SECONDS:
            print(f"[fuzz] slow: {took:.1f} s at {target.method} {target.url} "
                  f"{_summary(pairs, files)}")
        sent += 1
        _check(response, target, _summary(pairs, files), problems)
        response.close()

    hypothesis_seed(seed)(run)()  # reproducible: the seed is printed
    return sent


def _oversize(session: Session, target: Target, problems: list[str]) -> int:
    if target.method == "GET":
        return 0
    response = _send(session, target, [], [], oversize=True)
    _check(response, target, "(17 MB body)", problems)
    if response.status_code != 413:
        problems.append(f"{response.status_code} (not 413) for a 17 MB body at "
                        f"{target.method} {target.url}")
    return 1


def _every_route_with_an_id(app, session: Session, problems: list[str]) -> int:
    """Routes the crawl did not reach too: every variable part of every address, at once,
    replaced by each hostile path value, with each method the route takes."""
    sent = 0
    for rule in app.url_map.iter_rules():
        if not rule.arguments or rule.endpoint == "static" or rule.endpoint in NOT_FUZZED \
                or rule.rule.startswith(Crawler.SKIP_PREFIXES):
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            for value in PATH_EDGES:
                path = re.sub(r"<[^>]+>", value, rule.rule)
                target = Target(method, f"http://localhost{path}", [], endpoint=rule.endpoint)
                response = _send(session, target, [("csrf_token", session.csrf)], [])
                sent += 1
                _check(response, target, "(every route)", problems)
                response.close()
    return sent


@pytest.mark.parametrize("role", ROLES)
def test_fuzz_every_form_a_role_can_reach(app, services, role):
    seed = int(SEED) if SEED else (0 if EXAMPLES == DEFAULT_EXAMPLES else random.randrange(2**32))
    customer = _seed_world()
    session = Session(app, role, customer)
    crawler = Crawler(app, session.client, max_pages=MAX_PAGES)
    seeds = SEEDS + [f"/book/hires/{h.reference}" for h in _hires_of(customer)] + \
        [f"/pay/{h.reference}" for h in _hires_of(customer)]
    targets, pages = crawler.crawl(seeds)
    targets = [t for t in targets if t.endpoint not in NOT_FUZZED]
    _assert_found_the_forms_of(role, targets)
    rules = {rule.endpoint: rule for rule in app.url_map.iter_rules()}

    problems: list[str] = []
    started = time.monotonic()
    swept = _every_route_with_an_id(app, session, problems)
    spent = {"every route's address": [swept, time.monotonic() - started]}
    targets = sorted(targets, key=lambda t: (t.endpoint, t.method))
    per_target = []
    for target in targets:
        began = time.monotonic()
        swept += _sweep_target(session, target, rules.get(target.endpoint), problems, spent)
        per_target.append((time.monotonic() - began, target.method, target.endpoint))
        began = time.monotonic()
        oversize = _oversize(session, target, problems)
        swept += oversize
        tally = spent.setdefault("17 MB bodies", [0, 0.0])
        tally[0], tally[1] = tally[0] + oversize, tally[1] + time.monotonic() - began
        if not session.still_signed_in():
            session.sign_in()
    sweep_seconds = time.monotonic() - started
    deadline, randomly = time.monotonic() + SECONDS, 0
    for i, target in enumerate(targets):
        randomly += _fuzz_target(session, target, problems, seed + i, deadline)
        if not session.still_signed_in():
            session.sign_in()
    print(f"\n[fuzz] {role}: {len(pages)} pages, {len(targets)} targets; sweeps: {swept} requests "
          f"in {sweep_seconds:.0f} s; random: {randomly} requests in "
          f"{time.monotonic() - started - sweep_seconds:.0f} s (seed {seed}, up to {EXAMPLES} "
          f"examples each, {SECONDS:.0f} s budget)")
    print("[fuzz]   slowest targets: " + "; ".join(
        f"{method} {endpoint} {seconds:.1f} s" for seconds, method, endpoint in sorted(per_target)[-5:]))
    print("[fuzz]   sweeps: " + "; ".join(f"{name} {n} in {seconds:.1f} s"
                                          for name, (n, seconds) in spent.items()))
    for target in targets:
        print(f"[fuzz]   {target.method:4} {target.endpoint:36} "
              f"{','.join(sorted({f.name for f in target.fields}))[:90]}")
    db.session.expire_all()
    problems += stored_rule_violations(app)
    assert problems == [], "\n".join(sorted(set(problems)))


def _hires_of(customer):
    from app.models import Hire
    return db.session.scalars(select(Hire).where(Hire.customer_id == customer.id)).all()


def _assert_found_the_forms_of(role: str, targets: list[Target]):
    """The crawl must reach each role's main forms, or the fuzzer proves little."""
    found = {t.endpoint for t in targets}
    expected = {
        "anonymous": {"accounts.sign_in", "accounts.sign_up", "booking.search"},
        "customer": {"booking.search", "booking.confirm", "accounts.profile",
                     "accounts.change_password", "booking.cancel"},
        "staff": {"counter.board", "fleet.cars"},
        "admin": {"fleet.cars", "admin.invite"},
    }[role]
    missing = expected - found
    assert not missing, f"the crawl did not reach {missing}; it found {sorted(found)}"


# --- what was stored ---------------------------------------------------------------------------

def stored_rule_violations(app) -> list[str]:
    """Rows that break a model rule the database itself does not enforce."""
    cfg = app.config
    this_year = datetime.now(timezone.utc).year
    checks = {
        "email not normalised (lower-case, no spaces, one @)":
            "SELECT email FROM users WHERE email <> lower(email) OR email <> trim(email) "
            "OR email NOT LIKE '%_@_%' OR email LIKE '%@%@%'",
        "blank name": "SELECT id FROM users WHERE trim(full_name) = ''",
        "VAT outside 0..total": "SELECT id FROM hires WHERE vat_pence < 0 OR vat_pence > total_pence",
        "car year out of range":
            f"SELECT id, year FROM cars WHERE year < {int(cfg['CAR_OLDEST_YEAR'])} OR year > {this_year + 1}",
        "odometer out of range":
            f"SELECT id FROM cars WHERE odometer_miles < 0 OR odometer_miles > {int(cfg['CAR_MAX_ODOMETER_MILES'])}",
        "car rate out of range":
            "SELECT id FROM cars WHERE daily_rate_override_pence IS NOT NULL AND "
            f"(daily_rate_override_pence <= 0 OR daily_rate_override_pence > {int(cfg['CAR_MAX_DAILY_RATE_PENCE'])})",
        "class rate out of range":
            f"SELECT id FROM car_classes WHERE daily_rate_pence > {int(cfg['CAR_MAX_DAILY_RATE_PENCE'])}",
        "negative money": " UNION ALL ".join(
            f"SELECT '{t}.{c}' FROM {t} WHERE {c} < 0" for t, c in _money_columns()),
    }
    problems = []
    for rule, sql in checks.items():
        rows = db.session.execute(text(sql)).all()
        if rows:
            problems.append(f"stored: {rule}: {[tuple(r) for r in rows[:5]]}")
    # Durations: through the ORM, which gives aware datetimes on SQLite too.
    from app.models import Hire, MaintenanceBlock
    for hire in db.session.scalars(select(Hire).where(Hire.state.in_(("held", "confirmed")))):
        if hire.end_at - hire.start_at > timedelta(days=cfg["MAX_HIRE_DAYS"]):
            problems.append(f"stored: hire {hire.reference} longer than MAX_HIRE_DAYS")
    for block in db.session.scalars(select(MaintenanceBlock)):
        if block.ends_at - block.starts_at > timedelta(days=cfg["MAINTENANCE_MAX_DAYS"]):
            problems.append(f"stored: maintenance block {block.id} longer than MAINTENANCE_MAX_DAYS")
    problems += _string_violations()
    return problems


def _money_columns():
    for table in db.metadata.sorted_tables:
        for column in table.columns:
            if column.name.endswith("_pence"):
                yield table.name, column.name


def _string_violations() -> list[str]:
    """Control characters in one-line text, and strings longer than their column."""
    problems = []
    for table in db.metadata.sorted_tables:
        if table.name in MACHINE_TABLES:
            continue
        columns = [c for c in table.columns if isinstance(c.type, String)]
        if not columns:
            continue
        for row in db.session.execute(select(*columns)).all():
            for column, value in zip(columns, row):
                if not isinstance(value, str):
                    continue
                if column.type.length and len(value) > column.type.length:
                    problems.append(f"stored: {table.name}.{column.name} longer than "
                                    f"{column.type.length} ({len(value)} chars)")
                bad = CONTROL_CHARS if column.name in MULTILINE_COLUMNS else re.compile(
                    r"[\x00-\x1f\x7f]")
                if bad.search(value):
                    problems.append(f"stored: control character in {table.name}.{column.name}: "
                                    f"{value[:60]!r}")
    return problems


def test_the_stored_rule_checks_catch_what_they_look_for(app):
    """The post-run checks above can fail: rows breaking each kind of rule are reported."""
    car = factories.make_car()
    factories.make_user(email="Mixed.Case@Example.com")
    factories.make_user(full_name="tab\tin name")
    hire = factories.make_hire(car=car)
    hire.vat_pence = hire.total_pence + 1
    car.year = 1850
    db.session.commit()
    found = "\n".join(stored_rule_violations(app))
    for rule in ("email not normalised", "VAT outside 0..total", "car year out of range",
                 "control character in users.full_name"):
        assert rule in found, rule


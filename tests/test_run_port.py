"""Issue 14 §6: `PORT=5050 ./scripts/run` hands out URLs on 5050, not 5000.

The portal is started the way `./scripts/run` starts it (its last step, `scripts/serve`: `flask
run` on PORT, development settings, no PUBLIC_BASE_URL, the Stripe stand-in started in-process)
on a free port. A customer pays on the stand-in's hosted Checkout page and never comes back to
the portal: only the stand-in's signed webhook, posted to the served port, can confirm the
booking. The confirmation email's link carries that port too.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from app.extensions import db
from app.models import Hire, HireState, OutboundEmail, Payment, StripeEvent, utcnow
from tests import factories
from tests.conftest import CSRF_RE

ROOT = Path(__file__).resolve().parent.parent
STARTUP_SECONDS = 60
WAIT_SECONDS = 30
CARD_OK = "4242424242424242"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(what: str, probe, seconds: float = WAIT_SECONDS, server=None):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        db.session.rollback()  # see what the served process committed
        found = probe()
        if found:
            return found
        if server is not None and server.poll() is not None:
            break
        time.sleep(0.2)
    pytest.fail(f"{what} did not happen within {seconds} s")


@pytest.fixture
def served(app, _schema, tmp_path):
    """The portal as `./scripts/run` serves it, on a free PORT, sharing the test database."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FLASK_", "STRIPE_"))
           and k not in ("PUBLIC_BASE_URL", "REDIS_URL", "ACME_ENV", "SECRET_KEY")}
    # No ACME_ENV: scripts/serve itself makes a local run development (unset means production).
    env.update(PORT=str(port), DATABASE_URL=_schema, MAIL_BACKEND="outbox",
               FLASK_STRIPE_DEV_STANDIN_PORT="0", FLASK_DEV_TICK_SECONDS="0",
               FLASK_UPLOAD_DIR=str(tmp_path / "uploads"))
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen([str(ROOT / "scripts" / "serve")], cwd=ROOT, env=env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def answers():
        try:
            return requests.get(f"{base}/healthz", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        _wait_for("the server answering", answers, STARTUP_SECONDS, server)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)
        log.close()
        print((tmp_path / "serve.log").read_text()[-3000:])


def _post(session: requests.Session, base: str, path: str, data: dict) -> requests.Response:
    page = session.get(base + path, timeout=10)
    token = next(a or b for a, b in CSRF_RE.findall(page.text))
    return session.post(base + path, data={"csrf_token": token, **data}, allow_redirects=False,
                        timeout=10)


def test_stand_in_webhook_reaches_the_port_the_run_command_serves(served):
    customer = factories.make_user("customer")
    hire = factories.make_hire(customer=customer, state=HireState.HELD)
    hire.hold_expires_at = utcnow() + timedelta(minutes=15)
    db.session.commit()
    browser = requests.Session()
    assert _post(browser, served, "/account/sign-in",
                 {"email": customer.email, "password": factories.PASSWORD}).status_code == 303
    started = _post(browser, served, f"/pay/{hire.reference}/card", {"amount_pence": hire.total_pence})
    assert started.status_code == 303, started.text

    checkout_url = _wait_for("the Checkout Session", lambda: next(
        (p.details["checkout_url"] for p in db.session.scalars(select(Payment).where(
            Payment.hire_id == hire.id)) if p.details.get("checkout_url")), None))
    # The customer pays on the stand-in's page and closes the tab: no return to the portal.
    paid = requests.post(checkout_url, data={"cardnumber": CARD_OK, "exp": "12 / 34", "cvc": "123"},
                         allow_redirects=False, timeout=10)
    assert paid.status_code == 303
    assert paid.headers["Location"].startswith(f"{served}/pay/{hire.reference}/return")

    _wait_for("a webhook reaching the served port",
              lambda: db.session.scalars(select(StripeEvent)).first())
    _wait_for("the booking confirmed by the webhook",
              lambda: db.session.get(Hire, hire.id).state == "confirmed")
    email = _wait_for("the confirmation email", lambda: db.session.scalars(
        select(OutboundEmail).where(OutboundEmail.idempotency_key == f"hire:{hire.id}:confirmed")).first())
    assert re.findall(r"http://\S+", email.body_text) == [f"{served}/book/hires/{hire.reference}"]

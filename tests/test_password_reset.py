"""Forgotten password: the link goes out by real SMTP, works once, and expires.

The app's own smtplib client talks to an aiosmtpd server on a loopback port
(tests/smtp_server.py); the link is read from the email that server received.
"""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import OutboundEmail
from tests import factories
from tests.conftest import AuthActions, post_form
from tests.smtp_server import free_port, smtp_server  # noqa: F401  (fixture)

FORGOT_URL = "/account/forgot-password"
NEW_PASSWORD = "violet-Lantern-harbour-73"
SAME_ANSWER = "If an account uses that email, we have sent it a link to reset the password."
LINK_RE = re.compile(r"https?://\S+/account/reset/\S+")


@pytest.fixture
def mail_app(app, make_app, smtp_server):  # noqa: F811
    """The portal sending mail by SMTP to the local server (`app` empties the tables after)."""
    built = make_app(MAIL_BACKEND="smtp", SMTP_HOST=smtp_server.host, SMTP_PORT=smtp_server.port)
    with built.app_context():
        yield built
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def mail_client(mail_app):
    return mail_app.test_client()


class FrozenClock:
    """Stands in for the `time` module inside itsdangerous, which signs and checks tokens."""

    def __init__(self, now: float):
        self.now = now

    def time(self) -> float:
        return self.now


def ask_for_reset(client, email: str):
    return post_form(client, FORGOT_URL, {"email": email})


def reset_path_from(message) -> str:
    body = message.get_body(preferencelist=("plain",)).get_content()
    links = LINK_RE.findall(body)
    assert len(links) == 1, body
    return urlsplit(links[0]).path


def set_password(client, path: str, password: str = NEW_PASSWORD, confirm: str | None = None,
                 **kwargs):
    return post_form(client, path, {"password": password,
                                    "confirm_password": password if confirm is None else confirm},
                     **kwargs)


def can_sign_in(app, email: str, password: str) -> bool:
    return AuthActions(app.test_client()).sign_in(email, password).status_code == 303


def emails() -> list[OutboundEmail]:
    db.session.expire_all()
    return db.session.scalars(select(OutboundEmail).order_by(OutboundEmail.id)).all()


def test_reset_link_arrives_by_smtp_and_works_once(mail_app, mail_client, smtp_server):  # noqa: F811
    user = factories.make_user(email="jane@example.com")
    response = ask_for_reset(mail_client, "JANE@example.com")
    assert response.status_code == 303 and response.headers["Location"] == "/account/sign-in"
    assert SAME_ANSWER in mail_client.get("/account/sign-in").get_data(as_text=True)

    [message] = smtp_server.messages
    assert message["To"] == "jane@example.com"
    assert smtp_server.envelopes[0][1] == ["jane@example.com"]
    assert message["Subject"] == "Reset your ACME Rentals password"
    [row] = emails()
    assert (row.state, row.attempts) == ("sent", 1)
    path = reset_path_from(message)
    # The link is signed, not encrypted: it must not carry what keeps the user signed in.
    import base64
    payload = path.rsplit("/", 1)[1].split(".")[0]
    decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    db.session.refresh(user)
    assert user.session_token not in decoded

    page = mail_client.get(path)
    assert page.status_code == 200 and 'name="password"' in page.get_data(as_text=True)
    response = set_password(mail_client, path)
    assert response.status_code == 303
    assert urlsplit(response.headers["Location"]).path == "/account/sign-in"
    assert "Your password is reset" in mail_client.get("/account/sign-in").get_data(as_text=True)

    assert can_sign_in(mail_app, user.email, NEW_PASSWORD)
    assert not can_sign_in(mail_app, user.email, factories.PASSWORD)

    # The same link a second time is refused, and cannot set the password again.
    again = mail_client.get(path)
    assert again.status_code == 400
    assert "already been used" in again.get_data(as_text=True)
    response = set_password(mail_client, path, "another-Sturdy-pass-81", token_from="/account/sign-in")
    assert response.status_code == 400
    assert can_sign_in(mail_app, user.email, NEW_PASSWORD)


def test_reset_ends_sessions_signed_in_elsewhere(mail_app, mail_client, smtp_server):  # noqa: F811
    user = factories.make_user()
    elsewhere = mail_app.test_client()
    assert AuthActions(elsewhere).sign_in(user.email).status_code == 303
    ask_for_reset(mail_client, user.email)
    assert set_password(mail_client, reset_path_from(smtp_server.messages[0])).status_code == 303
    response = elsewhere.get("/account/profile")
    assert response.status_code == 302 and "/account/sign-in" in response.headers["Location"]


def test_reset_link_expires(mail_app, mail_client, smtp_server, monkeypatch):  # noqa: F811
    user = factories.make_user()
    clock = FrozenClock(time.time())
    monkeypatch.setattr("itsdangerous.timed.time", clock)
    ask_for_reset(mail_client, user.email)
    path = reset_path_from(smtp_server.messages[0])
    max_age = mail_app.config["PASSWORD_RESET_MAX_AGE_SECONDS"]

    clock.now += max_age - 1  # just in time: still works
    assert mail_client.get(path).status_code == 200

    clock.now += 2  # now too late
    response = mail_client.get(path)
    assert response.status_code == 400
    assert "expired" in response.get_data(as_text=True)
    response = set_password(mail_client, path, token_from="/account/sign-in")
    assert response.status_code == 400
    assert can_sign_in(mail_app, user.email, factories.PASSWORD)
    assert not can_sign_in(mail_app, user.email, NEW_PASSWORD)


def test_email_says_how_long_the_link_lasts(mail_app, mail_client, smtp_server):  # noqa: F811
    user = factories.make_user()
    ask_for_reset(mail_client, user.email)
    body = smtp_server.messages[0].get_body(preferencelist=("plain",)).get_content()
    minutes = mail_app.config["PASSWORD_RESET_MAX_AGE_SECONDS"] // 60
    assert f"within {minutes} minutes" in body


@pytest.mark.parametrize("token", ["not-a-token", "eyJ1aWQiOjF9.ZZZZZZ.abcdefghijklmnop"])
def test_a_made_up_link_is_refused(mail_client, token):
    response = mail_client.get(f"/account/reset/{token}")
    assert response.status_code == 400
    assert "not valid" in response.get_data(as_text=True)


B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _flip_high_bit(char: str) -> str:
    """Another base64url digit that changes the decoded signature: the last digit's low bits
    are padding, so swapping "A" for "B" there (as this test once did) left it valid 1 time in 16."""
    return B64URL[B64URL.index(char) ^ 0b100000]


def test_a_tampered_link_is_refused(mail_app, mail_client, smtp_server):  # noqa: F811
    user = factories.make_user()
    ask_for_reset(mail_client, user.email)
    path = reset_path_from(smtp_server.messages[0])
    tampered = path[:-1] + _flip_high_bit(path[-1])
    assert mail_client.get(tampered).status_code == 400
    assert set_password(mail_client, tampered, token_from="/account/sign-in").status_code == 400
    assert can_sign_in(mail_app, user.email, factories.PASSWORD)


def test_weak_new_password_is_refused_and_the_link_still_works(mail_app, mail_client,
                                                                smtp_server):  # noqa: F811
    user = factories.make_user()
    ask_for_reset(mail_client, user.email)
    path = reset_path_from(smtp_server.messages[0])
    response = set_password(mail_client, path, "password1234")
    assert response.status_code == 422
    assert 'id="password-error"' in response.get_data(as_text=True)
    response = set_password(mail_client, path, NEW_PASSWORD, NEW_PASSWORD + "x")
    assert response.status_code == 422
    assert set_password(mail_client, path).status_code == 303
    assert can_sign_in(mail_app, user.email, NEW_PASSWORD)


def test_new_password_made_of_your_email_is_refused(mail_app, mail_client,
                                                     smtp_server):  # noqa: F811
    user = factories.make_user(email="jane.customer@example.com")
    ask_for_reset(mail_client, user.email)
    path = reset_path_from(smtp_server.messages[0])
    response = set_password(mail_client, path, "jane.customer@example.com")
    assert response.status_code == 422
    assert re.search(r'id="password-error"><p class="error">That password is too easy to guess',
                     response.get_data(as_text=True))
    assert can_sign_in(mail_app, user.email, factories.PASSWORD)


def test_unknown_email_gets_the_same_answer_and_nothing_is_sent(mail_app, smtp_server):  # noqa: F811
    factories.make_user(email="jane@example.com")
    known_client, unknown_client = mail_app.test_client(), mail_app.test_client()
    known = ask_for_reset(known_client, "jane@example.com")
    unknown = ask_for_reset(unknown_client, "nobody@example.com")
    assert (known.status_code, known.headers["Location"]) == (
        unknown.status_code, unknown.headers["Location"])
    known_page = known_client.get(known.headers["Location"]).get_data(as_text=True)
    unknown_page = unknown_client.get(unknown.headers["Location"]).get_data(as_text=True)
    assert SAME_ANSWER in known_page and SAME_ANSWER in unknown_page
    strip = re.compile(r'(value=|"X-CSRFToken": )"[^"]+"')
    assert strip.sub("", known_page) == strip.sub("", unknown_page)
    assert [m["To"] for m in smtp_server.messages] == ["jane@example.com"]
    assert [e.to_address for e in emails()] == ["jane@example.com"]


def test_deactivated_account_gets_no_email(mail_app, mail_client, smtp_server):  # noqa: F811
    factories.make_user(email="gone@example.com", active=False)
    response = ask_for_reset(mail_client, "gone@example.com")
    assert response.status_code == 303
    assert smtp_server.messages == [] and emails() == []


def test_bad_email_is_shown_beside_the_field(mail_client, smtp_server):  # noqa: F811
    response = ask_for_reset(mail_client, "jane@")
    assert response.status_code == 422
    assert re.search(r'id="email-error"><p class="error">Enter an email address', response.get_data(as_text=True))
    assert smtp_server.messages == []


def test_reset_requests_are_rate_limited(mail_app, mail_client, smtp_server):  # noqa: F811
    limit = int(mail_app.config["PASSWORD_RESET_RATE_LIMIT"].split()[0])
    for n in range(limit):
        assert ask_for_reset(mail_client, f"nobody{n}@example.com").status_code == 303
    assert ask_for_reset(mail_client, "nobody@example.com").status_code == 429


def test_smtp_server_down_marks_the_email_failed_and_the_page_still_answers(app, make_app):
    down = make_app(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=free_port())
    with down.app_context():
        factories.make_user(email="jane@example.com")
        client = down.test_client()
        response = ask_for_reset(client, "jane@example.com")
        assert response.status_code == 303
        assert SAME_ANSWER in client.get(response.headers["Location"]).get_data(as_text=True)
        [row] = emails()
        assert row.state == "failed"
        assert row.attempts == down.config["JOB_MAX_RETRIES"] + 1  # bounded retries, all counted
        assert "ConnectionRefusedError" in row.last_error
        assert row.sent_at is None
        db.session.remove()
        db.engine.dispose()
    assert db.session.scalar(select(func.count()).select_from(OutboundEmail)) == 1

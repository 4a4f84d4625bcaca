"""Sign-up while Redis (the job queue) is unreachable (issue 15 §2): the account is created
and its owner signed in, so the answer says so, and the licence check asked for on the form
waits for the scheduler's tick instead of turning the page into a 503."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from app.extensions import db
from app.jobs import queue
from app.jobs.booking import tick
from app.models import LicenceCheck, User, utcnow
from tests.conftest import post_form
from tests.smtp_server import free_port
from tests.test_accounts import PROFILE_URL, SIGN_UP_URL, sign_up_data
from tests.test_job_recovery import queue_name  # noqa: F401  (a fixture)
from tests.test_licence import GOOD_CODE


def test_sign_up_with_a_licence_check_while_the_queue_is_down_says_what_happened(app, make_app):
    down = make_app(JOBS_MODE="rq", REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    browser = down.test_client()
    response = post_form(browser, SIGN_UP_URL, sign_up_data(app, check_code=GOOD_CODE))
    assert response.status_code == 303, response.get_data(as_text=True)
    assert response.headers["Location"] == PROFILE_URL
    page = browser.get(PROFILE_URL)
    body = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Welcome, Jane Customer. Your account is ready." in body
    assert "Checking…" in body  # the licence panel: the check is waiting, not lost
    user = db.session.scalar(select(User).where(User.email == "jane@example.com"))
    check = db.session.scalar(select(LicenceCheck).where(LicenceCheck.user_id == user.id))
    assert check.status == "pending" and user.profile.licence_status == "pending"


@pytest.mark.postgres  # RQ on a real Redis
def test_the_check_left_by_the_outage_is_queued_by_the_tick_once_redis_is_back(
        app, make_app, queue_name):
    down = make_app(JOBS_MODE="rq", REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    response = post_form(down.test_client(), SIGN_UP_URL, sign_up_data(app, check_code=GOOD_CODE))
    assert response.status_code == 303
    up = make_app(JOBS_MODE="rq", JOBS_QUEUE_NAME=queue_name)
    with up.app_context():
        assert tick((utcnow() + timedelta(minutes=3)).isoformat())["requeued"] == 1
        assert queue().count == 1

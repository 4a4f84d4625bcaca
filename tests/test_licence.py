"""Driving-licence verification end to end: the pages, the job, the real `requests` client and
the stand-in service over HTTP (devtools/licence_standin), for every outcome.

Jobs run inline here (JOBS_MODE=sync), so a check posted from a page is answered before the
response; the browser test shows the "Checking…" state turning into Verified.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from datetime import date, datetime, timedelta, timezone

import pytest
import requests
from sqlalchemy import func, select

from app import licence
from app.extensions import db
from app.integrations import licence as licence_client
from app.licence.jobs import check_licence
from app.models import AuditRecord, LicenceCheck, LicenceStatus, User
from devtools.licence_standin import LicenceStandIn
from tests import factories
from tests.conftest import post_form

GOOD_CODE = "Ab12Cd34"
HX = {"HX-Request": "true"}
READ_TIMEOUT = 0.3
# A service that keeps the client waiting far past its read timeout: 3 tries x 0.3 s, while
# waiting for one answer would take this long (wide, so a loaded machine cannot blur the two).
SLOW_SERVICE_SECONDS = 10.0


@pytest.fixture
def standin():
    with LicenceStandIn(slow_seconds=READ_TIMEOUT * 2, pause_seconds=0.1) as server:
        yield server


@pytest.fixture
def service(app, standin):
    """The app pointed at the stand-in, with short timeouts so failure modes are quick."""
    app.config.update(LICENCE_API_URL=standin.url, LICENCE_API_KEY=standin.api_key,
                      LICENCE_CONNECT_TIMEOUT_SECONDS=1.0, LICENCE_READ_TIMEOUT_SECONDS=READ_TIMEOUT,
                      LICENCE_MAX_RETRIES=2, LICENCE_RETRY_BACKOFF_SECONDS=0.01)
    return standin


def unchecked_customer(**fields) -> User:
    return factories.make_user("customer", licence_status=LicenceStatus.UNCHECKED.value, **fields)


def only_check(user: User) -> LicenceCheck:
    return db.session.scalars(select(LicenceCheck).where(LicenceCheck.user_id == user.id)).one()


def check_count() -> int:
    return db.session.scalar(select(func.count(LicenceCheck.id)))


def submit_code(client, code: str, **kwargs):
    return post_form(client, "/account/licence", {"check_code": code}, **kwargs)


def status_fragment(client) -> str:
    response = client.get("/account/licence/status", headers=HX)
    assert response.status_code == 200
    return response.get_data(as_text=True)


# --- the outcomes, through the page ------------------------------------------------------------

def test_verified_end_to_end(client, auth, service):
    user = auth.sign_in_as("customer", licence_status=LicenceStatus.UNCHECKED.value)
    response = submit_code(client, "Ab12 Cd34")
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/account/licence")
    page = client.get("/account/licence").get_data(as_text=True)
    assert "Verified" in page and "every 1s" not in page  # final: the fragment stops polling
    check = only_check(user)
    assert (check.status, check.reason_code) == ("verified", "verified")
    assert "B" in check.categories and check.penalty_points == 0 and check.disqualified is False
    assert check.valid_to > date.today() and check.completed_at is not None
    assert check.raw_response["driver"]["drivingLicenceNumber"] == "CUSTO907150J99AB"
    assert user.profile.licence_status == "verified" and user.profile.licence_checked_at
    [request] = service.requests
    assert request == {"path": "/v1/driving-licence/checks", "licence_number": "CUSTO907150J99AB",
                       "check_code": GOOD_CODE, "idempotency_key": check.idempotency_key,
                       "api_key": service.api_key}


REFUSALS = [
    ("EXPIRED1", "expired", "Your driving licence has expired"),
    ("DISQUAL1", "disqualified", "disqualified from driving"),
    ("POINTS12", "too_many_points", "Your licence has 12 penalty points; we can hire to drivers with at most 6"),
    ("NOCATB01", "no_category", "does not include full category B"),
    ("NEWDRIV1", "not_held_long_enough", "held a full category B licence for at least 1 year"),
    ("WRONGCDE", "check_code_invalid", "That check code is wrong or has expired"),
    ("OLDCODE1", "check_code_expired", "That check code has expired"),
]


@pytest.mark.parametrize(("code", "reason", "message"), REFUSALS, ids=[r[1] for r in REFUSALS])
def test_each_refusal_reason_is_shown(client, auth, service, code, reason, message):
    user = auth.sign_in_as("customer", licence_status=LicenceStatus.UNCHECKED.value)
    response = submit_code(client, code, headers=HX)
    assert response.status_code == 200 and response.headers["HX-Trigger"] == "licence-check-started"
    fragment = status_fragment(client)
    assert "Refused" in fragment and message in fragment
    assert "every 1s" not in fragment
    check = only_check(user)
    assert (check.status, check.reason_code) == ("refused", reason)
    assert user.profile.licence_status == "refused"
    assert len(service.requests) == 1  # a 4xx is never retried
    allowed, why = licence.can_confirm_booking(user, *hire_period(days_from_now=10))
    assert not allowed and message in why


def test_driver_under_the_minimum_age_is_refused(app, service):
    app.config["LEGAL_DRIVING_AGE"] = 60  # Jane, born 1990, is then too young
    check = run_check(unchecked_customer(), GOOD_CODE)
    assert (check.status, check.reason_code) == ("refused", "too_young")
    assert check.message == "You must be at least 60 to hire a car."


def test_refusal_chosen_by_licence_number_too(app, service):
    # "Sam Expiry", born 1985-03-02: the stand-in picks the outcome from the surname part.
    user = unchecked_customer(full_name="Sam Expiry")
    user.profile.licence_number, user.profile.date_of_birth = "EXPIR803025S99AB", date(1985, 3, 2)
    db.session.commit()
    assert run_check(user, GOOD_CODE).reason_code == "expired"


def test_a_disqualification_that_has_ended_does_not_refuse(app):
    from devtools.licence_standin import licence_record
    today = date(2030, 1, 10)
    body = licence_record("CUSTO907150J99AB", "disqualified", today)
    record = licence_client.parse_record(body, "CUSTO907150J99AB")
    assert licence.refusal_for(record, born=date(1990, 7, 15), today=today)[0] == "disqualified"
    body["licence"]["status"] = "Valid"
    body["disqualification"] = {"disqualifiedUntil": "2029-12-31", "offenceCode": "DR10"}
    record = licence_client.parse_record(body, "CUSTO907150J99AB")
    assert licence.refusal_for(record, born=date(1990, 7, 15), today=today) is None


def test_demo_customer_is_verified_by_the_standin(app, service):
    from app.demo import DEMO_LICENCE, load_demo
    load_demo()
    jane = db.session.scalar(select(User).where(User.email == "customer@demo.acme"))
    assert jane.profile.licence_status == "verified"  # out of the box, before any check
    check = run_check(jane, "DEMO2026")
    assert (check.licence_number, check.status) == (DEMO_LICENCE, "verified")
    assert jane.profile.licence_status == "verified"


# --- the service misbehaving ---------------------------------------------------------------

def test_timeout_is_retried_then_says_try_again_later(client, auth, service):
    user = auth.sign_in_as("customer", licence_status=LicenceStatus.UNCHECKED.value)
    service.slow_seconds = SLOW_SERVICE_SECONDS
    started = time.monotonic()
    submit_code(client, "SLOWSLOW")
    elapsed = time.monotonic() - started
    keys = {r["idempotency_key"] for r in service.requests}
    assert len(service.requests) == 3 and len(keys) == 1  # one try + two retries, one check
    # Bounded by the timeouts, not the slow server: one slow answer awaited would take this long
    # on its own (a bound on CPU time would fail on a loaded machine without meaning anything).
    assert elapsed < service.slow_seconds, f"took {elapsed:.1f} s"
    check = only_check(user)
    assert (check.status, check.reason_code) == ("failed", "service_unavailable")
    fragment = status_fragment(client)
    assert "Please try again later" in fragment and "every 1s" not in fragment
    allowed, why = licence.can_confirm_booking(user, *hire_period(days_from_now=10))
    assert not allowed and "try again later" in why


def test_a_timeout_then_an_answer_is_verified(app, service):
    check = run_check(unchecked_customer(), "SLOWONCE")
    assert check.status == "verified"
    assert len(service.requests) == 2
    assert {r["idempotency_key"] for r in service.requests} == {check.idempotency_key}


def test_500_then_success_is_verified(app, service):
    check = run_check(unchecked_customer(), "FLAKY500")
    assert check.status == "verified"
    assert len(service.requests) == 2


def test_always_500_gives_up_after_the_retries(app, service):
    check = run_check(unchecked_customer(), "FAIL500X")
    assert (check.status, check.reason_code) == ("failed", "service_unavailable")
    assert check.message == licence.UNAVAILABLE_MESSAGE
    assert len(service.requests) == 3


def test_malformed_json_is_handled(app, service):
    user = unchecked_customer()
    check = run_check(user, "BADJSON1")
    assert (check.status, check.reason_code) == ("failed", "bad_response")
    assert check.message == licence.UNAVAILABLE_MESSAGE
    assert len(service.requests) == 1  # a 200 is an answer: nothing to retry
    assert user.profile.licence_status == "refused"
    assert user.profile.licence_refusal_reason == licence.UNAVAILABLE_MESSAGE


def test_wrong_api_key_is_not_retried_and_reads_as_unavailable(app, service):
    app.config["LICENCE_API_KEY"] = "not-the-key"
    check = run_check(unchecked_customer(), GOOD_CODE)
    assert (check.status, check.reason_code) == ("failed", "service_unavailable")
    assert len(service.requests) == 1


def test_unreachable_service_reads_as_unavailable(app, service):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.config["LICENCE_API_URL"] = f"http://127.0.0.1:{port}"
    check = run_check(unchecked_customer(), GOOD_CODE)
    assert (check.status, check.reason_code) == ("failed", "service_unavailable")


# --- refused before any call -----------------------------------------------------------------

@pytest.mark.parametrize("number", ["X" * 5000, "CUSTO907150J99A", "CUSTO' OR 1=1--X", "<script>x</scr"])
def test_client_refuses_a_forged_licence_number_without_calling(app, service, number):
    with pytest.raises(licence_client.InvalidLicenceRequest):
        licence_client.client_from_config().check(number, GOOD_CODE, idempotency_key="k1")
    assert service.requests == []


@pytest.mark.parametrize("code", ["A" * 5000, "abc", "Ab12Cd3!", "Ab12\x00d34"])
def test_client_refuses_a_forged_check_code_without_calling(app, service, code):
    with pytest.raises(licence_client.InvalidLicenceRequest):
        licence_client.client_from_config().check("CUSTO907150J99AB", code, idempotency_key="k1")
    assert service.requests == []


@pytest.mark.parametrize(("code", "message"), [
    ("A" * 5000, "A check code has 8 characters."),
    ("<b>1234</b>", "Enter the 8-character check code"),
    ("", "Enter the check code from gov.uk."),
])
def test_check_code_form_refuses_bad_codes(client, auth, service, code, message):
    auth.sign_in_as("customer", licence_status=LicenceStatus.UNCHECKED.value)
    response = submit_code(client, code, headers=HX)
    assert response.status_code == 422 and message in response.get_data(as_text=True)
    assert check_count() == 0 and service.requests == []


def test_forged_licence_number_on_the_profile_is_refused_before_any_call(client, auth, service):
    user = auth.sign_in_as("customer", licence_status=LicenceStatus.UNCHECKED.value)
    user.profile.licence_number = "CUSTO'--;DROP99X"  # written behind the forms' back
    db.session.commit()
    response = submit_code(client, GOOD_CODE)
    assert response.status_code == 422
    assert "licence number on your account is not valid" in response.get_data(as_text=True)
    assert check_count() == 0 and service.requests == []


def test_oversized_licence_number_at_sign_up_is_refused_before_any_call(client, service):
    from tests.test_smoke import SIGN_UP
    response = post_form(client, "/account/sign-up",
                         {**SIGN_UP, "licence_number": "CUSTO" * 1000, "check_code": GOOD_CODE})
    assert response.status_code == 422
    assert "16 characters" in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count(User.id))) == 0
    assert service.requests == []


# --- sign-up, htmx and the self-polling fragment -----------------------------------------------

def test_sign_up_with_a_check_code_checks_the_licence(client, service):
    from tests.test_smoke import SIGN_UP
    response = post_form(client, "/account/sign-up", {**SIGN_UP, "check_code": GOOD_CODE})
    assert response.status_code == 303
    page = client.get("/account/profile").get_data(as_text=True)
    assert "Verified" in page and 'id="licence-status"' in page
    assert len(service.requests) == 1


def test_sign_up_without_a_check_code_asks_for_one(client, service):
    from tests.test_smoke import SIGN_UP
    assert post_form(client, "/account/sign-up", SIGN_UP).status_code == 303
    page = client.get("/account/profile").get_data(as_text=True)
    assert "Not checked yet" in page and 'name="check_code"' in page
    assert service.requests == []


def test_pending_fragment_polls_itself_until_final(client, auth, service):
    user = auth.sign_in_as("customer", licence_status=LicenceStatus.UNCHECKED.value)
    check = pending_check(user)
    fragment = status_fragment(client)
    assert "Checking…" in fragment
    assert 'hx-trigger="every 1s, licence-check-started from:body"' in fragment
    assert 'hx-target="this"' in fragment and 'hx-swap="outerHTML"' in fragment
    check_licence(check.id)
    fragment = status_fragment(client)
    assert "Verified" in fragment and "every 1s" not in fragment


def test_a_check_stuck_far_too_long_gives_up(client, auth, service, app):
    user = auth.sign_in_as("customer", licence_status=LicenceStatus.UNCHECKED.value)
    limit = app.config["LICENCE_CHECK_GIVE_UP_SECONDS"]
    check = pending_check(user, requested_at=datetime.now(timezone.utc) - timedelta(seconds=limit + 5))
    fragment = status_fragment(client)
    assert "took too long" in fragment and "every 1s" not in fragment
    db.session.refresh(check)
    assert (check.status, check.reason_code) == ("failed", "timed_out")
    check_licence(check.id)  # the job, if it ever runs, leaves it alone
    assert service.requests == []


# --- exactly once ------------------------------------------------------------------------------

def test_a_repeated_job_does_nothing_twice(app, service):
    user = unchecked_customer()
    check = pending_check(user)
    check_licence(check.id)
    first = (check.status, check.completed_at)
    check_licence(check.id)
    check_licence(check.id)
    db.session.refresh(check)
    assert (check.status, check.completed_at) == first == ("verified", first[1])
    assert len(service.requests) == 1


def test_pressing_check_twice_while_running_is_one_check(app, service):
    user = unchecked_customer()
    running = pending_check(user)
    again = licence.start_customer_check(user, running.check_code, now=datetime.now(timezone.utc))
    assert again.id == running.id and check_count() == 1


@pytest.mark.postgres
def test_concurrent_duplicate_jobs_ask_the_service_once(app, service):
    """Two workers picking up the same check: the row lock lets one ask, the other finds it done."""
    check_id = pending_check(unchecked_customer(), code="WAITABIT").id
    db.session.commit()
    errors: list[BaseException] = []

    def worker():
        try:
            with app.app_context():
                check_licence(check_id)
                db.session.remove()
        except BaseException as exc:  # reported below, on the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert errors == []
    assert len(service.requests) == 1
    assert db.session.get(LicenceCheck, check_id, populate_existing=True).status == "verified"


# --- who may book ------------------------------------------------------------------------------

def test_can_confirm_booking_needs_a_verified_licence(app, service):
    start, end = hire_period(days_from_now=10)
    unchecked = unchecked_customer()
    allowed, why = licence.can_confirm_booking(unchecked, start, end)
    assert not allowed and "We need to check your driving licence before you can book" in why
    pending_check(unchecked)
    unchecked.profile.licence_status = LicenceStatus.PENDING.value
    allowed, why = licence.can_confirm_booking(unchecked, start, end)
    assert not allowed and "still checking" in why
    staff = factories.make_user("staff")
    assert licence.can_confirm_booking(staff, start, end)[0] is False


def test_can_confirm_booking_needs_the_licence_valid_for_the_whole_hire(app, service):
    user = unchecked_customer()
    check = run_check(user, GOOD_CODE)
    assert licence.can_confirm_booking(user, *hire_period(days_from_now=30)) == (True, "")
    ends_after = datetime.combine(check.valid_to, datetime.min.time(), timezone.utc) + timedelta(days=2)
    allowed, why = licence.can_confirm_booking(user, ends_after - timedelta(days=5), ends_after)
    assert not allowed and f"valid until {check.valid_to:%d %B %Y}" in why


def test_verified_without_a_check_uses_the_licence_expiry_date(app):
    user = factories.make_user("customer")  # verified by status, like the demo customer
    start = datetime(2032, 7, 10, 9, tzinfo=timezone.utc)
    assert licence.can_confirm_booking(user, start, start + timedelta(days=3))[0] is True
    allowed, why = licence.can_confirm_booking(user, start, start + timedelta(days=6))
    assert not allowed and "valid until 14 July 2032" in why


def test_young_driver_band(app):
    user = factories.make_user("customer")
    user.profile.date_of_birth = date(2002, 1, 1)
    assert licence.is_young_driver(user.profile, date(2026, 12, 31)) is True  # 24
    assert licence.is_young_driver(user.profile, date(2027, 1, 1)) is False  # 25
    app.config["YOUNG_DRIVER_MAX_AGE"] = 25
    assert licence.is_young_driver(user.profile, date(2027, 1, 1)) is True


# --- the counter's re-check ------------------------------------------------------------------

def test_staff_recheck_for_a_hire_shows_result_time_and_who(client, auth, service):
    customer = unchecked_customer()
    run_check(customer, GOOD_CODE)
    hire = factories.make_hire(customer=customer)
    staff = auth.sign_in_as("staff", full_name="Sam Counter")
    url = f"/counter/hires/{hire.reference}/licence-check"
    assert "Not checked yet" in client.get(url).get_data(as_text=True)
    response = post_form(client, url, {"check_code": ""}, headers=HX)  # reuse the last code
    assert response.status_code == 200 and response.headers["HX-Trigger"] == "licence-check-started"
    fragment = client.get(url, headers=HX).get_data(as_text=True)
    assert "Verified" in fragment and "by Sam Counter" in fragment and "Checked " in fragment
    check = licence.latest_check_for_hire(hire)
    assert (check.hire_id, check.requested_by_id, check.check_code) == (hire.id, staff.id, GOOD_CODE)
    assert len(service.requests) == 2
    assert service.requests[0]["idempotency_key"] != service.requests[1]["idempotency_key"]
    audit = db.session.scalars(select(AuditRecord).where(AuditRecord.action == "licence.recheck")).one()
    assert (audit.actor_id, audit.object_id) == (staff.id, str(hire.id))
    assert licence.pickup_licence_ok(hire) == (True, "")


def test_staff_recheck_with_a_new_code_can_refuse_the_hirer(client, auth, service):
    customer = unchecked_customer()
    run_check(customer, GOOD_CODE)
    hire = factories.make_hire(customer=customer)
    auth.sign_in_as("staff")
    url = f"/counter/hires/{hire.reference}/licence-check"
    response = post_form(client, url, {"check_code": "DISQUAL1"}, token_from=url)
    assert response.status_code == 303
    page = client.get(url).get_data(as_text=True)
    assert "Refused" in page and "disqualified" in page
    db.session.refresh(customer.profile)
    assert customer.profile.licence_status == "refused"  # and cannot book online either
    ok, why = licence.pickup_licence_ok(hire)
    assert not ok and "disqualified" in why


def test_staff_recheck_without_any_code_asks_for_one(client, auth, service):
    hire = factories.make_hire(customer=unchecked_customer())
    auth.sign_in_as("staff")
    url = f"/counter/hires/{hire.reference}/licence-check"
    response = post_form(client, url, {"check_code": ""}, token_from=url, headers=HX)
    assert response.status_code == 422
    assert "has not shared a check code yet" in response.get_data(as_text=True)
    assert service.requests == []


def test_customers_cannot_use_the_counter_recheck(client, auth, service):
    hire = factories.make_hire()
    auth.sign_in_as("customer")
    url = f"/counter/hires/{hire.reference}/licence-check"
    assert client.get(url).status_code == 403
    assert post_form(client, url, {"check_code": ""}, token_from="/").status_code == 403


# --- configuration -------------------------------------------------------------------------

def test_development_starts_the_standin_when_no_url_is_set(app):
    app.config.update(ENV_NAME="development", LICENCE_API_URL="", LICENCE_API_KEY="")
    try:
        api = licence_client.client_from_config()
        assert api.base_url.startswith("http://127.0.0.1:")
        record = api.check("CUSTO907150J99AB", GOOD_CODE, idempotency_key="dev-1")
        assert record.status == "Valid" and record.entitlement("B") is not None
        assert licence_client.client_from_config().base_url == api.base_url  # one per process
    finally:
        if licence_client._dev_standin is not None:
            licence_client._dev_standin.stop()
            licence_client._dev_standin = None


@pytest.mark.parametrize("env", ["production", "test"])
def test_no_standin_outside_development(app, env):
    app.config.update(ENV_NAME=env, LICENCE_API_URL="")
    with pytest.raises(licence_client.LicenceUnavailable):
        licence_client.client_from_config()
    assert licence_client._dev_standin is None


def test_standin_runs_from_the_command_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "devtools.licence_standin", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json() == {"status": "ok"}
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "the stand-in did not start"
                time.sleep(0.05)
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


# --- helpers -----------------------------------------------------------------------------------

def hire_period(*, days_from_now: int, days: int = 3) -> tuple[datetime, datetime]:
    start = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=days_from_now)
    return start, start + timedelta(days=days)


def pending_check(user: User, *, code: str = GOOD_CODE, requested_at: datetime | None = None) -> LicenceCheck:
    """A check as the page records it, before its job has run."""
    check = LicenceCheck(user_id=user.id, requested_by_id=user.id, licence_number=user.profile.licence_number,
                         check_code=code, idempotency_key=f"test-check-{user.id}-{code}",
                         requested_at=requested_at or datetime.now(timezone.utc), categories=[])
    user.profile.licence_status = LicenceStatus.PENDING.value
    db.session.add(check)
    db.session.commit()
    return check


def run_check(user: User, code: str) -> LicenceCheck:
    """Start a check as the customer would; the job runs inline."""
    check = licence.start_customer_check(user, code, now=datetime.now(timezone.utc))
    db.session.refresh(check)
    return check

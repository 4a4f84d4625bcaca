"""A customer who never comes (issue 14, item 4): the scheduler marks the no-show after the
grace, the car is free again, the no-show fee is kept and the rest refunded through the
Stripe stand-in exactly once, the deposit hold is released, the customer is emailed once;
staff can do the same from the counter board, which shows "late to collect" meanwhile."""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from sqlalchemy import select
from werkzeug.serving import make_server

from app.extensions import db
from app.jobs.booking import tick
from app.models import AuditRecord, Inspection, OutboundEmail, Payment, utcnow
from app import payments
from tests import factories
from tests.conftest import CSRF_RE, AuthActions, csrf_token
from tests.test_booking import local_day, shop, text_of, trip_args  # noqa: F401
from tests.test_counter_money import kinds, staff_client
from tests.test_payments_card import customer, paid_hire, standin, stripe_app  # noqa: F401


def grace(app) -> timedelta:
    return timedelta(minutes=app.config["NO_SHOW_GRACE_MINUTES"])


def fee(app) -> int:
    return app.config["NO_SHOW_FEE_PENCE"]


def not_collected(client, standin, customer, *, minutes_late: int, **kwargs):
    """A hire paid by card whose pickup time was `minutes_late` minutes ago, its deposit held."""
    hire = paid_hire(client, standin, customer, start=utcnow() - timedelta(minutes=minutes_late),
                     **kwargs)
    hold = payments.place_deposit_hold(hire)  # the scheduler's job, a day before pickup
    db.session.expire_all()
    assert db.session.get(Payment, hold.id).state == "authorised"
    return hire, hold


def no_show_emails(hire) -> list[OutboundEmail]:
    return list(db.session.scalars(select(OutboundEmail).where(
        OutboundEmail.idempotency_key == f"hire:{hire.id}:no-show")))


# --- the scheduler ---------------------------------------------------------------------------

def test_tick_marks_the_no_show_after_the_grace_not_before_and_frees_the_car(
        stripe_app, client, customer, standin, shop):
    hire, _ = not_collected(client, standin, customer, minutes_late=5, car=shop.car, days=4)
    # Tomorrow lies inside the booking: the car is not offered while the customer may still come.
    args = trip_args(shop, local_day(1), local_day(2))
    assert "Volkswagen Golf" not in text_of(client.get("/book/", query_string=args))

    early = tick((hire.start_at + grace(stripe_app) - timedelta(seconds=1)).isoformat())
    assert early["no_shows"] == 0
    db.session.expire_all()
    assert hire.state == "confirmed" and hire.occupancy is not None
    assert standin.objects("refund") == [] and no_show_emails(hire) == []

    assert tick((hire.start_at + grace(stripe_app)).isoformat())["no_shows"] == 1
    db.session.expire_all()
    assert hire.state == "no_show" and hire.occupancy is None
    assert hire.state_changes[-1].by_user_id is None  # the system did it
    assert "Volkswagen Golf" in text_of(client.get("/book/", query_string=args))


def test_no_show_keeps_the_fee_refunds_the_rest_and_releases_the_deposit_once(
        stripe_app, client, customer, standin):
    hire, hold = not_collected(client, standin, customer, minutes_late=5)
    at = (hire.start_at + grace(stripe_app)).isoformat()
    assert [tick(at)["no_shows"], tick(at)["no_shows"]] == [1, 0]  # the timer fires twice

    refund = hire.total_pence - fee(stripe_app)
    [stripe_refund] = standin.objects("refund")
    assert stripe_refund["amount"] == refund
    assert [k for k in kinds(hire) if k[0] == "refund"] == [("refund", refund, "succeeded")]
    assert payments.rental_paid_pence(hire) == fee(stripe_app)  # the fee is what we keep
    # The £250 reserved on the customer's card is let go.
    assert standin.get(hold.provider_ref)["status"] == "canceled"
    assert db.session.get(Payment, hold.id).state == "cancelled"
    assert ("release", hold.amount_pence, "succeeded") in kinds(hire)
    [email] = no_show_emails(hire)
    assert email.to_address == customer.email
    body = " ".join(email.body_text.split())
    assert f"we keep £{fee(stripe_app) // 100}.00" in body
    assert f"We are refunding £{refund // 100}.{refund % 100:02d}" in body
    assert "Your deposit of £250.00 is released in full" in body


def test_the_fee_is_never_more_than_was_paid(stripe_app, client, customer, standin):
    stripe_app.config["NO_SHOW_FEE_PENCE"] = 10 ** 7
    hire, hold = not_collected(client, standin, customer, minutes_late=5)
    assert tick((hire.start_at + grace(stripe_app)).isoformat())["no_shows"] == 1
    assert standin.objects("refund") == []  # all of it kept, nothing refunded
    assert standin.get(hold.provider_ref)["status"] == "canceled"  # the deposit still goes back
    body = " ".join(no_show_emails(hire)[0].body_text.split())
    assert f"we keep £{hire.total_pence // 100}.00" in body and "refunding" not in body


def test_two_scheduler_runs_at_once_apply_the_policy_once(stripe_app, make_app, client, customer,
                                                          standin):
    hires = [not_collected(client, standin, customer, minutes_late=5)[0] for _ in range(3)]
    served = make_app(STRIPE_API_BASE=standin.url, STRIPE_SECRET_KEY="sk_test_card_tests",
                      STRIPE_WEBHOOK_SECRET=standin.webhook_secret)
    at = (max(h.start_at for h in hires) + grace(stripe_app)).isoformat()
    barrier = threading.Barrier(2)

    def run():
        with served.app_context():
            barrier.wait(timeout=60)
            try:
                return tick(at)
            finally:
                db.session.remove()

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = [f.result() for f in [pool.submit(run), pool.submit(run)]]
    assert sum(r["no_shows"] for r in results) == len(hires)
    db.session.expire_all()
    for hire in hires:
        assert hire.state == "no_show"
        assert [c.to_state for c in hire.state_changes].count("no_show") == 1
        assert len(no_show_emails(hire)) == 1
    amounts = sorted(r["amount"] for r in standin.objects("refund"))
    assert amounts == sorted(h.total_pence - fee(stripe_app) for h in hires)


def test_a_no_show_interrupted_after_its_refund_is_finished_by_a_later_tick(
        stripe_app, client, customer, standin, monkeypatch):
    """The worker dies after the no-show and its refund were committed, before the deposit
    release and the email: a later tick finishes it, without a second refund."""
    from app.booking import lifecycle
    hire, hold = not_collected(client, standin, customer, minutes_late=5)
    marked_at = hire.start_at + grace(stripe_app)

    def killed(*args, **kwargs):
        raise SystemExit("worker killed")

    with monkeypatch.context() as patched:
        patched.setattr(lifecycle, "release_deposit", killed)
        with pytest.raises(SystemExit):
            tick(marked_at.isoformat())
    db.session.rollback()
    assert db.session.get(Payment, hold.id).state == "authorised" and no_show_emails(hire) == []
    # Not while the first run might still be at it; after JOB_RECOVERY_AFTER_SECONDS, once.
    soon = marked_at + timedelta(seconds=stripe_app.config["JOB_RECOVERY_AFTER_SECONDS"] - 1)
    assert tick(soon.isoformat())["no_shows_finished"] == 0
    later = (marked_at + timedelta(seconds=stripe_app.config["JOB_RECOVERY_AFTER_SECONDS"])).isoformat()
    assert [tick(later)["no_shows_finished"], tick(later)["no_shows_finished"]] == [1, 0]
    assert [r["amount"] for r in standin.objects("refund")] == [hire.total_pence - fee(stripe_app)]
    assert standin.get(hold.provider_ref)["status"] == "canceled"
    [email] = no_show_emails(hire)
    refund = hire.total_pence - fee(stripe_app)
    assert f"We are refunding £{refund // 100}" in " ".join(email.body_text.split())


def test_tick_leaves_a_pickup_under_way_to_the_counter(stripe_app, client, customer, standin):
    """Staff have started the pickup: the customer is at the desk, late, not a no-show."""
    hire, _ = not_collected(client, standin, customer, minutes_late=5)
    db.session.add(Inspection(hire_id=hire.id, kind="pickup", checklist={}, damages=[], waivers={},
                              charge_lines=[]))
    db.session.commit()
    assert tick((hire.start_at + grace(stripe_app)).isoformat())["no_shows"] == 0
    db.session.expire_all()
    assert hire.state == "confirmed"


# --- the counter board ------------------------------------------------------------------------

def board_item(html: str, reference: str) -> str:
    """The board's list item of one hire."""
    item = r"(?:(?!</li>).)*"
    match = re.search(rf'<li class="board-item[^"]*">{item}{reference}{item}</li>', html, re.S)
    assert match, f"{reference} is not on the board"
    return " ".join(match.group(0).split())


def test_board_shows_late_to_collect_and_the_no_show_button_only_after_pickup_time(
        stripe_app, client, customer, standin):
    late, _ = not_collected(client, standin, customer, minutes_late=35)
    very_late, _ = not_collected(client, standin, customer, minutes_late=95)
    coming = paid_hire(client, standin, customer, start=utcnow() + timedelta(hours=2))
    staff = staff_client(stripe_app)
    html = staff.get("/counter/").get_data(as_text=True)
    assert re.search(r"late to collect: 3[56] min", board_item(html, late.reference))
    assert re.search(r"late to collect: 1 h 3[56] min", board_item(html, very_late.reference))
    assert "Mark no-show" in board_item(html, late.reference)
    upcoming = board_item(html, coming.reference)
    assert "late to collect" not in upcoming and "Mark no-show" not in upcoming
    # The button asks first, in the page (htmx fragment): what is kept, refunded, released.
    confirm = staff.get(f"/counter/hires/{late.reference}/no-show", headers={"HX-Request": "true"})
    text = " ".join(confirm.get_data(as_text=True).split())
    assert confirm.status_code == 200 and "<html" not in text
    refund = late.total_pence - fee(stripe_app)
    assert f"No-show fee kept</dt><dd>£{fee(stripe_app) // 100}.00" in text
    assert f"Refunded to the customer</dt><dd>£{refund // 100}.{refund % 100:02d}" in text
    assert "Deposit released</dt><dd>£250.00" in text and "Confirm no-show" in text
    without_js = staff.get(f"/counter/hires/{late.reference}/no-show").get_data(as_text=True)
    assert "<html" in without_js and "Confirm no-show" in without_js  # the same question, as a page
    db.session.expire_all()
    assert late.state == "confirmed"  # asking changes nothing


def test_staff_mark_a_no_show_from_the_board_once_and_it_is_audited(stripe_app, client, customer,
                                                                   standin):
    hire, hold = not_collected(client, standin, customer, minutes_late=20)
    staff = staff_client(stripe_app)
    url = f"/counter/hires/{hire.reference}/no-show"
    answer = staff.post(url, data={"csrf_token": csrf_token(staff, url)})
    assert answer.status_code == 303 and answer.headers["Location"].endswith("/counter/")
    board = " ".join(staff.get("/counter/").get_data(as_text=True).split())
    assert f"{hire.reference} marked as a no-show" in board
    again = staff.post(url, data={"csrf_token": csrf_token(staff, "/counter/")})  # another tablet
    assert again.status_code == 409 and "already no show" in again.get_data(as_text=True)
    db.session.expire_all()
    assert hire.state == "no_show" and hire.occupancy is None
    assert [r["amount"] for r in standin.objects("refund")] == [hire.total_pence - fee(stripe_app)]
    assert standin.get(hold.provider_ref)["status"] == "canceled"
    assert len(no_show_emails(hire)) == 1
    [record] = db.session.scalars(select(AuditRecord).where(AuditRecord.action == "hire.no_show")).all()
    assert record.object_id == str(hire.id) and record.actor.role == "staff"
    assert (record.old, record.new["state"], record.new["fee_pence"]) == (
        {"state": "confirmed"}, "no_show", fee(stripe_app))
    assert tick((hire.start_at + grace(stripe_app)).isoformat())["no_shows"] == 0


def _token(html: str) -> str:
    match = CSRF_RE.search(html)
    return match.group(1) or match.group(2)


def _http_staff(base_url: str, staff) -> requests.Session:
    """A tablet signed in over HTTP (password, then the authenticator's code)."""
    tablet = requests.Session()
    for path, data in (("/account/sign-in", {"email": staff.email, "password": factories.PASSWORD}),
                       ("/account/two-factor", {"code": factories.two_factor_code(staff)})):
        token = _token(tablet.get(f"{base_url}{path}", timeout=10).text)
        answer = tablet.post(f"{base_url}{path}", data={"csrf_token": token, **data},
                             allow_redirects=False, timeout=30)
        assert answer.status_code == 303, answer.text
    return tablet


def test_two_tablets_and_the_scheduler_at_once_make_one_no_show(stripe_app, make_app, client, customer,
                                                                 standin):
    """Through a running threaded server: two tablets press "Confirm no-show" while the
    scheduler's tick runs; one of the three wins, the others are told, nothing runs twice."""
    past_grace = stripe_app.config["NO_SHOW_GRACE_MINUTES"] + 1
    hire, hold = not_collected(client, standin, customer, minutes_late=past_grace)
    tablets_staff = [factories.enrol_two_factor(factories.make_user("staff")) for _ in range(2)]
    served = make_app(STRIPE_API_BASE=standin.url, STRIPE_SECRET_KEY="sk_test_card_tests",
                      STRIPE_WEBHOOK_SECRET=standin.webhook_secret)
    server = make_server("127.0.0.1", 0, served, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        tablets = [_http_staff(base, s) for s in tablets_staff]
        url = f"/counter/hires/{hire.reference}/no-show"
        tokens = [_token(t.get(f"{base}{url}", timeout=10).text) for t in tablets]
        barrier = threading.Barrier(3)

        def press(i):
            barrier.wait(timeout=30)
            return tablets[i].post(f"{base}{url}", data={"csrf_token": tokens[i]}, allow_redirects=False,
                                   timeout=30).status_code

        def scheduler():
            with served.app_context():
                barrier.wait(timeout=30)
                try:
                    return tick()["no_shows"]
                finally:
                    db.session.remove()

        with ThreadPoolExecutor(max_workers=3) as pool:
            pressed = [pool.submit(press, 0), pool.submit(press, 1)]
            ticked = pool.submit(scheduler)
            statuses, marked_by_tick = [f.result() for f in pressed], ticked.result()
    finally:
        server.shutdown()
        server.server_close()
        with served.app_context():
            db.engine.dispose()
    assert sorted(statuses) in ([303, 409], [409, 409]), statuses
    assert statuses.count(303) + marked_by_tick == 1
    db.session.expire_all()
    assert [c.to_state for c in hire.state_changes].count("no_show") == 1
    assert [r["amount"] for r in standin.objects("refund")] == [hire.total_pence - fee(stripe_app)]
    assert standin.get(hold.provider_ref)["status"] == "canceled"
    assert len(no_show_emails(hire)) == 1
    assert len(db.session.scalars(select(AuditRecord).where(AuditRecord.action == "hire.no_show")).all()) == 1


def test_staff_cannot_mark_a_no_show_before_the_pickup_time(stripe_app, client, customer, standin):
    hire = paid_hire(client, standin, customer, start=utcnow() + timedelta(hours=2))
    staff = staff_client(stripe_app)
    url = f"/counter/hires/{hire.reference}/no-show"
    assert staff.get(url).status_code == 409
    answer = staff.post(url, data={"csrf_token": csrf_token(staff, "/counter/")})
    assert answer.status_code == 409 and "pickup time has not passed" in answer.get_data(as_text=True)
    db.session.expire_all()
    assert hire.state == "confirmed" and standin.objects("refund") == []


def test_customers_and_visitors_cannot_mark_a_no_show(stripe_app, client, customer, standin):
    hire, _ = not_collected(client, standin, customer, minutes_late=20)
    url = f"/counter/hires/{hire.reference}/no-show"
    as_customer = client.post(url, data={"csrf_token": csrf_token(client, "/book/")})
    assert as_customer.status_code == 403
    AuthActions(client).sign_out()
    as_visitor = client.post(url, data={"csrf_token": csrf_token(client, "/account/sign-in")})
    assert as_visitor.status_code in (302, 303) and "/account/sign-in" in as_visitor.headers["Location"]
    assert client.get(url).status_code in (302, 303)
    db.session.expire_all()
    assert hire.state == "confirmed" and standin.objects("refund") == []
    assert db.session.scalars(select(AuditRecord).where(AuditRecord.action == "hire.no_show")).all() == []

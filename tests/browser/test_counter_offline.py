"""Issue 20: the counter keeps working when the car park's signal drops, in real Chromium at
tablet size (820x1180), with Playwright's `set_offline` (which, with the service worker's
network events on, reaches the worker too: tests/browser/conftest.py).

Staff load the board online, lose the connection, do a pickup's photo ID, condition, photos
and signature and a return's condition, see the charges computed on the tablet, and find on
the server, once the connection is back, exactly what they did, once. Also: the connection
dropping in the middle of sending, a return settled by another tablet meanwhile (shown with
both versions), a session that ended before the queue was sent, and a new release's worker
taking over without losing a queued step. Set COUNTER_SHOTS_DIR to keep screenshots.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import delete, func, select

from app.counter import car_return, inspections
from app.extensions import db
from app.filters import money
from app.models import AuditRecord, Hire, InspectionPhoto, LicenceCheck, OfflineStep, UserSession
from tests import factories
from tests.browser.test_counter import audit, draw_signature, photo_file, small_targets
from tests.browser.test_counter_walk import shot

from .conftest import browser_sign_in

pytestmark = [pytest.mark.browser, pytest.mark.postgres]

PORTRAIT = (820, 1180)
PANELS = ("front", "rear", "left", "right", "roof", "windscreen", "wheels", "interior")
# What Chromium logs by itself for the requests the page makes while it has no connection
# (the board refreshing itself): the point of these tests, not a fault.
OFFLINE_NOISE = re.compile(r"net::ERR_INTERNET_DISCONNECTED|Failed to fetch|ERR_FAILED")
# (Opening "acme-counter" before the page has would make it, empty, at version 1, and the
# page's own open would then find no stores: so only once the page has made it.)
SYNCED = """async () => (await indexedDB.databases()).some(d => d.name === "acme-counter") && new Promise(resolve => {
  const open = indexedDB.open("acme-counter");
  open.onsuccess = () => {
    const db = open.result;
    if (!db.objectStoreNames.contains("meta")) { db.close(); return resolve(false); }
    const get = db.transaction("meta").objectStore("meta").get("sync");
    get.onsuccess = () => { db.close(); resolve(!!get.result); };
  };
  open.onerror = () => resolve(false);
})"""
ACTIVATED = ("async () => { const r = await navigator.serviceWorker.getRegistration('/counter/');"
             " return !!(r && r.active && r.active.state === 'activated'); }")
READY = ("async () => !!navigator.serviceWorker.controller"
         " && !!(await caches.match('/counter/offline', {ignoreVary: true}))")


def wait_until(page: Page, script: str, what: str, timeout_s: float = 10.0) -> None:
    """Wait until the asynchronous `script` (IndexedDB, the caches) resolves to true.

    Not `page.wait_for_function`: it does not await a promise, and a promise is truthy, so
    it returned at once and the tests went offline before the tablet had kept anything (the
    flaky failures of sessions 7 and 8: "nothing synced on this tablet yet")."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(script):
        if time.monotonic() > deadline:
            state = page.evaluate("""async () => ({controller: !!navigator.serviceWorker.controller,
                registration: await navigator.serviceWorker.getRegistration('/counter/').then(r => r ? {
                  installing: r.installing && r.installing.state, waiting: r.waiting && r.waiting.state,
                  active: r.active && r.active.state, scope: r.scope} : null),
                caches: await caches.keys(), shell: !!(await caches.match('/counter/offline', {ignoreVary: true})),
                databases: (await indexedDB.databases()).map(d => d.name + ' v' + d.version)})""")
            raise AssertionError(f"after {timeout_s:.0f} s, still not {what}: {state}")
        page.wait_for_timeout(100)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def counter_day(server) -> dict:
    """A staff member, a pickup in an hour (licence verified) and a return due in two hours."""
    with server.app.app_context():
        branch = factories.make_branch()
        staff = factories.enrol_two_factor(factories.make_user("staff", branch=branch, full_name="Olu Offline"))
        out_car = factories.make_car(branch=branch, odometer_miles=20_000)
        pickup = factories.make_hire(car=out_car, start=_now() + timedelta(hours=1), days=2,
                                     customer=factories.make_user("customer", full_name="Pat Pickup"))
        db.session.add(LicenceCheck(user_id=pickup.customer_id, hire_id=pickup.id, licence_number="CUSTO907150J99AB",
                                    check_code="ABCD1234", idempotency_key=f"offline-{pickup.id}",
                                    status="verified", completed_at=_now()))
        back = factories.make_hire(car=factories.make_car(branch=branch, odometer_miles=30_000),
                                   start=_now() - timedelta(days=2) + timedelta(hours=2), days=2,
                                   state=factories.HireState.ACTIVE,
                                   customer=factories.make_user("customer", full_name="Rita Return"))
        db.session.add(inspections.Inspection(hire_id=back.id, kind="pickup", odometer_miles=30_000, fuel_eighths=8,
                                              checklist={}, damages=[], waivers={}, charge_lines=[],
                                              condition_recorded_at=back.start_at))
        db.session.commit()
        return {"staff_id": staff.id, "email": staff.email, "pickup": pickup.reference, "back": back.reference}


def sign_in(page: Page, server, day: dict) -> None:
    browser_sign_in(page, server.url, day["email"])
    with server.app.app_context():
        code = factories.two_factor_code(db.session.get(factories.User, day["staff_id"]))
    page.get_by_label("Code").fill(code)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server.url}/counter/**")


def board_kept_on_the_tablet(page: Page, server, day: dict) -> None:
    """Staff open the board online; the worker and the synced hires are in place."""
    sign_in(page, server, day)
    wait_until(page, SYNCED, "synced to the tablet")
    # A page is controlled by the worker that is active when it starts loading (claiming
    # takes only the pages already open): reloading before activation gives a page without one.
    wait_until(page, ACTIVATED, "with the worker activated")
    page.reload()  # the worker controls the page from its next load
    wait_until(page, READY, "controlled by the worker with the offline page kept")
    expect(page.locator(".board-link", has_text=day["pickup"])).to_be_visible()


def go_offline(page: Page) -> None:
    """The signal drops: the tablet says so (and the page settles before staff tap on)."""
    page.context.set_offline(True)
    expect(page.get_by_text(re.compile(r"^Offline · last updated \d\d:\d\d$"))).to_be_visible()


def offline_pickup(page: Page, day: dict, tmp_path) -> None:
    """Photo ID, condition, two photos and the signature of the pickup, with no connection."""
    page.locator(".board-link", has_text=day["pickup"]).click()
    try:
        expect(page.get_by_role("heading", name=f"{day['pickup']} · Pickup")).to_be_visible()
    except AssertionError as exc:  # say what the tablet showed instead
        raise AssertionError(f"{exc}\nat {page.url}: {page.content()[:1500]}\n"
                             f"{page.console_errors}") from None
    page.get_by_label("Photo ID seen and matches the booking").check()
    page.get_by_role("button", name="Save ID check").click()
    expect(page.get_by_text("Photo ID checked.")).to_be_visible()
    page.get_by_label("Odometer (miles)").fill("20010")
    page.get_by_label("Fuel").select_option("8")
    page.get_by_label("Left", exact=True).select_option("scratch")
    page.get_by_role("button", name="Save condition").click()
    expect(page.locator("#off-note-left-error")).to_have_text("Describe what you see.")  # checked on the tablet
    page.get_by_label("Left note").fill("old scratch on the rear door")
    page.get_by_role("button", name="Save condition").click()
    expect(page.locator(".steps li.done")).to_have_count(2)
    for panel, colour in (("front", (180, 20, 20)), ("left", (20, 160, 20))):
        page.get_by_label("Part of the car").select_option(panel)
        page.get_by_label("Photo", exact=True).set_input_files(photo_file(tmp_path, f"{panel}.jpg", colour))
        page.get_by_role("button", name="Add photo").click()
        expect(page.locator(f"img[alt='{panel} (on this tablet)']")).to_have_count(1)
    draw_signature(page)
    page.get_by_role("button", name="Save signature").click()
    expect(page.get_by_text("Signed.", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Hand over the keys")).to_be_disabled()
    expect(page.get_by_text("Waiting for connection: handing over confirms the deposit hold")).to_be_visible()
    expect(page.get_by_text("5 steps saved on this tablet, waiting for connection.")).to_be_visible()


def offline_return(page: Page, day: dict) -> str:
    """The return's condition with no connection; the charges the tablet shows (total)."""
    page.get_by_role("link", name="← Counter board").click()
    page.locator(".board-link", has_text=day["back"]).click()
    expect(page.get_by_role("heading", name=f"{day['back']} · Return")).to_be_visible()
    page.get_by_label("Odometer (miles)").fill("30450")
    page.get_by_label("Fuel").select_option("6")
    page.get_by_role("button", name="Save condition").click()
    expect(page.get_by_role("cell", name="Fuel: 2/8 of a tank short", exact=True)).to_be_visible()
    return page.locator("table.charges tfoot th.num").inner_text()


def assert_done_once(server, day: dict, tablet_total: str) -> None:
    with server.app.app_context():
        pickup = db.session.scalar(select(Hire).where(Hire.reference == day["pickup"]))
        out = inspections.inspection(pickup, "pickup")
        assert out.id_checked_by_id == day["staff_id"] and out.odometer_miles == 20_010
        assert out.checklist["left"] == {"state": "scratch", "note": "old scratch on the rear door"}
        assert out.signed_at is not None and out.signature_filename
        assert sorted(p.panel for p in out.photos) == ["front", "left"]
        assert pickup.state == "confirmed"  # the hand-over waited for the connection
        back = db.session.scalar(select(Hire).where(Hire.reference == day["back"]))
        came_in = inspections.inspection(back, "return")
        assert (came_in.odometer_miles, came_in.fuel_eighths) == (30_450, 6)
        lines = car_return.preview_charges(back, came_in, now=_now())
        assert money(sum(l.owed_pence for l in lines)) == tablet_total  # the tablet's figure is the server's
        assert db.session.scalar(select(func.count()).select_from(OfflineStep)) == 6
        assert set(db.session.scalars(select(OfflineStep.outcome))) == {"applied"}
        assert db.session.scalar(select(func.count()).select_from(InspectionPhoto)) == 2
        actions = db.session.scalars(select(AuditRecord.action).where(
            AuditRecord.object_id.in_([str(pickup.id), str(back.id)]))).all()
        for once in ("pickup.id_checked", "pickup.condition", "pickup.signed", "return.condition"):
            assert actions.count(once) == 1, once
        assert actions.count("pickup.photo") == 2


def real_errors(page: Page) -> list[str]:
    return [e for e in page.console_errors if not OFFLINE_NOISE.search(e)]


def test_an_offline_pickup_and_return_reach_the_server_once(live_server, new_page, tmp_path):
    day = counter_day(live_server)
    page = new_page(*PORTRAIT)
    board_kept_on_the_tablet(page, live_server, day)
    go_offline(page)
    offline_pickup(page, day, tmp_path)
    shot(page, "offline-pickup")
    assert audit(page) == [] and small_targets(page) == []
    tablet_total = offline_return(page, day)
    shot(page, "offline-return")
    assert audit(page) == [] and small_targets(page) == []
    page.context.set_offline(False)
    expect(page.get_by_text("Every step saved on this tablet has been sent.")).to_be_visible()
    assert_done_once(live_server, day, tablet_total)
    assert real_errors(page) == []


def test_the_connection_dropping_in_the_middle_of_sending_loses_and_repeats_nothing(live_server, new_page,
                                                                                 tmp_path):
    day = counter_day(live_server)
    page = new_page(*PORTRAIT)
    board_kept_on_the_tablet(page, live_server, day)
    go_offline(page)
    offline_pickup(page, day, tmp_path)
    tablet_total = offline_return(page, day)
    sent: list[str] = []

    def answer_lost_once(route):
        sent.append(route.request.post_data or "")
        if len(sent) == 2:  # the second batch (the first photo): the server applies it...
            route.fetch()
            route.abort("internetdisconnected")  # ...and its answer never reaches the tablet
        else:
            route.continue_()

    page.context.route("**/counter/offline/steps", answer_lost_once)
    page.context.set_offline(False)
    deadline = time.monotonic() + 10
    while len(sent) < 2 and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    # Photo ID and condition went through; the photo whose answer was lost is still queued.
    expect(page.get_by_text("4 steps saved on this tablet, waiting for connection.")).to_be_visible()
    assert len(sent) == 2
    page.context.unroute("**/counter/offline/steps")
    page.context.set_offline(True)  # the signal comes back: the tablet sends the rest
    page.context.set_offline(False)
    expect(page.get_by_text("Every step saved on this tablet has been sent.")).to_be_visible()
    assert_done_once(live_server, day, tablet_total)


def test_a_return_settled_by_another_tablet_meanwhile_is_shown_with_both_versions(live_server, new_page):
    day = counter_day(live_server)
    page = new_page(*PORTRAIT)
    board_kept_on_the_tablet(page, live_server, day)
    go_offline(page)
    page.locator(".board-link", has_text=day["back"]).click()
    page.get_by_label("Odometer (miles)").fill("30450")
    page.get_by_label("Fuel").select_option("6")
    page.get_by_role("button", name="Save condition").click()
    expect(page.get_by_text("1 step saved on this tablet, waiting for connection.")).to_be_visible()
    with live_server.app.app_context():  # meanwhile, at the other tablet
        other = factories.make_user("staff", full_name="Sam Other")
        back = db.session.scalar(select(Hire).where(Hire.reference == day["back"]))
        insp = inspections.open_inspection(back, "return", by=other, now=_now())
        inspections.record_condition(insp, by=other, now=_now(), odometer=30_200, fuel_eighths=8,
                                     checklist={p: {"state": "ok", "note": ""} for p in PANELS})
        car_return.settle_return(back, by=other, now=_now(), version=insp.version)
    page.context.set_offline(False)
    attention = page.locator(".offline-answers")
    expect(attention.get_by_role("heading", name="Needs your attention")).to_be_visible()
    expect(attention).to_contain_text("already updated by Sam Other")
    expect(attention).to_contain_text("30450 miles, fuel 6/8")  # this tablet's version
    expect(attention).to_contain_text("finished by Sam Other")  # and the server's
    expect(attention).to_contain_text("30200 miles, fuel Full")
    shot(page, "offline-conflict")
    with live_server.app.app_context():
        back = db.session.scalar(select(Hire).where(Hire.reference == day["back"]))
        assert inspections.inspection(back, "return").odometer_miles == 30_200  # never overwritten
    attention.get_by_role("button", name=re.compile("^Dismiss")).click()
    expect(attention).to_have_count(0)


def test_a_step_queued_when_the_session_ended_is_sent_after_signing_in(live_server, new_page):
    day = counter_day(live_server)
    page = new_page(*PORTRAIT)
    board_kept_on_the_tablet(page, live_server, day)
    go_offline(page)
    page.locator(".board-link", has_text=day["pickup"]).click()
    page.get_by_label("Photo ID seen and matches the booking").check()
    page.get_by_role("button", name="Save ID check").click()
    with live_server.app.app_context():  # the shift's session ends while the tablet is offline
        db.session.execute(delete(UserSession).where(UserSession.user_id == day["staff_id"]))
        db.session.commit()
    page.context.set_offline(False)
    page.get_by_role("link", name="sign in to send the 1 step saved on this tablet").click()
    page.locator("#sign-in-form").get_by_label("Email").fill(day["email"])
    page.locator("#sign-in-form").get_by_label("Password", exact=True).fill(factories.PASSWORD)
    page.locator("#sign-in-form").get_by_role("button", name="Sign in").click()
    with live_server.app.app_context():  # the next code: this morning's was used already
        code = factories.two_factor_code(db.session.get(factories.User, day["staff_id"]),
                                         at=_now() + timedelta(seconds=30))
    page.get_by_label("Code").fill(code)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Every step saved on this tablet has been sent.")).to_be_visible()
    with live_server.app.app_context():
        pickup = db.session.scalar(select(Hire).where(Hire.reference == day["pickup"]))
        assert inspections.inspection(pickup, "pickup").id_checked_by_id == day["staff_id"]


def test_a_new_release_replaces_the_worker_and_keeps_the_queued_step(make_live_server, new_page):
    server = make_live_server(OFFLINE_RELEASE="release-1")
    day = counter_day(server)
    page = new_page(*PORTRAIT)
    board_kept_on_the_tablet(page, server, day)
    assert page.evaluate("caches.keys()") == ["acme-counter-release-1"]
    go_offline(page)
    page.locator(".board-link", has_text=day["pickup"]).click()
    page.get_by_label("Photo ID seen and matches the booking").check()
    page.get_by_role("button", name="Save ID check").click()
    # The tablet is back in signal but its sends fail for a while; meanwhile a release ships.
    page.context.route("**/counter/offline/steps", lambda route: route.abort("internetdisconnected"))
    page.context.set_offline(False)
    expect(page.get_by_text("1 step saved on this tablet, waiting for connection.")).to_be_visible()
    server.app.config["OFFLINE_RELEASE"] = "release-2"
    page.goto(f"{server.url}/counter/")
    wait_until(page, "async () => (await caches.keys()).join() === 'acme-counter-release-2'",
               "on the new release's cache alone")
    expect(page.get_by_text("1 step saved on this tablet, waiting for connection.")).to_be_visible()
    page.context.unroute("**/counter/offline/steps")
    page.reload()
    expect(page.get_by_text("Every step saved on this tablet has been sent.")).to_be_visible()
    with server.app.app_context():
        pickup = db.session.scalar(select(Hire).where(Hire.reference == day["pickup"]))
        assert inspections.inspection(pickup, "pickup").id_checked_by_id == day["staff_id"]
        assert db.session.scalar(select(func.count()).select_from(OfflineStep)) == 1


QUEUE_COUNT = """async () => !(await indexedDB.databases()).some(d => d.name === "acme-counter") ? [0, false] : new Promise(resolve => {
  const open = indexedDB.open("acme-counter");
  open.onsuccess = () => {
    const db = open.result;
    if (!db.objectStoreNames.contains("queue")) { db.close(); return resolve([0, false]); }
    const t = db.transaction(["queue", "meta"]);
    const count = t.objectStore("queue").count(), meta = t.objectStore("meta").get("sync");
    t.oncomplete = () => { db.close(); resolve([count.result, !!meta.result]); };
  };
  open.onerror = () => resolve([-1, false]);
})"""


def one_step_not_sent(page: Page, day: dict) -> None:
    """Photo ID checked offline; the connection returns but the server cannot be reached."""
    go_offline(page)
    page.locator(".board-link", has_text=day["pickup"]).click()
    page.get_by_label("Photo ID seen and matches the booking").check()
    page.get_by_role("button", name="Save ID check").click()
    page.context.route("**/counter/offline/steps", lambda route: route.abort("connectionrefused"))
    page.context.set_offline(False)
    expect(page.get_by_text("1 step saved on this tablet, waiting for connection.")).to_be_visible()


def test_signing_out_warns_of_unsent_steps_then_clears_the_tablet(live_server, new_page):
    day = counter_day(live_server)
    page = new_page(*PORTRAIT)
    board_kept_on_the_tablet(page, live_server, day)
    one_step_not_sent(page, day)

    page.get_by_role("button", name="Sign out").click()
    dialog = page.get_by_role("dialog", name="1 step not sent yet")
    expect(dialog).to_contain_text("1 step saved on this tablet has not been sent to the server.")
    dialog.get_by_role("button", name="Stay signed in and send it").click()
    expect(dialog).to_be_hidden()
    assert "/counter/" in page.url  # still signed in, the step still queued
    assert page.evaluate(QUEUE_COUNT) == [1, True]

    # Still unsent (the server still cannot be reached), so signing out asks again. The
    # connection is lifted only once the dialog is up: the send the first "Stay" started may
    # still be under way, and must not be what empties the queue before the second ask.
    page.get_by_role("button", name="Sign out").click()
    dialog = page.get_by_role("dialog", name="1 step not sent yet")
    expect(dialog).to_be_visible()
    page.context.unroute("**/counter/offline/steps")
    dialog.get_by_role("button", name="Stay signed in and send it").click()
    expect(page.get_by_text("Every step saved on this tablet has been sent.")).to_be_visible()
    with live_server.app.app_context():
        pickup = db.session.scalar(select(Hire).where(Hire.reference == day["pickup"]))
        assert inspections.inspection(pickup, "pickup").id_checked_by_id == day["staff_id"]

    # Nothing left to send: signing out asks nothing, and the next person finds a clean tablet.
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    assert page.evaluate(QUEUE_COUNT) == [0, False]
    page.goto(f"{live_server.url}/counter/")
    expect(page.get_by_text(day["pickup"])).to_have_count(0)
    assert page.evaluate("() => caches.match('/counter/offline', {ignoreVary: true}).then(r => !!r)") is False


def test_signing_out_with_unsent_steps_deletes_them_only_when_staff_say_so(live_server, new_page):
    day = counter_day(live_server)
    page = new_page(*PORTRAIT)
    board_kept_on_the_tablet(page, live_server, day)
    one_step_not_sent(page, day)

    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("dialog", name="1 step not sent yet").get_by_role(
        "button", name="Sign out and delete 1 step").click()
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    assert page.evaluate(QUEUE_COUNT) == [0, False]
    page.context.unroute("**/counter/offline/steps")
    with live_server.app.app_context():
        assert db.session.scalar(select(func.count()).select_from(OfflineStep)) == 0
        pickup = db.session.scalar(select(Hire).where(Hire.reference == day["pickup"]))
        assert inspections.inspection(pickup, "pickup") is None or \
            inspections.inspection(pickup, "pickup").id_checked_by_id is None


def test_the_next_person_on_the_tablet_neither_sees_nor_sends_the_last_ones_steps(live_server, new_page):
    day = counter_day(live_server)
    page = new_page(*PORTRAIT)
    board_kept_on_the_tablet(page, live_server, day)
    one_step_not_sent(page, day)
    # Olu's shift ends without signing out on the tablet (the session is ended elsewhere).
    with live_server.app.app_context():
        db.session.execute(delete(UserSession).where(UserSession.user_id == day["staff_id"]))
        db.session.commit()
    page.context.clear_cookies()
    page.context.unroute("**/counter/offline/steps")

    other = counter_day(live_server)  # another member of staff, at their own branch
    sign_in(page, live_server, other)
    expect(page.get_by_text("1 step saved on this tablet by someone else wait for them to sign in here "
                            "again.")).to_be_visible()
    expect(page.locator(".board-link", has_text=other["pickup"])).to_be_visible()
    expect(page.get_by_text(day["pickup"])).to_have_count(0)
    expect(page.get_by_text("waiting for connection")).to_have_count(0)
    wait_until(page, SYNCED, "synced to the tablet")
    page.wait_for_timeout(1500)
    with live_server.app.app_context():
        assert db.session.scalar(select(func.count()).select_from(OfflineStep)) == 0  # not sent as them

"""The offline counter's server side (issue 20): the sync a tablet keeps, and the batch of
steps it sends when the connection returns (each once, in order, through the online
services; conflicts answered with both versions), and the tablet's copy of the charge rules
run with node against the server's."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from PIL import Image
from sqlalchemy import func, select

from app.counter import charges as rules
from app.counter import inspections
from app.counter.offline import rules_payload
from app.extensions import db
from app.models import AuditRecord, HireState, Inspection, InspectionPhoto, OfflineStep
from app.settings import settings
from tests import factories
from tests.live_server import make_live_server  # noqa: F401  (fixture)
from tests.test_counter import PANELS, condition, post, signature_png, verified_check

CHARGES_JS = Path(__file__).resolve().parent.parent / "static" / "js" / "offline-charges.js"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def jpeg_data_url(colour=(200, 10, 10)) -> str:
    out = io.BytesIO()
    Image.new("RGB", (320, 240), colour).save(out, "JPEG", quality=70)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode()


@pytest.fixture
def staff_client(app, client, auth):
    branch = factories.make_branch()
    client.staff = auth.sign_in_as("staff", branch=branch)
    client.branch = branch
    return client


def sync(client) -> dict:
    response = client.get("/counter/offline/sync")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    return response.get_json()


def send(client, steps, token=None):
    token = token or sync(client)["csrf_token"]
    return client.post("/counter/offline/steps", json={"steps": steps}, headers={"X-CSRFToken": token})


def step(key, hire, name, kind="pickup", base=None, done_at=None, **data):
    return {"key": key, "hire": hire.reference, "kind": kind, "step": name, "base_version": base,
            "done_at": _iso(done_at or _now() - timedelta(minutes=5)), "data": data}


def checklist(**states):
    return {p: {"state": states.get(p, ("ok", ""))[0], "note": states.get(p, ("ok", ""))[1]} for p in PANELS}


def _pickup_hire(branch):
    car = factories.make_car(branch=branch, odometer_miles=12_000)
    hire = factories.make_hire(car=car, start=_now() + timedelta(hours=2), days=3)
    verified_check(hire)
    return hire


def _active_hire(branch, *, start=None, days=3):
    hire = factories.make_hire(car=factories.make_car(branch=branch, odometer_miles=100),
                               start=start or _now() - timedelta(days=2), days=days, state=HireState.ACTIVE)
    db.session.add(Inspection(hire_id=hire.id, kind="pickup", odometer_miles=100, fuel_eighths=8, checklist={},
                              damages=[], waivers={}, charge_lines=[], condition_recorded_at=hire.start_at))
    db.session.commit()
    return hire


def test_sync_gives_the_branch_hires_and_the_versioned_rules(staff_client, app):
    pickup = _pickup_hire(staff_client.branch)
    back = _active_hire(staff_client.branch)
    elsewhere = _pickup_hire(factories.make_branch())
    data = sync(staff_client)
    refs = {h["reference"]: h for h in data["hires"]}
    assert set(refs) == {pickup.reference, back.reference}  # their own branch only
    assert refs[pickup.reference]["kind"] == "pickup" and refs[pickup.reference]["licence_ok"] is True
    assert refs[back.reference]["kind"] == "return" and refs[back.reference]["out"] == {"odometer": 100,
                                                                                         "fuel_eighths": 8}
    assert refs[back.reference]["day_rate_pence"] == 3900
    assert data["rules"]["rates"]["late_fee_per_hour_pence"] == app.config["LATE_FEE_PER_HOUR_PENCE"]
    assert data["rules"]["revision"] == rules.RULES_REVISION and data["csrf_token"]
    version = data["rules"]["version"]
    app.config["LATE_FEE_PER_HOUR_PENCE"] += 100  # a new amount is a new version of the rules
    assert sync(staff_client)["rules"]["version"] != version
    assert elsewhere.reference not in json.dumps(data)


def test_a_pickup_done_offline_is_applied_once_in_order(staff_client):
    hire = _pickup_hire(staff_client.branch)
    steps = [step("k-id-000001", hire, "id_check"),
             step("k-cond-00001", hire, "condition", odometer=12_010, fuel_eighths=8,
                  checklist=checklist(left=("scratch", "old scratch on the door"))),
             step("k-photo-0001", hire, "photo", panel="left", image=jpeg_data_url()),
             step("k-sign-00001", hire, "signature", image=signature_png())]
    first = send(staff_client, steps)
    assert first.status_code == 200
    answers = first.get_json()["results"]
    assert [a["outcome"] for a in answers] == ["applied"] * 4, answers
    # Sent again (the answer was lost on the way back): nothing happens twice, same answers.
    again = send(staff_client, steps).get_json()["results"]
    assert again == answers
    db.session.expire_all()
    insp = inspections.inspection(hire, "pickup")
    assert insp.id_checked_by_id == staff_client.staff.id and insp.odometer_miles == 12_010
    assert insp.checklist["left"] == {"state": "scratch", "note": "old scratch on the door"}
    assert insp.signed_at is not None and answers[-1]["version"] == insp.version
    assert db.session.scalar(select(func.count()).select_from(InspectionPhoto)) == 1
    assert insp.condition_recorded_at < _now() - timedelta(minutes=4)  # when it was done, not sent
    actions = db.session.scalars(select(AuditRecord.action).where(AuditRecord.object_id == str(hire.id))).all()
    assert sorted(a for a in actions if a != "pickup.started") == sorted(
        ["pickup.id_checked", "pickup.condition", "pickup.photo", "pickup.signed"])
    assert hire.state == "confirmed"  # handing over waits for the connection


def test_the_steps_can_arrive_one_batch_at_a_time(staff_client):
    hire = _pickup_hire(staff_client.branch)
    first = send(staff_client, [step("one-at-a-time-1", hire, "id_check")]).get_json()["results"][0]
    # The tablet moves its queued steps on to the version the server answered.
    second = send(staff_client, [step("one-at-a-time-2", hire, "condition", base=first["version"],
                                      odometer=12_000, fuel_eighths=7, checklist=checklist())])
    assert second.get_json()["results"][0]["outcome"] == "applied"


def test_a_return_settled_by_another_tablet_meanwhile_is_a_conflict_with_both_versions(staff_client):
    hire = _active_hire(staff_client.branch)
    tablet_synced = sync(staff_client)
    other = factories.make_user("staff", full_name="Sam Other", branch=staff_client.branch)
    insp = inspections.open_inspection(hire, "return", by=other, now=_now())
    inspections.record_condition(insp, by=other, now=_now(), odometer=150, fuel_eighths=8,
                                 checklist={p: {"state": "ok", "note": ""} for p in PANELS})
    from app.counter import car_return
    car_return.settle_return(hire, by=other, now=_now(), version=insp.version)
    base = next(h for h in tablet_synced["hires"] if h["reference"] == hire.reference)["inspection"]
    answer = send(staff_client, [step("conflict-0001", hire, "condition", kind="return",
                                      base=base["version"] if base else None,
                                      odometer=180, fuel_eighths=6, checklist=checklist())]).get_json()["results"][0]
    assert answer["outcome"] == "conflict"
    assert "Sam Other" in answer["message"]
    assert answer["server"]["state"] in ("returned", "closed")
    assert answer["server"]["inspection"]["odometer"] == 150
    assert answer["tablet"]["data"]["odometer"] == 180  # both versions, for staff to see
    db.session.expire_all()
    assert inspections.inspection(hire, "return").odometer_miles == 150  # never overwritten
    assert db.session.scalar(select(OfflineStep.outcome).where(OfflineStep.key == "conflict-0001")) == "conflict"


def test_a_cancelled_hire_or_a_changed_record_is_a_conflict(staff_client):
    cancelled = _pickup_hire(staff_client.branch)
    cancelled.transition(HireState.CANCELLED, by=None, why="customer cancelled")
    db.session.commit()
    answer = send(staff_client, [step("cancelled-01", cancelled, "id_check")]).get_json()["results"][0]
    assert answer["outcome"] == "conflict" and "cancelled" in answer["message"]
    assert answer["server"]["state"] == "cancelled"

    changed = _pickup_hire(staff_client.branch)
    post(staff_client, f"/counter/hires/{changed.reference}/pickup/condition", condition(12_001, 8))
    answer = send(staff_client, [step("changed-0001", changed, "condition", odometer=12_005, fuel_eighths=8,
                                      checklist=checklist())]).get_json()["results"][0]
    assert answer["outcome"] == "conflict" and answer["server"]["inspection"]["odometer"] == 12_001


def test_steps_that_need_the_outside_world_are_refused_with_the_reason(staff_client):
    hire = _pickup_hire(staff_client.branch)
    answers = send(staff_client, [step("handover-01", hire, "hand_over"),
                                  step("settle-0001", hire, "settle", kind="return")]).get_json()["results"]
    assert [a["outcome"] for a in answers] == ["refused", "refused"]
    assert "deposit hold" in answers[0]["message"] and "waits for a connection" in answers[1]["message"]
    assert hire.state == "confirmed"


def test_wrong_steps_are_refused_with_their_field(staff_client):
    hire = _pickup_hire(staff_client.branch)
    answers = send(staff_client, [
        step("bad-odometer", hire, "condition", odometer="lots", fuel_eighths=8, checklist=checklist()),
        step("bad-fuel-0001", hire, "condition", odometer=12_000, fuel_eighths=9, checklist=checklist()),
        step("bad-photo-001", hire, "photo", panel="left", image="data:image/jpeg;base64,!!!"),
        step("bad-note-0001", hire, "condition", odometer=12_000, fuel_eighths=8,
             checklist=checklist(left=("dent", "a\x00b"))),
        step("too-old-00001", hire, "id_check", done_at=_now() - timedelta(days=3)),
        {"key": "x", "step": "id_check"},
        {"key": "not-a-step-01", "hire": hire.reference, "step": ["id_check"], "kind": {"pickup": 1}},
    ]).get_json()["results"]
    assert [a["outcome"] for a in answers] == ["refused"] * 7
    assert "odometer" in answers[0]["errors"] and "fuel_eighths" in answers[1]["errors"]
    assert "photo" in answers[2]["errors"] and "note_left" in answers[3]["errors"]
    assert "too long ago" in answers[4]["message"] and "key" in answers[5]["message"]
    assert inspections.inspection(hire, "pickup") is None or inspections.inspection(hire, "pickup").version == 1


def test_the_batch_needs_json_a_list_and_the_csrf_token(staff_client, app):
    token = sync(staff_client)["csrf_token"]
    assert staff_client.post("/counter/offline/steps", json={"steps": []}).status_code == 400  # no token
    assert staff_client.post("/counter/offline/steps", data="nope", headers={"X-CSRFToken": token}).status_code == 400
    too_many = [{"key": f"k{i:010d}"} for i in range(app.config["OFFLINE_BATCH_MAX_STEPS"] + 1)]
    answer = send(staff_client, too_many, token)
    assert answer.status_code == 422 and "at most" in answer.get_json()["message"]
    assert send(staff_client, "steps", token).status_code == 422


def test_the_service_worker_is_served_from_the_root_named_after_the_release(client, app):
    first = client.get("/sw.js")
    body = first.get_data(as_text=True)
    assert first.status_code == 200 and first.mimetype == "text/javascript"
    assert first.headers["Cache-Control"] == "no-cache" and "__RELEASE__" not in body
    kept = re.findall(r'"/static/([^"]+)"', body)
    assert "js/offline-counter.js" in kept and "manifest.webmanifest" in kept
    for name in kept:  # every file the worker keeps for offline use is served
        served = client.get(f"/static/{name}")
        served.close()
        assert served.status_code == 200, name
    app.config["OFFLINE_RELEASE"] = "next-release"
    assert "next-release" in client.get("/sw.js").get_data(as_text=True)


CASES = {
    "on time": dict(back=timedelta(days=3, minutes=30), fuel_in=8, miles=300),
    "three hours late": dict(back=timedelta(days=3, hours=2, minutes=10), fuel_in=8, miles=300),
    "a day and two hours late": dict(back=timedelta(days=4, hours=1, minutes=1), fuel_in=8, miles=300),
    "short of fuel, over the miles, dirty": dict(back=timedelta(days=3), fuel_in=3, miles=900, cleaning=True),
    "damage, one waived": dict(back=timedelta(days=3), fuel_in=6, miles=100,
                               damages=(rules.Damage("left", 12_050, "dent in door"),
                                        rules.Damage("front", 3_000, "chip")),
                               waivers={"refuelling": "regular customer", "damage2": "was there before"}),
    "early, two unused days": dict(back=timedelta(days=1, hours=3), fuel_in=8, miles=50),
    "back before the start": dict(back=timedelta(hours=-2), fuel_in=8, miles=0),
}


def test_the_tablet_computes_the_same_charges_as_the_server(app):
    # node is part of the suite's setup (the contract and chain tests need it too): never skipped.
    assert shutil.which("node"), "node is needed to run the tablet's rules (apt-get install nodejs)"
    start = datetime(2030, 6, 1, 9, 0, tzinfo=timezone.utc)
    rates = rules.Rates.from_settings(settings().money)
    js_cases, expected = [], []
    for case in CASES.values():
        facts = rules.ReturnFacts(start_at=start, end_at=start + timedelta(days=3),
                                  returned_at=start + case["back"], day_rate_pence=3900, miles_allowed_per_day=200,
                                  odometer_out=1000, odometer_in=1000 + case["miles"], fuel_out_eighths=8,
                                  fuel_in_eighths=case["fuel_in"], needs_cleaning=case.get("cleaning", False),
                                  damages=case.get("damages", ()), waivers=case.get("waivers", {}))
        lines = rules.compute_charges(facts, rates)
        expected.append([[asdict(l) for l in lines], rules.total_owed_pence(lines)])
        js_cases.append({**{k: v for k, v in asdict(facts).items() if k not in ("start_at", "end_at", "returned_at")},
                         "start_at": _iso(facts.start_at), "end_at": _iso(facts.end_at),
                         "returned_at": _iso(facts.returned_at)})
    with app.test_request_context():
        synced = rules_payload()
    script = ("const r = require(process.argv[1]); const input = JSON.parse(require('fs').readFileSync(0));"
              "process.stdout.write(JSON.stringify({revision: r.REVISION, results: input.cases.map(f => {"
              "const lines = r.computeCharges(f, input.rates); return [lines, r.totalOwed(lines)]; })}));")
    run = subprocess.run(["node", "-e", script, str(CHARGES_JS)], input=json.dumps(
        {"cases": js_cases, "rates": synced["rates"]}), capture_output=True, text=True, timeout=30, check=True)
    tablet = json.loads(run.stdout)
    assert tablet["revision"] == synced["revision"]
    for name, mine, theirs in zip(CASES, tablet["results"], expected):
        assert mine == theirs, name
    assert any(total for _, total in expected) and any(total < 0 for _, total in expected)


CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
RACE_ROUNDS = 8


def _tablet(base_url: str, staff) -> requests.Session:
    """A tablet signed in over real HTTP (password, then the authenticator's code)."""
    tablet = requests.Session()
    for path, data in (("/account/sign-in", {"email": staff.email, "password": factories.PASSWORD}),
                       ("/account/two-factor", {"code": factories.two_factor_code(staff)})):
        token = CSRF_RE.search(tablet.get(base_url + path, timeout=30).text).group(1)
        assert tablet.post(base_url + path, data={"csrf_token": token, **data}, timeout=30).ok
    return tablet


def test_the_same_steps_sent_twice_at_once_happen_once(make_live_server):
    """A tab reopened while its first send is still running: both send the same keys at the
    same instant. Each step happens once; the loser is answered the same, or "retry" (kept
    by the tablet and sent again), never a second application or a false refusal."""
    server = make_live_server()
    with server.app.app_context():
        branch = factories.make_branch()
        staff = factories.enrol_two_factor(factories.make_user("staff", branch=branch))
        hires = [SimpleNamespace(reference=h.reference, id=h.id)
                 for h in (_pickup_hire(branch) for _ in range(RACE_ROUNDS))]
        tablet = _tablet(server.url, staff)
    token = tablet.get(f"{server.url}/counter/offline/sync", timeout=30).json()["csrf_token"]

    def send_now(body):
        answer = tablet.post(f"{server.url}/counter/offline/steps", json=body, timeout=60,
                             headers={"X-CSRFToken": token})
        assert answer.status_code == 200, answer.text
        return answer.json()["results"]

    for n, hire in enumerate(hires):
        body = {"steps": [step(f"race-{n}-id-check", hire, "id_check"),
                          step(f"race-{n}-condition", hire, "condition", odometer=12_001, fuel_eighths=8,
                               checklist=checklist())]}
        with ThreadPoolExecutor(2) as pool:
            both = list(pool.map(send_now, [body, body]))
        for answers in both:
            assert [a["outcome"] for a in answers] in (["applied", "applied"], ["applied", "retry"],
                                                       ["retry", "retry"]), answers
        while any(a["outcome"] == "retry" for answers in both for a in answers):
            both = [send_now(body)]  # what the tablet does next
        assert [a["outcome"] for a in both[0]] == ["applied", "applied"]
    with server.app.app_context():
        for hire in hires:
            actions = db.session.scalars(select(AuditRecord.action).where(
                AuditRecord.object_id == str(hire.id))).all()
            assert actions.count("pickup.id_checked") == 1 and actions.count("pickup.condition") == 1
            insp = db.session.scalar(select(Inspection).where(Inspection.hire_id == hire.id))
            assert insp.odometer_miles == 12_001 and insp.id_checked_at is not None


def test_the_kept_answers_are_pruned_by_the_tick_after_the_named_days(staff_client, app):
    from app.jobs.booking import tick

    hire = _pickup_hire(staff_client.branch)
    [answer] = send(staff_client, [step("prune-me-0001", hire, "id_check")]).get_json()["results"]
    assert answer["outcome"] == "applied"

    def kept():
        return db.session.scalars(select(OfflineStep.key)).all()
    keep = timedelta(days=app.config["OFFLINE_STEP_KEEP_DAYS"])
    assert keep > timedelta(hours=app.config["OFFLINE_STEP_MAX_AGE_HOURS"])

    # A day before the setting's end the answer is still kept: the key answers as before.
    assert tick(_iso(_now() + keep - timedelta(days=1)))["offline_steps_pruned"] == 0
    assert kept() == ["prune-me-0001"]
    assert send(staff_client, [step("prune-me-0001", hire, "id_check")]).get_json()["results"] == [answer]

    # Past it, the tick deletes it, once.
    assert tick(_iso(_now() + keep + timedelta(minutes=1)))["offline_steps_pruned"] == 1
    assert kept() == []
    assert tick(_iso(_now() + keep + timedelta(minutes=2)))["offline_steps_pruned"] == 0


def test_pruning_never_drops_an_answer_a_tablet_may_still_need(staff_client, app):
    from app.jobs.booking import tick

    app.config["OFFLINE_STEP_KEEP_DAYS"] = 0  # a careless setting
    hire = _pickup_hire(staff_client.branch)
    send(staff_client, [step("young-step-01", hire, "id_check")])
    max_age = timedelta(hours=app.config["OFFLINE_STEP_MAX_AGE_HOURS"])
    assert tick(_iso(_now() + max_age - timedelta(minutes=5)))["offline_steps_pruned"] == 0
    assert db.session.scalars(select(OfflineStep.key)).all() == ["young-step-01"]
    # Once the step is too old to be sent at all, its answer may go.
    assert tick(_iso(_now() + max_age + timedelta(minutes=5)))["offline_steps_pruned"] == 1

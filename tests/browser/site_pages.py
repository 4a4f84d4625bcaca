"""Every page of the portal, for each kind of visitor, in a world where each page has
something to show (issue 17): shared by the accessibility sweep and `scripts/screenshots`.

`build_world()` loads the demo fleet and adds people and hires in every state a page depends
on (held and unpaid, paid and upcoming, a pickup due, a pickup late, a car out and back late
with its condition recorded, a settled return, a cancelled hire with a crypto refund waiting
for its address). `seeds(world)` names, per role, the pages to start from; a crawl from them
(`page_endpoint`, `CRAWL_SKIP`) finds the rest. `ROLE_SIGN_IN` says how each role signs in;
some sign-in steps are pages of their own (two-factor code, first set-up, expired password).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

from flask import Flask
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from app.accounts.invites import make_invite_token
from app.accounts.services import make_reset_token
from app.demo import load_demo
from app.extensions import db
from app.models import Car, CryptoRefund, HireState, Inspection, Payment, User
from tests import factories

ROLES = ["anonymous", "customer", "staff", "admin"]
# GET endpoints that are not pages (files, fragments polled by a page, machine answers).
NOT_PAGES = {"static", "media.car_photo", "counter.inspection_photo", "admin.audit_csv",
             "admin.report_csv", "main.healthz", "metrics.scrape", "main.outbox_attachment",
             "accounts.licence_status", "counter.licence_check_status", "payments.status",
             "payments.crypto_status",
             # Files and polled fragments (issue 18): PDFs, the CSV, the licence photo, the ZIP.
             "booking.licence_photo", "paperwork.agreement_pdf", "paperwork.agreement_status",
             "paperwork.addenda_status",
             "paperwork.invoice_download", "paperwork.invoices_csv", "privacy.download_export",
             # Pictures (issue 17): the favicon and the narrower copies of car photos.
             "main.favicon", "media.car_photo_width",
             # The offline counter's JSON sync and the service worker's script (issue 20).
             "counter.offline_sync", "main.service_worker"}
# Never followed by the crawl: signing out ends the session the crawl works in.
CRAWL_SKIP_PREFIXES = ("/static/", "/media/", "/account/sign-out", "/counter/photos/")
CRAWL_SKIP_SUFFIXES = (".csv", ".jpg", ".png", ".svg", ".ics", ".pdf")
MAX_PER_ENDPOINT = 2  # crawled variants of one page (seeds always count)


@dataclass
class World:
    customer: User
    staff: User
    admin: User
    new_staff: User  # not enrolled in two-factor yet: sees the set-up page
    expired_staff: User  # password past its age: sees the new-password page
    hires: dict[str, str] = field(default_factory=dict)  # what -> reference
    car_id: int = 0
    refund_id: int = 0
    reset_token: str = ""
    invite_token: str = ""


def _paid(hire, key: str) -> None:
    db.session.add(Payment(hire_id=hire.id, method="card", kind="charge", state="succeeded",
                           amount_pence=hire.total_pence, provider_ref=f"pi_a11y_{key}",
                           idempotency_key=f"hire:{hire.id}:charge:a11y"))


def build_world() -> World:
    """Demo fleet and prices, the people who sign in, and hires in every state a page shows."""
    load_demo()
    cars = db.session.scalars(select(Car).order_by(Car.id)).all()
    branch = cars[2].home_branch
    at_branch = [c for c in cars if c.home_branch_id == branch.id]
    customer = factories.make_user("customer", full_name="Pat Page")
    staff = factories.enrol_two_factor(factories.make_user("staff", full_name="Sam Counter", branch=branch))
    admin = factories.enrol_two_factor(factories.make_user("admin", full_name="Alex Admin"))
    new_staff = factories.make_user("staff", full_name="Nina New", branch=branch)
    expired_staff = factories.enrol_two_factor(factories.make_user("staff", full_name="Eli Expired", branch=branch))
    expired_staff.password_changed_at = datetime.now(timezone.utc) - timedelta(days=400)
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)

    held = factories.make_hire(car=at_branch[0], customer=customer, start=now + timedelta(days=20),
                               state=HireState.HELD)
    held.hold_expires_at = now + timedelta(minutes=15)
    upcoming = factories.make_hire(car=at_branch[1], customer=customer, start=now + timedelta(days=30))
    pickup = factories.make_hire(car=at_branch[2], customer=customer, start=now + timedelta(hours=2))
    late_pickup = factories.make_hire(car=at_branch[3], customer=customer, start=now - timedelta(hours=1))
    # Out three days, due back 2 h 58 min ago: late hours and fuel on the return screen.
    back_late = factories.make_hire(car=at_branch[4], customer=customer,
                                    start=now - timedelta(days=3, hours=2, minutes=58), days=3)
    settled = factories.make_hire(car=at_branch[5], customer=customer, start=now - timedelta(days=6), days=2)
    cancelled = factories.make_hire(car=at_branch[6], customer=customer, start=now + timedelta(days=40),
                                    state=HireState.CANCELLED, occupy=False)
    for key, hire in (("up", upcoming), ("pick", pickup), ("late", late_pickup), ("back", back_late),
                      ("settled", settled)):
        _paid(hire, key)
    for hire in (back_late, settled):
        hire.transition(HireState.ACTIVE, by=staff, why="picked up")
        db.session.add(Inspection(hire_id=hire.id, kind="pickup", odometer_miles=20_000, fuel_eighths=8,
                                  checklist={}, damages=[], waivers={}, charge_lines=[],
                                  condition_recorded_at=hire.start_at))
    db.session.add(Inspection(hire_id=back_late.id, kind="return", odometer_miles=20_300, fuel_eighths=6,
                              checklist={}, damages=[], waivers={}, charge_lines=[],
                              condition_recorded_at=now, started_by_id=staff.id))
    settled.transition(HireState.RETURNED, by=staff, why="returned")
    db.session.add(Inspection(hire_id=settled.id, kind="return", odometer_miles=20_200, fuel_eighths=8,
                              checklist={}, damages=[], waivers={"cleaning": "Customer's dog: agreed"},
                              charge_lines=[{"code": "cleaning", "label": "Cleaning", "amount_pence": 4500,
                                             "waived_reason": "Customer's dog: agreed"}],
                              total_pence=0, condition_recorded_at=settled.end_at,
                              completed_at=settled.end_at, completed_by_id=staff.id))
    db.session.flush()
    refund = CryptoRefund(hire_id=cancelled.id, idempotency_key="a11y-refund", amount_wei=10**16,
                          amount_pence=2500, reason="Cancelled more than 48 hours ahead",
                          suggested_address="0x" + "ab" * 20)
    db.session.add(refund)
    invited = factories.make_user("staff", full_name="Ivy Invited", branch=branch)
    invited.invited_at = now
    db.session.commit()
    return World(customer=customer, staff=staff, admin=admin, new_staff=new_staff,
                 expired_staff=expired_staff, car_id=at_branch[0].id, refund_id=refund.id,
                 hires={"held": held.reference, "upcoming": upcoming.reference, "pickup": pickup.reference,
                        "late_pickup": late_pickup.reference, "back_late": back_late.reference,
                        "settled": settled.reference, "cancelled": cancelled.reference},
                 reset_token=make_reset_token(customer), invite_token=make_invite_token(invited))


def seeds(world: World, role: str) -> list[str]:
    """The pages each role starts from: the crawl finds the others from their links."""
    h = world.hires
    public = ["/", "/book/", "/accessibility", "/no-such-page"]
    if role == "anonymous":
        return public + ["/account/sign-in", "/account/sign-up", "/account/forgot-password",
                         f"/account/reset/{world.reset_token}", "/account/reset/not-a-token",
                         f"/account/invite/{world.invite_token}", "/account/invite/not-a-token"]
    if role == "customer":
        return public + [
            "/book/mine", "/account/profile", "/account/licence", "/account/password",
            *(f"/book/hires/{ref}" for ref in h.values()),
            f"/book/hires/{h['upcoming']}/cancel", f"/book/hires/{h['upcoming']}/change",
            f"/pay/{h['held']}", f"/pay/{h['held']}/card", f"/pay/{h['held']}/card/continue",
            f"/pay/{h['held']}/return", f"/pay/{h['held']}/crypto",
            f"/pay/{h['upcoming']}/receipt", f"/pay/{h['settled']}/receipt",
            f"/pay/{h['cancelled']}/crypto/refunds/{world.refund_id}"]
    staff_pages = ["/counter/", *(f"/counter/hires/{h[k]}" for k in ("pickup", "back_late", "settled")),
                   f"/counter/hires/{h['late_pickup']}/no-show", "/fleet/", "/fleet/cars/new",
                   f"/fleet/cars/{world.car_id}", f"/fleet/cars/{world.car_id}/edit",
                   f"/fleet/hires/{h['back_late']}", f"/pay/{h['settled']}/receipt",
                   "/pay/crypto/review", "/account/two-factor/recovery-codes", "/accessibility",
                   "/counter/offline"]  # the offline counter's page: opened by the service worker
    if role == "staff":
        return staff_pages
    return ["/admin/", "/admin/staff", "/admin/staff/invite", "/admin/prices", "/admin/audit",
            "/admin/reports", "/dev/outbox", *staff_pages]


def page_endpoint(app: Flask, url: str) -> str | None:
    """The endpoint a same-site page address leads to (None: not a page to visit)."""
    parts = urlsplit(url)
    if parts.path.startswith(CRAWL_SKIP_PREFIXES) or parts.path.endswith(CRAWL_SKIP_SUFFIXES):
        return None
    try:
        endpoint, _ = app.url_map.bind("localhost").match(parts.path, method="GET")
    except HTTPException:
        return "error-page" if parts.path == "/no-such-page" else None
    return None if endpoint in NOT_PAGES else endpoint


def every_page_endpoint(app: Flask) -> set[str]:
    """Every GET endpoint of the app that answers a page."""
    return {r.endpoint for r in app.url_map.iter_rules()
            if "GET" in (r.methods or ()) and r.endpoint not in NOT_PAGES}

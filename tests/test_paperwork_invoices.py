"""VAT invoices and credit notes (issue 18): the booking's invoice at payment, the
settlement's invoice with the deposit, a credit note for every refund correcting the
invoice, gapless numbers under 20 concurrent settlements (SQLite and PostgreSQL), the staff
list and its CSV checked field by field, and who may fetch them."""

from __future__ import annotations

import csv
import io
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from zoneinfo import ZoneInfo

from pypdf import PdfReader
from sqlalchemy import select

from app import payments
from app.booking.extending import end_token, extend_hire, preview_extension
from app.booking.seed import seed_rate_tables
from app.counter import car_return, inspections
from app.extensions import db
from app.models import Hire, HireState, Inspection, Invoice, User, utcnow
from app.paperwork import invoices_for, invoices_of
from app.paperwork.invoicing import split_gross
from tests import factories
from tests.conftest import AuthActions, csrf_token, post_form
from tests.test_counter import condition
from tests.test_counter_money import picked_up, post, staff_client
from tests.test_booking import FMT, as_utc, local_day
from tests.test_payments_card import (CARD_OK, checkout_payments, customer, deliver, paid_hire, pay,  # noqa: F401
                                      standin, stripe_app)

SETTLEMENTS = 20


def _text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def test_vat_is_worked_out_from_the_gross_in_whole_pence():
    assert split_gross(11700, 20) == (9750, 1950)
    assert split_gross(1, 20) == (1, 0)
    assert split_gross(1001, 20) == (834, 167)  # 834.17 net rounds down; the VAT takes the rest
    assert split_gross(-600, 20) == (-500, -100)


def test_paying_invoices_the_rental_and_cancelling_issues_a_credit_note_that_corrects_it(
        stripe_app, client, customer, standin):
    stripe_app.config.update(COMPANY_VAT_NUMBER="GB 123 4567 89",
                             COMPANY_ADDRESS=["7 Runway Road", "Hounslow", "TW6 2AA"])
    hire = paid_hire(client, standin, customer, start=utcnow() + timedelta(days=10))
    [invoice] = invoices_of(hire)
    assert (invoice.kind, invoice.number, invoice.display_number, invoice.purpose) == ("invoice", 1, "INV-000001",
                                                                                       "booking")
    assert (invoice.net_pence, invoice.vat_pence, invoice.gross_pence) == (9750, 1950, hire.total_pence)
    assert invoice.lines == [{"label": "Rental", "net_pence": 9750, "vat_percent": 20, "vat_pence": 1950,
                              "gross_pence": 11700}]

    # The customer cancels (free: ten days ahead): refunded in full, with a credit note.
    response = client.post(f"/book/hires/{hire.reference}/cancel",
                           data={"csrf_token": csrf_token(client, "/book/mine")})
    assert response.status_code == 303
    db.session.expire_all()
    booking, credit = invoices_of(hire)
    assert booking.id == invoice.id
    assert (credit.kind, credit.display_number, credit.corrects_id, credit.gross_pence) == (
        "credit_note", "CN-000001", invoice.id, hire.total_pence)
    assert (credit.net_pence, credit.vat_pence) == (9750, 1950)

    # Both PDFs say what a VAT document must: seller, VAT number, numbers, lines, totals.
    pdf = client.get(f"/paperwork/documents/{invoice.id}.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    text = _text(pdf.data)
    for expected in ("VAT invoice INV-000001", "ACME Rentals Ltd", "7 Runway Road", "GB 123 4567 89",
                     hire.reference, customer.full_name, "Rental", "£97.50", "20%", "£19.50", "£117.00"):
        assert expected in text, expected
    text = _text(client.get(f"/paperwork/documents/{credit.id}.pdf").data)
    assert "Credit note CN-000001" in text and "VAT invoice INV-000001" in text and "£117.00" in text
    # My bookings lists both.
    mine = client.get("/book/mine").get_data(as_text=True)
    assert "VAT invoice INV-000001" in mine and "Credit note CN-000001" in mine
    assert [d.id for d in invoices_for(customer)] == [invoice.id, credit.id]


def test_refusal_at_pickup_credits_the_whole_invoice(stripe_app, client, customer, standin):
    hire = paid_hire(client, standin, customer, start=utcnow() + timedelta(hours=2))
    staff = staff_client(stripe_app)
    assert post(staff, f"/counter/hires/{hire.reference}/pickup/refuse",
                {"reason": "licence expired yesterday"}).status_code == 303
    db.session.expire_all()
    invoice, credit = invoices_of(hire)
    assert credit.kind == "credit_note" and credit.corrects_id == invoice.id
    assert credit.gross_pence == invoice.gross_pence and "licence expired yesterday" in credit.reason


def test_settlement_invoice_shows_the_charges_and_what_became_of_the_deposit(stripe_app, client, customer,
                                                                             standin):
    hire = paid_hire(client, standin, customer, start=utcnow() - timedelta(days=3), days=3)
    hold = payments.place_deposit_hold(hire)
    staff = staff_client(stripe_app)
    picked_up(hire)
    assert post(staff, f"/counter/hires/{hire.reference}/return/condition", condition(300, 6)).status_code == 303
    insp = inspections.inspection(hire, "return")
    assert post(staff, f"/counter/hires/{hire.reference}/return/settle",
                {"version": str(insp.version)}).status_code == 303
    db.session.expire_all()
    booking, settlement = invoices_of(hire)
    owed = 2 * 1200 + 2000
    assert (settlement.purpose, settlement.display_number, settlement.gross_pence) == ("settlement", "INV-000002", owed)
    assert [(l["label"], l["gross_pence"], l["vat_pence"]) for l in settlement.lines] == [
        ("Fuel: 2/8 of a tank short", 2400, 400), ("Refuelling service", 2000, 333)]
    assert (settlement.deposit_held_pence, settlement.deposit_taken_pence, settlement.deposit_released_pence,
            settlement.card_charged_pence) == (hold.amount_pence, owed, hold.amount_pence - owed, 0)
    text = _text(staff.get(f"/paperwork/documents/{settlement.id}.pdf").data)
    assert "Taken from the deposit" in text and "£44.00" in text and "Deposit released" in text
    assert f"£{(hold.amount_pence - owed) / 100:,.2f}" in text
    page = staff.get(f"/counter/hires/{hire.reference}").get_data(as_text=True)
    assert "VAT invoice INV-000002" in page


def _returned_on_time(staff: User) -> tuple[int, int]:
    """An active hire back at its end time, no charges: (hire id, the return's version)."""
    hire = factories.make_hire(car=factories.make_car(odometer_miles=100), start=utcnow() - timedelta(days=3),
                               days=3, state=HireState.ACTIVE)
    db.session.add(Inspection(hire_id=hire.id, kind="pickup", odometer_miles=100, fuel_eighths=8, checklist={},
                              damages=[], waivers={}, charge_lines=[], condition_recorded_at=hire.start_at))
    back = Inspection(hire_id=hire.id, kind="return", odometer_miles=150, fuel_eighths=8, checklist={},
                      damages=[], waivers={}, charge_lines=[], condition_recorded_at=hire.end_at,
                      started_by_id=staff.id)
    db.session.add(back)
    db.session.commit()
    return hire.id, back.version


def test_twenty_settlements_at_once_are_numbered_1_to_20(app):
    """Each settlement in its own thread with its own database session (app context), all
    released at the same instant: no gap, no duplicate (SQLite and PostgreSQL passes)."""
    staff = factories.make_user("staff")
    staff_id = staff.id
    ready = [_returned_on_time(staff) for _ in range(SETTLEMENTS)]
    db.session.remove()
    barrier = threading.Barrier(SETTLEMENTS)

    def settle(item: tuple[int, int]) -> str:
        hire_id, version = item
        with app.app_context():
            try:
                hire, by = db.session.get(Hire, hire_id), db.session.get(User, staff_id)
                db.session.commit()  # back to the pool: its default 15 connections serve all 20
                barrier.wait(timeout=60)
                result = car_return.settle_return(hire, by=by, now=utcnow(), version=version)
                return "ok" if not result.problems else "; ".join(result.problems)
            finally:
                db.session.remove()

    with ThreadPoolExecutor(max_workers=SETTLEMENTS) as pool:
        outcomes = list(pool.map(settle, ready))
    assert outcomes == ["ok"] * SETTLEMENTS
    numbers = sorted(db.session.scalars(select(Invoice.number).where(Invoice.kind == "invoice")))
    assert numbers == list(range(1, SETTLEMENTS + 1))
    assert db.session.scalars(select(Invoice.purpose).distinct()).all() == ["settlement"]
    assert {h.state for h in db.session.scalars(select(Hire))} == {"closed"}


def test_staff_list_and_csv_field_by_field(stripe_app, client, customer, standin):
    hire = paid_hire(client, standin, customer, start=utcnow() + timedelta(days=10))
    client.post(f"/book/hires/{hire.reference}/cancel", data={"csrf_token": csrf_token(client, "/book/mine")})
    db.session.expire_all()
    invoice, credit = invoices_of(hire)
    today = utcnow().astimezone(ZoneInfo("Europe/London")).date()

    # Customers may not see the list; another customer may not fetch this one's documents.
    assert client.get("/paperwork/invoices").status_code == 403
    assert client.get("/paperwork/invoices.csv").status_code == 403
    stranger = stripe_app.test_client()
    AuthActions(stranger).sign_in_as("customer", email="not.the.customer@example.com")
    assert stranger.get(f"/paperwork/documents/{invoice.id}.pdf").status_code == 404
    assert stranger.get(f"/paperwork/documents/{credit.id}.pdf").status_code == 404

    staff = staff_client(stripe_app)
    page = staff.get("/paperwork/invoices", query_string={"date_from": today.isoformat(),
                                                         "date_to": today.isoformat()})
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "2 documents" in html
    assert "VAT invoice INV-000001" in html and "Credit note CN-000001" in html and "total £0.00" in html
    bad = staff.get("/paperwork/invoices", query_string={"date_from": "2026-05-02", "date_to": "2026-05-01"})
    assert bad.status_code == 422 and "The end date is before the start date." in bad.get_data(as_text=True)
    assert staff.get("/paperwork/invoices.csv", query_string={"date_from": "2026-05-02",
                                                              "date_to": "2026-05-01"}).status_code == 422

    response = staff.get("/paperwork/invoices.csv", query_string={"date_from": today.isoformat(),
                                                                 "date_to": today.isoformat()})
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert f'filename="acme-invoices-{today}-to-{today}.csv"' in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    common = {"issued_on": today.isoformat(), "tax_point": today.isoformat(), "booking": hire.reference,
              "customer": customer.full_name, "customer_email": customer.email, "customer_address": "1 High Street, London, SW1A 1AA",
              "vat_rates": "20%", "deposit_held": "0.00", "deposit_taken": "0.00", "deposit_released": "0.00",
              "card_charged": "0.00"}
    assert rows == [
        {**common, "type": "invoice", "number": "INV-000001", "corrects": "", "description": "Rental",
         "net": "97.50", "vat": "19.50", "gross": "117.00"},
        {**common, "type": "credit_note", "number": "CN-000001", "corrects": "INV-000001",
         "description": "Refund: cancelled by the customer; refund £117.00 (policy: free until 48 hours "
                        "before pickup, then a fee of £50.00)", "net": "-97.50", "vat": "-19.50", "gross": "-117.00"},
    ]
    # Outside the range: nothing.
    yesterday = (today - timedelta(days=1)).isoformat()
    empty = staff.get("/paperwork/invoices.csv", query_string={"date_from": yesterday, "date_to": yesterday})
    assert list(csv.DictReader(io.StringIO(empty.get_data(as_text=True)))) == []


def test_a_dearer_change_is_invoiced_for_the_difference_when_it_is_paid(stripe_app, client, customer, standin):
    seed_rate_tables()
    hire = paid_hire(client, standin, customer, start=as_utc(local_day(10)), days=2)
    paid = hire.total_pence
    url = f"/book/hires/{hire.reference}/change"
    longer = {"pickup_at": local_day(10).strftime(FMT), "return_at": local_day(14).strftime(FMT)}
    response = client.post(url, data={**longer, "csrf_token": csrf_token(client, url)})
    assert response.status_code == 303 and response.headers["Location"].endswith(f"/pay/{hire.reference}")
    db.session.expire_all()
    difference = hire.total_pence - paid
    assert difference > 0
    assert [d.purpose for d in invoices_of(hire)] == ["booking"]  # nothing paid yet, nothing invoiced

    # The customer pays the difference by card; the webhooks (delivered twice) confirm it.
    response = post_form(client, f"/pay/{hire.reference}/card", {"amount_pence": difference})
    assert response.status_code == 303, response.get_data(as_text=True)
    assert pay(checkout_payments(hire)[-1].details["checkout_url"], CARD_OK).status_code == 303
    for event in standin.events() * 2:
        deliver(client, standin, event)
    db.session.expire_all()
    booking, change = invoices_of(hire)
    assert (booking.gross_pence, change.kind, change.purpose, change.display_number) == (
        paid, "invoice", "booking", "INV-000002")
    assert change.gross_pence == difference and change.tax_point is not None
    [line] = change.lines
    assert line["label"].startswith("Booking changed to ") and line["label"].endswith(": difference")
    assert (line["net_pence"], line["vat_pence"]) == split_gross(difference, 20)
    assert booking.gross_pence + change.gross_pence == hire.total_pence
    text = _text(client.get(f"/paperwork/documents/{change.id}.pdf").data)
    assert "VAT invoice INV-000002" in text and hire.reference in text and f"£{difference / 100:,.2f}" in text
    assert "VAT invoice INV-000002" in client.get("/book/mine").get_data(as_text=True)


def test_paying_an_extension_left_to_pay_invoices_nothing_twice(stripe_app, client, customer, standin):
    """An extension is invoiced when it is made; paying it later is no dearer change."""
    seed_rate_tables()
    hire = paid_hire(client, standin, customer, start=as_utc(local_day(10)), days=2)
    paid = hire.total_pence
    for charge in checkout_payments(hire):  # the card was not saved: the extension is left to pay
        charge.details = {k: v for k, v in charge.details.items() if k != "customer"}
    db.session.commit()
    preview = preview_extension(hire, local_day(13), now=utcnow())
    extended = extend_hire(hire, local_day(13), by=customer, now=utcnow(), expected_extra=preview.extra_pence,
                           expected_end=end_token(hire))
    assert extended.payment is None
    db.session.expire_all()
    extra = hire.total_pence - paid
    assert extra > 0 and [d.gross_pence for d in invoices_of(hire)] == [paid, extra]
    response = post_form(client, f"/pay/{hire.reference}/card", {"amount_pence": extra})
    assert response.status_code == 303, response.get_data(as_text=True)
    assert pay(checkout_payments(hire)[-1].details["checkout_url"], CARD_OK).status_code == 303
    for event in standin.events():
        deliver(client, standin, event)
    db.session.expire_all()
    assert payments.amount_due_pence(hire) == 0
    assert [d.gross_pence for d in invoices_of(hire)] == [paid, extra]


def _dearer_then_paid(client, standin, customer, hire, return_day):
    """Change `hire` to return on `return_day` (dearer) and pay the difference by card."""
    url = f"/book/hires/{hire.reference}/change"
    response = client.post(url, data={"pickup_at": local_day(10).strftime(FMT),
                                      "return_at": local_day(return_day).strftime(FMT),
                                      "csrf_token": csrf_token(client, url)})
    assert response.status_code == 303
    db.session.expire_all()
    due = payments.amount_due_pence(hire)
    assert due > 0
    assert post_form(client, f"/pay/{hire.reference}/card", {"amount_pence": due}).status_code == 303
    assert pay(checkout_payments(hire)[-1].details["checkout_url"], CARD_OK).status_code == 303
    for event in standin.events():
        deliver(client, standin, event)
    db.session.expire_all()
    return due


def _cheaper(client, hire, return_day):
    url = f"/book/hires/{hire.reference}/change"
    response = client.post(url, data={"pickup_at": local_day(10).strftime(FMT),
                                      "return_at": local_day(return_day).strftime(FMT),
                                      "csrf_token": csrf_token(client, url)})
    assert response.status_code == 303, response.get_data(as_text=True)
    db.session.expire_all()


def test_a_refund_after_a_dearer_then_a_cheaper_change_corrects_the_change_invoice(
        stripe_app, client, customer, standin):
    seed_rate_tables()
    hire = paid_hire(client, standin, customer, start=as_utc(local_day(10)), days=2)
    difference = _dearer_then_paid(client, standin, customer, hire, 14)
    booking, change = invoices_of(hire)
    assert change.gross_pence == difference
    dearer_total = hire.total_pence

    _cheaper(client, hire, 13)  # one day less: the refund is less than the change's invoice
    refund = dearer_total - hire.total_pence
    assert 0 < refund < difference
    booking_, change_, credit = invoices_of(hire)
    assert (credit.kind, credit.corrects_id, credit.gross_pence) == ("credit_note", change.id, refund)
    # The credit note's PDF names the change's invoice, not the booking's.
    text = _text(client.get(f"/paperwork/documents/{credit.id}.pdf").data)
    assert f"VAT invoice {change.display_number}" in text
    assert f"VAT invoice {booking.display_number}" not in text


def test_a_refund_spanning_invoices_is_split_and_never_credits_more_than_an_invoice(
        stripe_app, client, customer, standin):
    seed_rate_tables()
    hire = paid_hire(client, standin, customer, start=as_utc(local_day(10)), days=2)
    paid = hire.total_pence
    difference = _dearer_then_paid(client, standin, customer, hire, 14)
    booking, change = invoices_of(hire)
    dearer_total = hire.total_pence

    _cheaper(client, hire, 11)  # down to one day: more back than the change's invoice holds
    refund = dearer_total - hire.total_pence
    assert refund > difference and hire.total_pence < paid
    documents = invoices_of(hire)
    credits = [d for d in documents if d.kind == "credit_note"]
    assert [(c.corrects_id, c.gross_pence) for c in credits] == [
        (change.id, difference), (booking.id, refund - difference)]
    assert [c.display_number for c in credits] == ["CN-000001", "CN-000002"]
    # What is left invoiced is the new price, and no invoice is credited beyond its total.
    assert sum(d.gross_pence for d in documents if d.kind == "invoice") - sum(
        c.gross_pence for c in credits) == hire.total_pence

    # The refund reported again (a retried job) issues nothing more.
    from app.paperwork import issue_credit_note
    issue_credit_note(hire, amount_pence=refund, reason="again", key=f"hire:{hire.id}:change-refund:{hire.version}",
                      by=None, now=utcnow())
    assert len(invoices_of(hire)) == len(documents)

    # Cancelling now refunds the rest: it corrects what is left of the booking invoice only.
    response = client.post(f"/book/hires/{hire.reference}/cancel",
                           data={"csrf_token": csrf_token(client, "/book/mine")})
    assert response.status_code == 303
    db.session.expire_all()
    last = invoices_of(hire)[-1]
    assert (last.kind, last.corrects_id, last.gross_pence) == ("credit_note", booking.id, hire.total_pence)

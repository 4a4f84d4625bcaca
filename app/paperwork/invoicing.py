"""VAT invoices and credit notes: issued, numbered without gaps, frozen.

When each is issued (UK VAT: a payment received in advance is the tax point for what it
pays for):

- **booking invoice**, when the rental is paid (the hire is confirmed): the frozen price
  lines, tax point the payment. If a refund comes for a hire that has none (paid before
  invoicing existed, or paid after its hold ended), it is issued first, tax point the
  first payment, so that every credit note corrects an invoice.
- **settlement invoice**, when a return is settled at the counter: the charges on return
  (late, fuel, mileage, cleaning, damage; waived ones shown at nothing), and what happened
  to the deposit: held, taken, charged to the card beyond it, released.
- **change invoice**, when the difference of a change to a dearer booking is paid (the
  tax point): the part of the payment that the hire's invoices do not cover yet.
- **credit note**, for every refund (cancellation, no-show, refusal at pickup, a cheaper
  change, an early return, money not owed), correcting the invoice the money comes back
  from: the rental's invoices newest first (after a dearer change then a cheaper one, the
  change's invoice), never more than what is left of an invoice's total, split into one
  credit note per invoice when a refund spans several. An early return's unused days are credited in
  full when the return is settled (the refund is what is left after the return's charges
  are set off against them, so it is covered by that credit note).

Every document has an idempotency key (one business event, one document). Amounts are
VAT-inclusive pence as the customer pays them; a line's VAT is worked out from its gross at
VAT_PERCENT, rounded half up, and a booking invoice keeps the VAT frozen on the hire.
"""

from __future__ import annotations

from datetime import datetime
from typing import Iterable, Optional
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ..audit import record
from ..extensions import db
from ..logging_setup import log
from ..models import Hire, Invoice, Payment, User
from ..settings import settings
from . import company
from .numbering import take_number

EARLY_RETURN_KEY = "hire:{}:early-return-refund"  # the counter's refund of unused days


def split_gross(gross_pence: int, vat_percent: int) -> tuple[int, int]:
    """(net, VAT) within a VAT-inclusive amount, rounded half up (integer pence)."""
    sign = -1 if gross_pence < 0 else 1
    whole = abs(gross_pence)
    net = (whole * 200 + (100 + vat_percent)) // (2 * (100 + vat_percent))
    return sign * net, sign * (whole - net)


def line(label: str, gross_pence: int, vat_percent: int) -> dict:
    net, vat = split_gross(gross_pence, vat_percent)
    return {"label": label, "net_pence": net, "vat_percent": vat_percent, "vat_pence": vat,
            "gross_pence": gross_pence}


def _buyer(hire: Hire) -> dict:
    customer, profile = hire.customer, hire.customer.profile
    address = [profile.address_line1, profile.address_line2, profile.town, profile.postcode] if profile else []
    return {"name": customer.full_name, "email": customer.email, "address": [a for a in address if a]}


def _existing(key: str) -> Optional[Invoice]:
    return db.session.scalar(select(Invoice).where(Invoice.idempotency_key == key))


def _issue(hire: Hire, *, kind: str, purpose: str, key: str, lines: list[dict], now: datetime,
           tax_point: datetime, by: Optional[User], corrects: Optional[Invoice] = None,
           reason: str = "", money: Optional[dict] = None) -> Invoice:
    """Number and store one document (once per `key`). Commits what the session holds first:
    the number must be the new transaction's first write (app/paperwork/numbering.py)."""
    found = _existing(key)
    if found is not None:
        return found
    db.session.commit()
    hire_id, customer_id, buyer = hire.id, hire.customer_id, _buyer(hire)
    number = take_number(kind)
    found = _existing(key)  # issued by another transaction while this one waited for the number
    if found is not None:
        db.session.rollback()  # gives the number back
        return found
    invoice = Invoice(kind=kind, number=number, purpose=purpose, hire_id=hire_id, customer_id=customer_id,
                      corrects_id=corrects.id if corrects else None, idempotency_key=key,
                      issued_at=now, tax_point=tax_point, currency=hire.currency,
                      seller=company.seller(), buyer=buyer, lines=lines,
                      net_pence=sum(l["net_pence"] for l in lines), vat_pence=sum(l["vat_pence"] for l in lines),
                      gross_pence=sum(l["gross_pence"] for l in lines), reason=reason[:500],
                      issued_by_id=by.id if by else None, **(money or {}))
    db.session.add(invoice)
    record(by, f"paperwork.{kind}_issued", hire, {}, {"number": number, "gross_pence": invoice.gross_pence,
                                                       "key": key}, at=now)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return db.session.scalars(select(Invoice).where(Invoice.idempotency_key == key)).one()
    return invoice


def _booking_lines(hire: Hire) -> list[dict]:
    """The frozen price lines with their VAT; the VAT frozen on the hire is kept exactly."""
    rate = settings().money.vat_percent
    lines = [l for l in hire.price_lines if l.get("code") != "vat"]
    vat_line = next((l for l in hire.price_lines if l.get("code") == "vat"), None)
    if vat_line is None:  # lines that already include VAT
        return [line(l["label"], l["amount_pence"], rate) for l in lines]
    found = []
    for l in lines:
        vat = (l["amount_pence"] * rate * 2 + 100) // 200 if l["amount_pence"] >= 0 else 0
        found.append({"label": l["label"], "net_pence": l["amount_pence"], "vat_percent": rate,
                      "vat_pence": vat, "gross_pence": l["amount_pence"] + vat})
    if found:  # rounding per line may differ from the VAT on the sum by a penny or two
        difference = vat_line["amount_pence"] - sum(l["vat_pence"] for l in found)
        found[-1]["vat_pence"] += difference
        found[-1]["gross_pence"] += difference
    return found


def _first_payment_at(hire: Hire) -> Optional[datetime]:
    return db.session.scalar(select(Payment.updated_at).where(
        Payment.hire_id == hire.id, Payment.kind == "charge", Payment.state == "succeeded")
        .order_by(Payment.id).limit(1))


def booking_invoice(hire: Hire) -> Optional[Invoice]:
    return _existing(f"hire:{hire.id}:booking")


def issue_booking_invoice(hire: Hire, *, now: datetime, by: Optional[User] = None,
                          tax_point: Optional[datetime] = None) -> Invoice:
    """The invoice for the rental, at payment (the tax point). Once per hire. Commits."""
    return _issue(hire, kind="invoice", purpose="booking", key=f"hire:{hire.id}:booking",
                  lines=_booking_lines(hire), now=now, tax_point=tax_point or now, by=by)


def issue_extension_invoice(hire: Hire, *, extra_pence: int, new_end: datetime, by: Optional[User],
                            now: datetime) -> Invoice:
    """The invoice for an extension's extra time (VAT-inclusive `extra_pence`), issued when the
    hire is extended: the saved card is charged then, or the amount is owed from then on (the
    tax point). Once per new return time. Commits."""
    tz = hire.return_branch.timezone
    label = f"Extension to {new_end.astimezone(ZoneInfo(tz)):%a %d %b %Y %H:%M %Z}"
    return _issue(hire, kind="invoice", purpose="booking",
                  key=f"hire:{hire.id}:extension:{new_end:%Y%m%dT%H%M}",
                  lines=[line(label, extra_pence, settings().money.vat_percent)], now=now,
                  tax_point=now, by=by)


def rental_invoiced_pence(hire: Hire) -> int:
    """The rental price invoiced so far: booking, extension and change invoices, less every
    credit note."""
    documents = invoices_of(hire)
    return (sum(d.gross_pence for d in documents if d.kind == "invoice" and d.purpose == "booking")
            - sum(d.gross_pence for d in documents if d.kind == "credit_note"))


def issue_change_invoice(hire: Hire, *, paid_pence: int, key: str, by: Optional[User],
                         now: datetime) -> Optional[Invoice]:
    """The invoice for a dearer change's difference, when it is paid (the tax point): what
    this payment (`paid_pence`, VAT-inclusive) brings towards a price not invoiced yet. An
    extension's time is invoiced when it is made, so a payment of it invoices nothing here.
    Once per payment `key`; None when nothing is left to invoice. Commits."""
    found = _existing(f"change:{key}")
    if found is not None:
        return found
    extra = min(paid_pence, hire.total_pence - rental_invoiced_pence(hire))
    if extra <= 0:
        return None
    start = hire.start_at.astimezone(ZoneInfo(hire.pickup_branch.timezone))
    end = hire.end_at.astimezone(ZoneInfo(hire.return_branch.timezone))
    label = f"Booking changed to {start:%a %d %b %Y %H:%M} – {end:%a %d %b %Y %H:%M %Z}: difference"
    return _issue(hire, kind="invoice", purpose="booking", key=f"change:{key}",
                  lines=[line(label, extra, settings().money.vat_percent)], now=now, tax_point=now, by=by)


def issue_settlement_invoice(hire: Hire, *, charge_lines: Iterable[dict], deposit_held_pence: int,
                             taken_pence: int, released_pence: int, card_pence: int, by: Optional[User],
                             now: datetime) -> Invoice:
    """At settlement: the charges on return and what became of the deposit. Once per hire.

    Unused days of an early return (negative lines) are credited in full by a credit note of
    their own, correcting the booking invoice. Commits."""
    rate = settings().money.vat_percent
    lines, credit = [], 0
    for charge in charge_lines:
        owed = 0 if charge.get("waived_reason") else charge["amount_pence"]
        if owed < 0:
            credit += -owed
            continue
        label = charge["label"] + (f" (waived: {charge['waived_reason']})" if charge.get("waived_reason") else "")
        lines.append(line(label, owed, rate))
    invoice = _issue(hire, kind="invoice", purpose="settlement", key=f"hire:{hire.id}:settlement",
                     lines=lines, now=now, tax_point=now, by=by,
                     money={"deposit_held_pence": deposit_held_pence, "deposit_taken_pence": taken_pence,
                            "deposit_released_pence": released_pence, "card_charged_pence": card_pence})
    if credit:
        issue_credit_note(hire, amount_pence=credit, reason="early return: unused days",
                          key=EARLY_RETURN_KEY.format(hire.id), by=by, now=now)
    return invoice


def credited_pence(invoice: Invoice) -> int:
    """What credit notes have corrected of `invoice` so far."""
    return db.session.scalar(select(func.coalesce(func.sum(Invoice.gross_pence), 0)).where(
        Invoice.kind == "credit_note", Invoice.corrects_id == invoice.id)) or 0


def _credit_keys(key: str) -> list[str]:
    """The idempotency keys of a refund's credit notes: one, or one per invoice it spans."""
    return [f"credit:{key}"] + [f"credit:{key}:part{n}" for n in range(2, 100)]


def issue_credit_note(hire: Hire, *, amount_pence: int, reason: str, key: str, by: Optional[User],
                      now: datetime) -> Invoice:
    """Credit notes for a refund of `amount_pence` (VAT-inclusive), each correcting the invoice
    it actually gives money back on: the rental's invoices newest first (a change's or an
    extension's invoice before the booking's), never more against one than is left of its
    total, split across invoices when the refund spans them. The booking invoice is issued
    first if the hire has none. Once per refund key (a rerun finishes what a cut-off run
    left). Returns the first credit note. Commits."""
    if booking_invoice(hire) is None:
        issue_booking_invoice(hire, now=now, tax_point=_first_payment_at(hire) or hire.created_at)
    keys = _credit_keys(key)
    done = list(db.session.scalars(select(Invoice).where(Invoice.idempotency_key.in_(keys))
                                   .order_by(Invoice.id)))
    remaining = amount_pence - sum(d.gross_pence for d in done)
    rate = settings().money.vat_percent
    rental = [d for d in invoices_of(hire) if d.kind == "invoice" and d.purpose == "booking"]
    open_ = [(d, d.gross_pence - credited_pence(d)) for d in reversed(rental)]
    open_ = [(d, left) for d, left in open_ if left > 0]
    part = len(done)
    while remaining > 0 or not done:
        if open_:
            corrects, left = open_.pop(0)
            amount = min(remaining, left)
        else:  # more back than the rental's invoices hold: the rest corrects the booking invoice
            corrects, amount = booking_invoice(hire), remaining
            log().warning("refund beyond the invoiced rental", hire_id=hire.id, key=key,
                          beyond_pence=amount)
        done.append(_issue(hire, kind="credit_note", purpose="refund", key=keys[part],
                           lines=[line(f"Refund: {reason}", amount, rate)], now=now, tax_point=now,
                           by=by, corrects=corrects, reason=reason))
        part += 1
        remaining -= amount
    return done[0]


def invoices_of(hire: Hire) -> list[Invoice]:
    """A hire's invoices and credit notes, oldest first."""
    return list(db.session.scalars(select(Invoice).where(Invoice.hire_id == hire.id).order_by(Invoice.id)))


def invoices_for(customer: User) -> list[Invoice]:
    """Every invoice and credit note issued to a customer, oldest first (for their data export)."""
    return list(db.session.scalars(select(Invoice).where(Invoice.customer_id == customer.id)
                                   .order_by(Invoice.id)))


def invoice_visible_to(invoice_id: int, user: User) -> Optional[Invoice]:
    """The document, if `user` may fetch it: its customer, or staff."""
    invoice = db.session.get(Invoice, invoice_id)
    if invoice is None or not (user.is_staff or invoice.customer_id == user.id):
        return None
    return invoice

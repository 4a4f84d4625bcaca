"""Staff: invoices and credit notes issued between two dates (the business's local days),
as a list and as CSV for the accountant.

CSV: one row per document, amounts in pounds with two decimals; a credit note's amounts
are negative, so that a column's sum is what the period invoiced net of refunds. Cells a
spreadsheet would run as a formula are prefixed with an apostrophe.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from ..extensions import db
from ..models import Invoice

CSV_HEADER = ("type", "number", "issued_on", "tax_point", "booking", "customer", "customer_email",
              "customer_address", "corrects", "description", "net", "vat", "gross", "vat_rates",
              "deposit_held", "deposit_taken", "deposit_released", "card_charged")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Found:
    documents: list[Invoice]
    total: int  # how many match (the list shows at most INVOICE_PAGE_SIZE)
    net_pence: int
    vat_pence: int
    gross_pence: int


def _bounds(start: date, end: date) -> tuple[datetime, datetime]:
    zone = ZoneInfo(current_app.config["DEFAULT_TIMEZONE"])
    return (datetime.combine(start, time(), zone), datetime.combine(end + timedelta(days=1), time(), zone))


def _within(start: date, end: date) -> tuple:
    since, until = _bounds(start, end)
    return (Invoice.issued_at >= since, Invoice.issued_at < until)


def _query(start: date, end: date):
    return select(Invoice).where(*_within(start, end))


def _signed(invoice: Invoice, pence: int) -> int:
    return -pence if invoice.kind == "credit_note" else pence


def find(start: date, end: date) -> Found:
    """The documents issued on those days (the newest first), and their totals."""
    query = _query(start, end)
    documents = list(db.session.scalars(query.options(joinedload(Invoice.hire), joinedload(Invoice.corrects))
                                        .order_by(Invoice.issued_at.desc(), Invoice.id.desc())
                                        .limit(current_app.config["INVOICE_PAGE_SIZE"])))
    sign = func.sum
    totals = db.session.execute(select(
        func.count(Invoice.id),
        sign(Invoice.net_pence).filter(Invoice.kind == "invoice"), sign(Invoice.net_pence).filter(Invoice.kind == "credit_note"),
        sign(Invoice.vat_pence).filter(Invoice.kind == "invoice"), sign(Invoice.vat_pence).filter(Invoice.kind == "credit_note"),
        sign(Invoice.gross_pence).filter(Invoice.kind == "invoice"), sign(Invoice.gross_pence).filter(Invoice.kind == "credit_note"),
    ).where(*_within(start, end))).one()
    count, *sums = [value or 0 for value in totals]
    return Found(documents, count, sums[0] - sums[1], sums[2] - sums[3], sums[4] - sums[5])


def _pounds(pence: int) -> str:
    sign = "-" if pence < 0 else ""
    return f"{sign}{abs(pence) // 100}.{abs(pence) % 100:02d}"


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_text(start: date, end: date) -> str:
    """Every document issued on those days, oldest first, as CSV (CSV_HEADER's columns)."""
    zone = ZoneInfo(current_app.config["DEFAULT_TIMEZONE"])
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    for doc in db.session.scalars(_query(start, end).options(joinedload(Invoice.hire), joinedload(Invoice.corrects))
                                  .order_by(Invoice.issued_at, Invoice.id)):
        amounts = [_pounds(_signed(doc, pence)) for pence in (doc.net_pence, doc.vat_pence, doc.gross_pence)]
        writer.writerow([*(_cell(value) for value in (
            doc.kind, doc.display_number, doc.issued_at.astimezone(zone).date().isoformat(),
            doc.tax_point.astimezone(zone).date().isoformat(), doc.hire.reference, doc.buyer.get("name", ""),
            doc.buyer.get("email", ""), ", ".join(doc.buyer.get("address", [])),
            doc.corrects.display_number if doc.corrects else "",
            "; ".join(l["label"] for l in doc.lines))), *amounts,
            " ".join(sorted({f"{l['vat_percent']}%" for l in doc.lines})),
            _pounds(doc.deposit_held_pence), _pounds(doc.deposit_taken_pence),
            _pounds(doc.deposit_released_pence), _pounds(doc.card_charged_pence)])
    return out.getvalue()

"""A VAT invoice or credit note as a PDF, rendered from its frozen row (same row, same bytes)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from flask import current_app
from reportlab.lib.units import mm
from reportlab.platypus import Spacer

from ..filters import money
from ..models import Invoice
from .pdf import p, render, table


def _date(value, tz: str) -> str:
    return f"{value.astimezone(ZoneInfo(tz)):%d %b %Y}"


def invoice_pdf(invoice: Invoice) -> bytes:
    tz = current_app.config["DEFAULT_TIMEZONE"]
    seller, buyer, cur = invoice.seller, invoice.buyer, invoice.currency
    pounds = lambda pence: money(pence, cur)  # noqa: E731
    title = f"{invoice.title} {invoice.display_number}"

    def make():
        parts = [p(title, "title"),
                 table([["From", "To"],
                        ["\n".join([seller["name"], *seller["address"], f"VAT registration number: {seller['vat_number']}"]),
                         "\n".join([buyer["name"], *buyer["address"], buyer["email"]])]],
                       widths=[85 * mm, 85 * mm]),
                 Spacer(1, 3 * mm),
                 table([["Number", invoice.display_number], ["Date of issue", _date(invoice.issued_at, tz)],
                        ["Tax point", _date(invoice.tax_point, tz)],
                        ["Booking", invoice.hire.reference]]
                       + ([["Corrects", f"{invoice.corrects.title} {invoice.corrects.display_number} of "
                                        f"{_date(invoice.corrects.issued_at, tz)}"]] if invoice.corrects else [])
                       + ([["Reason", invoice.reason]] if invoice.reason else []),
                       widths=[40 * mm, 130 * mm], header=False),
                 Spacer(1, 3 * mm)]
        rows = [["Description", "Net", "VAT rate", "VAT", "Total"]]
        rows += [[l["label"], pounds(l["net_pence"]), f"{l['vat_percent']}%", pounds(l["vat_pence"]),
                  pounds(l["gross_pence"])] for l in invoice.lines] or [["No charges", "", "", "", ""]]
        rows.append(["Totals", pounds(invoice.net_pence), "", pounds(invoice.vat_pence), pounds(invoice.gross_pence)])
        parts.append(table(rows, widths=[80 * mm, 23 * mm, 18 * mm, 23 * mm, 26 * mm]))
        if invoice.purpose == "settlement":
            parts += [p("The deposit", "h2"), table([
                ["Deposit held", pounds(invoice.deposit_held_pence)],
                ["Taken from the deposit", pounds(invoice.deposit_taken_pence)],
                ["Charged to your card beyond the deposit", pounds(invoice.card_charged_pence)],
                ["Deposit released", pounds(invoice.deposit_released_pence)],
            ], widths=[80 * mm, 40 * mm], header=False)]
        if invoice.kind == "credit_note":
            parts.append(p(f"{pounds(invoice.gross_pence)} is refunded to you; the VAT above reduces the VAT "
                           "of the invoice it corrects."))
        parts.append(p(f"{seller['name']}. {seller.get('registration', '')}. {seller.get('email', '')}", "small"))
        return parts

    return render(make, title, f"{seller['name']} · {title}").pdf

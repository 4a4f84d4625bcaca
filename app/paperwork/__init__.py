"""Paperwork (issue 18): the signed rental agreement, VAT invoices and credit notes.

Called by the areas whose events they record (the counter at hand-over and settlement,
booking when a rental is paid, payments' refunds through app/events.py); reads payments
only through its public functions. Public functions for other areas (a data export, an
extension's addendum): `agreement_for`, `agreement_documents`, `request_document`,
`invoices_for`, `invoices_of`.

- `company.py`        the seller's details (settings) and the versioned terms (terms/*.md)
- `pdf.py`            the shared PDF page, and the footer's hash of the document body
- `agreements.py`     the agreement and its addenda: snapshot, pending row, the job's work, email
- `agreement_pdf.py`  the agreement rendered from its snapshot
- `numbering.py`      gapless numbers per series under concurrency
- `invoicing.py`      booking and settlement invoices, credit notes for refunds (when and why)
- `invoice_pdf.py`    an invoice or credit note rendered from its frozen row
- `listing.py`        staff: documents by date range, totals, CSV
- `summary.py`        a hire's paperwork for the customer's and the counter's pages
- `subscribers.py`    facts from other areas: a credit note for every refund, an invoice and
                      an addendum for an extension, the documents in a data download, the
                      agreements' PDFs deleted when an account is erased
- `routes.py`, `forms.py`  downloads, the agreement's status, the staff list (thin)
"""

from flask import Blueprint

bp = Blueprint("paperwork", __name__)

from .agreements import (agreement_documents, agreement_for, request_agreement,  # noqa: E402
                         request_document)
from .company import terms  # noqa: E402
from .invoicing import (EARLY_RETURN_KEY, booking_invoice, invoices_for, invoices_of,  # noqa: E402
                        issue_booking_invoice, issue_change_invoice, issue_credit_note,
                        issue_extension_invoice,
                        issue_settlement_invoice)
from .summary import HirePaperwork, paperwork_of  # noqa: E402
from . import routes, subscribers  # noqa: E402,F401  (the views; the refund subscriber)

__all__ = ["EARLY_RETURN_KEY", "HirePaperwork", "agreement_documents", "agreement_for", "booking_invoice",
           "invoices_for", "invoices_of", "issue_booking_invoice", "issue_change_invoice", "issue_credit_note",
           "issue_settlement_invoice", "paperwork_of", "request_agreement", "request_document", "terms"]

"""Facts other areas report (app/events.py) that make or change paperwork.

- a refund (payments)                  -> a credit note correcting the invoice it gives money
                                          back on (one per invoice when it spans several);
- a hire extended (booking)            -> an invoice for the extra time and, once the car is out
                                          with a signed agreement, an addendum to it;
- "download my data" (privacy)         -> the customer's agreements and invoices for the ZIP;
- a customer's account erased (privacy) -> their agreements' PDFs (which hold the signature)
                                          deleted, their hashes kept; invoices stay, as the law
                                          on accounting requires.
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import select

from .. import events
from ..extensions import db
from ..filters import money
from ..models import Hire, RentalAgreement, User
from .agreements import agreement_for, local, request_document
from .invoice_pdf import invoice_pdf
from .invoicing import invoices_for, issue_credit_note, issue_extension_invoice

# What an erased agreement's snapshot keeps: enough to show which hire and car it was for.
ERASED_SNAPSHOT_KEYS = ("car", "start", "end", "pickup_branch", "return_branch", "seller")


@events.refund_requested.connect
def on_refund_requested(hire: Hire, *, amount_pence: int, reason: str, key: str, by: Optional[User],
                        now: datetime, **_: object) -> None:
    """Every refund gets credit notes correcting the invoices it gives back (once per refund key)."""
    issue_credit_note(hire, amount_pence=amount_pence, reason=reason, key=key, by=by, now=now)


@events.hire_extended.connect
def on_hire_extended(hire: Hire, *, old_end: datetime, new_end: datetime, extra_pence: int,
                     by: Optional[User], now: datetime, **_: object) -> None:
    """The extra time is invoiced; a hire already handed over gets an addendum to its signed
    agreement (before hand-over, the agreement made then already says the new return)."""
    if extra_pence > 0:
        issue_extension_invoice(hire, extra_pence=extra_pence, new_end=new_end, by=by, now=now)
    agreement = agreement_for(hire)
    if agreement is None or agreement.state == "erased":
        return
    tz = hire.return_branch.timezone
    changes = [{"label": "Return", "before": local(old_end, tz), "after": local(new_end, tz)},
               {"label": "Price", "before": money(hire.total_pence - extra_pence, hire.currency),
                "after": money(hire.total_pence, hire.currency)}]
    request_document(hire, {**agreement.snapshot, "end": local(new_end, tz), "changes": changes},
                     kind="addendum", by=by, now=now)


@events.customer_documents.connect
def on_customer_documents(user: User, **_: object) -> list[tuple[str, bytes]]:
    """The customer's rental agreements (as signed) and their invoices and credit notes."""
    documents = list(db.session.scalars(
        select(RentalAgreement).join(Hire).where(Hire.customer_id == user.id,
                                                 RentalAgreement.state == "ready")
        .order_by(RentalAgreement.id)))
    files = [(d.filename, d.pdf) for d in documents if d.pdf]
    files += [(invoice.filename, invoice_pdf(invoice)) for invoice in invoices_for(user)]
    return files


@events.customer_erased.connect
def on_customer_erased(user: User, *, now: datetime, **_: object) -> None:
    """The agreements' PDFs hold the customer's signature: deleted, with the personal parts of
    their snapshots. Their hashes stay, so a copy the customer kept can still be checked.
    Invoices keep the name and address, as accounting law requires."""
    documents = db.session.scalars(select(RentalAgreement).join(Hire).where(
        Hire.customer_id == user.id, RentalAgreement.state != "erased"))
    for document in documents:
        document.pdf = None
        document.snapshot = {k: v for k, v in document.snapshot.items() if k in ERASED_SNAPSHOT_KEYS}
        document.move_to("erased")
    db.session.commit()

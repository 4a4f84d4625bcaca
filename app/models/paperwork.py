"""The hire's paperwork: the signed rental agreement (and later addenda), VAT invoices and
credit notes, and the counter that numbers them without gaps.

A document's content is frozen when it is made (`snapshot` / the invoice's columns), so
the PDF is a function of stored data: it can be rendered again byte for byte to prove what
was signed (app/paperwork/agreement_pdf.py explains the footer's hash).
"""

from __future__ import annotations

from datetime import datetime
from typing import Mapping, Optional

from sqlalchemy import (JSON, CheckConstraint, ForeignKey, LargeBinary, String, Text,
                        UniqueConstraint)
from sqlalchemy.orm import Mapped, deferred, mapped_column, relationship

from ..extensions import db
from .hires import Hire
from .state_machine import StateMachine
from .types import UTCDateTime, utcnow
from .users import User

# pending: waiting for its job; ready: the PDF is stored; failed: the job gave up (staff
# can ask again from the counter's hire page); erased: the customer's account was erased, so
# the PDF (which holds their signature) is gone and only its hashes and a scrubbed snapshot stay.
DOCUMENT_STATES = ("pending", "ready", "failed", "erased")
# The one way a document's state moves (app/models/state_machine.py): a failed one may still
# be made when asked again (a run still going, or staff's "Retry agreement": pending again).
DOCUMENT_TRANSITIONS: Mapping[str, frozenset[str]] = {
    "pending": frozenset({"ready", "failed", "erased"}),
    "failed": frozenset({"pending", "ready", "erased"}),
    "ready": frozenset({"erased"}),
    "erased": frozenset(),
}
# The agreement itself is sequence 1; every later document of the same hire (an extension,
# a car swap) is an addendum with the next sequence, its own snapshot of what changed and
# its own signature, referring to the agreement it amends.
AGREEMENT_KINDS = ("agreement", "addendum")
INVOICE_KINDS = ("invoice", "credit_note")
# invoice: what the customer pays for (booking: the rental at payment, the tax point;
# settlement: the charges on return); credit_note: money given back.
INVOICE_PURPOSES = ("booking", "settlement", "refund")


class RentalAgreement(StateMachine, db.Model):
    __tablename__ = "rental_agreements"
    __table_args__ = (
        UniqueConstraint("hire_id", "sequence", name="uq_rental_agreements_hire_sequence"),
        CheckConstraint(f"state IN {DOCUMENT_STATES!r}", name="state_known"),
        CheckConstraint(f"kind IN {AGREEMENT_KINDS!r}", name="kind_known"),
        CheckConstraint("(kind = 'agreement') = (sequence = 1)", name="agreement_first"),
    )

    TRANSITIONS = DOCUMENT_TRANSITIONS

    id: Mapped[int] = mapped_column(primary_key=True)
    hire_id: Mapped[int] = mapped_column(ForeignKey("hires.id", ondelete="CASCADE"), index=True)
    sequence: Mapped[int] = mapped_column(default=1)
    kind: Mapped[str] = mapped_column(String(10), default="agreement")
    # An addendum's agreement (sequence 1); NULL for the agreement itself.
    amends_id: Mapped[Optional[int]] = mapped_column(ForeignKey("rental_agreements.id"))
    state: Mapped[str] = mapped_column(String(8), default="pending")
    terms_version: Mapped[str] = mapped_column(String(20))
    # Everything the document says, frozen when it was asked for.
    snapshot: Mapped[dict] = mapped_column(JSON, default=dict)
    # SHA-256 (hex) of the body (the PDF rendered without its footer), printed in the footer.
    content_sha256: Mapped[str] = mapped_column(String(64), default="")
    # SHA-256 of the file handed out (the PDF with its footer), to check a copy byte for byte.
    file_sha256: Mapped[str] = mapped_column(String(64), default="")
    pdf: Mapped[Optional[bytes]] = deferred(mapped_column(LargeBinary))
    requested_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    ready_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str] = mapped_column(String(300), default="")

    hire: Mapped[Hire] = relationship()
    amends: Mapped[Optional["RentalAgreement"]] = relationship(remote_side=[id])

    @property
    def filename(self) -> str:
        suffix = "" if self.kind == "agreement" else f"-addendum-{self.sequence - 1}"
        return f"rental-agreement-{self.hire.reference}{suffix}.pdf"


class InvoiceCounter(db.Model):
    """The last number used in one series ("invoice", "credit_note"). A number is taken by
    incrementing this row in the transaction that stores the document: the row lock makes
    concurrent issuers wait, and a rolled-back issue gives its number back (no gaps)."""

    __tablename__ = "invoice_counters"

    series: Mapped[str] = mapped_column(String(20), primary_key=True)
    last_number: Mapped[int] = mapped_column(default=0)


class Invoice(db.Model):
    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("kind", "number", name="uq_invoices_kind_number"),
        CheckConstraint(f"kind IN {INVOICE_KINDS!r}", name="kind_known"),
        CheckConstraint(f"purpose IN {INVOICE_PURPOSES!r}", name="purpose_known"),
        CheckConstraint("number > 0", name="number_positive"),
        CheckConstraint("(kind = 'credit_note') = (purpose = 'refund')", name="credit_notes_refund"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(12))
    number: Mapped[int]
    purpose: Mapped[str] = mapped_column(String(12))
    hire_id: Mapped[int] = mapped_column(ForeignKey("hires.id"), index=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    # A credit note's invoice (the one it corrects).
    corrects_id: Mapped[Optional[int]] = mapped_column(ForeignKey("invoices.id"))
    # One business event, one document: "hire:42:booking", "hire:42:settlement",
    # "credit:<refund key>".
    idempotency_key: Mapped[str] = mapped_column(String(100), unique=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    # The time of supply / tax point (the payment date for a booking paid in advance).
    tax_point: Mapped[datetime] = mapped_column(UTCDateTime())
    currency: Mapped[str] = mapped_column(String(3), default="GBP")
    # Frozen parties: the seller from settings, the customer from their profile.
    seller: Mapped[dict] = mapped_column(JSON, default=dict)
    buyer: Mapped[dict] = mapped_column(JSON, default=dict)
    # [{"label", "net_pence", "vat_percent", "vat_pence", "gross_pence"}]
    lines: Mapped[list] = mapped_column(JSON, default=list)
    net_pence: Mapped[int] = mapped_column(default=0)
    vat_pence: Mapped[int] = mapped_column(default=0)
    gross_pence: Mapped[int] = mapped_column(default=0)
    # Settlement: the deposit held, what was taken from it, charged to the card beyond it,
    # and released back.
    deposit_held_pence: Mapped[int] = mapped_column(default=0)
    deposit_taken_pence: Mapped[int] = mapped_column(default=0)
    deposit_released_pence: Mapped[int] = mapped_column(default=0)
    card_charged_pence: Mapped[int] = mapped_column(default=0)
    reason: Mapped[str] = mapped_column(Text, default="")
    issued_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))

    hire: Mapped[Hire] = relationship()
    customer: Mapped[User] = relationship(foreign_keys=[customer_id])
    corrects: Mapped[Optional["Invoice"]] = relationship(remote_side=[id])

    @property
    def display_number(self) -> str:
        prefix = self.seller.get("invoice_prefix" if self.kind == "invoice" else "credit_note_prefix", "")
        return f"{prefix}{self.number:06d}"

    @property
    def title(self) -> str:
        return "VAT invoice" if self.kind == "invoice" else "Credit note"

    @property
    def filename(self) -> str:
        return f"{self.kind.replace('_', '-')}-{self.display_number}.pdf"

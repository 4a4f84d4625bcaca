"""What the customer's and the counter's pages show of a hire's paperwork: its agreement
documents and its invoices and credit notes, for many hires in two queries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from sqlalchemy import select

from ..extensions import db
from ..models import Invoice, RentalAgreement


@dataclass
class HirePaperwork:
    agreements: list[RentalAgreement] = field(default_factory=list)
    invoices: list[Invoice] = field(default_factory=list)

    @property
    def agreement(self) -> RentalAgreement | None:
        return self.agreements[0] if self.agreements else None

    @property
    def addenda(self) -> list[RentalAgreement]:
        """The changes signed after hand-over (an extension of a car already out), in order."""
        return self.agreements[1:]


def paperwork_of(hire_ids: Iterable[int]) -> dict[int, HirePaperwork]:
    """hire id -> its paperwork (empty for a hire that has none)."""
    ids = list(hire_ids)
    found = {hire_id: HirePaperwork() for hire_id in ids}
    if not ids:
        return found
    for document in db.session.scalars(select(RentalAgreement).where(RentalAgreement.hire_id.in_(ids))
                                       .order_by(RentalAgreement.sequence)):
        found[document.hire_id].agreements.append(document)
    for invoice in db.session.scalars(select(Invoice).where(Invoice.hire_id.in_(ids)).order_by(Invoice.id)):
        found[invoice.hire_id].invoices.append(invoice)
    return found

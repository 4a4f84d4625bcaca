"""Gapless document numbers: one series per kind ("invoice", "credit_note"), from 1.

`take_number` increments the series' counter row inside the caller's transaction and must
be its first write: on PostgreSQL the row lock makes a concurrent issuer wait until this
transaction ends; on SQLite the transaction's first write takes the database's write lock
(the driver begins it there), so issuers run one at a time. A transaction that rolls back
gives its number back, so no number is skipped, and none is used twice (the invoices'
unique (kind, number) is the last guard).
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import InvoiceCounter


def take_number(series: str) -> int:
    """The next number of `series` (the counter row is created on first use)."""
    for _ in range(2):
        taken = db.session.execute(
            update(InvoiceCounter).where(InvoiceCounter.series == series)
            .values(last_number=InvoiceCounter.last_number + 1)
            .returning(InvoiceCounter.last_number)
            .execution_options(synchronize_session=False)).scalar_one_or_none()
        if taken is not None:
            return taken
        try:  # the first document of the series: create its counter (once, whoever wins)
            with db.session.begin_nested():
                db.session.add(InvoiceCounter(series=series, last_number=1))
            return 1
        except IntegrityError:
            continue  # another transaction created it a moment ago: take the next one
    raise RuntimeError(f"could not number a document of {series!r}")


def last_number(series: str) -> int:
    return db.session.scalar(select(InvoiceCounter.last_number).where(InvoiceCounter.series == series)) or 0

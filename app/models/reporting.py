"""What the admin reports read: rolled-up figures per car and period, and the indexes the
reports and the audit viewer need on other areas' tables.

Reports aggregate hires by when they start (revenue, cancellations, no-shows...) and by the
period they overlap (utilisation: `end_at > period start AND start_at < period end`) or
end in, and a hire's payments; without these, every report scans every hire or payment. Kept here, beside their only readers, and created by
migration 0006.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Optional

from sqlalchemy import BigInteger, CheckConstraint, Date, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .audit import AuditRecord
from .hires import Hire
from .payments import Payment
from .types import UTCDateTime, utcnow

# On PostgreSQL the other columns the reports read ride along in the index (INCLUDE), so a
# report reads the index alone ("index-only scan") instead of visiting every hire row.
_REPORT_COLUMNS = ["id", "car_id", "state"]
hires_by_start = Index("ix_hires_reports_start_at", Hire.start_at,
                       postgresql_include=[*_REPORT_COLUMNS, "end_at"])
hires_by_end = Index("ix_hires_reports_end_at", Hire.end_at,
                     postgresql_include=[*_REPORT_COLUMNS, "start_at"])
audit_by_object = Index("ix_audit_records_object", AuditRecord.object_type, AuditRecord.object_id)
# Revenue: a hire's payments found by hire, read from the index alone.
payments_by_hire = Index("ix_payments_reports_hire_id", Payment.hire_id,
                         postgresql_include=["state", "kind", "method", "amount_pence"])


class ReportFact(db.Model):
    """One car's figures for one week or month: what the admin reports add up.

    Rebuilt from hires, payments and return inspections by `app.admin.reports.refresh`
    (recent periods every few minutes, everything nightly), so that a report over years of
    hires reads a few thousand of these rows instead of millions of hires.
    """

    __tablename__ = "report_facts"
    __table_args__ = (
        CheckConstraint("period_kind IN ('week', 'month')", name="period_kind_known"),
    )

    period_kind: Mapped[str] = mapped_column(String(5), primary_key=True)
    period_start: Mapped[date] = mapped_column(Date, primary_key=True)  # local date
    car_id: Mapped[int] = mapped_column(ForeignKey("cars.id", ondelete="CASCADE"), primary_key=True)
    # Utilisation: seconds booked, out of the seconds the car was in the fleet.
    booked_seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    fleet_seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    # Hires starting in the period.
    bookings: Mapped[int] = mapped_column(default=0)
    cancellations: Mapped[int] = mapped_column(default=0)
    no_shows: Mapped[int] = mapped_column(default=0)
    revenue_card_pence: Mapped[int] = mapped_column(BigInteger, default=0)
    revenue_crypto_pence: Mapped[int] = mapped_column(BigInteger, default=0)
    # Hires due back in the period.
    late_returns: Mapped[int] = mapped_column(default=0)
    damage_charges: Mapped[int] = mapped_column(default=0)
    damage_pence: Mapped[int] = mapped_column(BigInteger, default=0)


class ReportGroupFact(db.Model):
    """The same figures added up per class and branch (what most reports read): a few dozen
    rows per period, however many cars and hires there are."""

    __tablename__ = "report_group_facts"
    __table_args__ = (
        CheckConstraint("period_kind IN ('week', 'month')", name="period_kind_known"),
    )

    period_kind: Mapped[str] = mapped_column(String(5), primary_key=True)
    period_start: Mapped[date] = mapped_column(Date, primary_key=True)
    car_class_id: Mapped[int] = mapped_column(ForeignKey("car_classes.id", ondelete="CASCADE"),
                                              primary_key=True)
    branch_id: Mapped[int] = mapped_column(ForeignKey("branches.id", ondelete="CASCADE"),
                                           primary_key=True)
    booked_seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    fleet_seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    bookings: Mapped[int] = mapped_column(default=0)
    cancellations: Mapped[int] = mapped_column(default=0)
    no_shows: Mapped[int] = mapped_column(default=0)
    revenue_card_pence: Mapped[int] = mapped_column(BigInteger, default=0)
    revenue_crypto_pence: Mapped[int] = mapped_column(BigInteger, default=0)
    late_returns: Mapped[int] = mapped_column(default=0)
    damage_charges: Mapped[int] = mapped_column(default=0)
    damage_pence: Mapped[int] = mapped_column(BigInteger, default=0)


class ReportRefresh(db.Model):
    """A rebuild of the report facts for the periods covering [date_from, date_to]."""

    __tablename__ = "report_refreshes"

    id: Mapped[int] = mapped_column(primary_key=True)
    date_from: Mapped[date] = mapped_column(Date)
    date_to: Mapped[date] = mapped_column(Date)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime(), index=True)
    facts: Mapped[int] = mapped_column(default=0)

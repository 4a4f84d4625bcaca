"""What the counter records at pickup and return: condition, photos, signature, charges.

One inspection per hire and kind ("pickup", "return"). Each step is saved as it is done,
so a tablet that loses its connection resumes where it stopped. The version column gives
optimistic locking: two tablets cannot both settle one return.
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import JSON, CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .hires import Hire
from .types import UTCDateTime, utcnow
from .users import User

INSPECTION_KINDS = ("pickup", "return")
PANEL_STATES = ("ok", "scratch", "dent", "other")


class Inspection(db.Model):
    __tablename__ = "inspections"
    __table_args__ = (
        UniqueConstraint("hire_id", "kind", name="uq_inspections_hire_kind"),
        CheckConstraint(f"kind IN {INSPECTION_KINDS!r}", name="kind_known"),
        CheckConstraint("fuel_eighths IS NULL OR fuel_eighths BETWEEN 0 AND 8", name="fuel_range"),
        CheckConstraint("odometer_miles IS NULL OR odometer_miles >= 0", name="odometer_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    hire_id: Mapped[int] = mapped_column(ForeignKey("hires.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    started_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Pickup: photo ID seen in person (who ticked it, when).
    id_checked_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    id_checked_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    # Condition.
    odometer_miles: Mapped[Optional[int]]
    fuel_eighths: Mapped[Optional[int]]
    checklist: Mapped[dict] = mapped_column(JSON, default=dict)  # panel -> {"state", "note"}
    condition_recorded_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    needs_cleaning: Mapped[bool] = mapped_column(default=False)
    # Pickup: the customer's signature (a PNG in the uploads, by content hash).
    signature_filename: Mapped[str] = mapped_column(String(80), default="")
    signed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    # Paperwork (issue 18): the member of staff who saw the customer sign (the agreement says so).
    signature_witness_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    # Return: staff-entered damage lines and waivers, then the frozen charges.
    damages: Mapped[list] = mapped_column(JSON, default=list)  # [{"panel", "amount_pence", "reason"}]
    waivers: Mapped[dict] = mapped_column(JSON, default=dict)  # code -> reason
    charge_lines: Mapped[list] = mapped_column(JSON, default=list)
    total_pence: Mapped[Optional[int]]
    completed_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    completed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}

    hire: Mapped[Hire] = relationship()
    completed_by: Mapped[Optional[User]] = relationship(foreign_keys=[completed_by_id])
    id_checked_by: Mapped[Optional[User]] = relationship(foreign_keys=[id_checked_by_id])
    photos: Mapped[list["InspectionPhoto"]] = relationship(
        back_populates="inspection", order_by="InspectionPhoto.id", cascade="all, delete-orphan")

    def photos_for(self, panel: str) -> list["InspectionPhoto"]:
        return [p for p in self.photos if p.panel == panel]


class InspectionPhoto(db.Model):
    __tablename__ = "inspection_photos"

    id: Mapped[int] = mapped_column(primary_key=True)
    inspection_id: Mapped[int] = mapped_column(ForeignKey("inspections.id", ondelete="CASCADE"), index=True)
    panel: Mapped[str] = mapped_column(String(20))
    filename: Mapped[str] = mapped_column(String(80))
    thumb_filename: Mapped[str] = mapped_column(String(80))
    content_type: Mapped[str] = mapped_column(String(20))
    taken_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    inspection: Mapped[Inspection] = relationship(back_populates="photos")

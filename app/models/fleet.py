"""Where cars live and what they are: branches, classes, cars, maintenance blocks."""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import JSON, CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .types import UTCDateTime, utcnow

TRANSMISSIONS = ("manual", "automatic")
FUEL_TYPES = ("petrol", "diesel", "hybrid", "electric")
CAR_STATUSES = ("available", "retired")
MAINTENANCE_KINDS = ("service", "repair", "mot")


class Branch(db.Model):
    __tablename__ = "branches"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(8), unique=True)
    name: Mapped[str] = mapped_column(String(80))
    address_line1: Mapped[str] = mapped_column(String(100))
    town: Mapped[str] = mapped_column(String(60))
    postcode: Mapped[str] = mapped_column(String(8))
    phone: Mapped[str] = mapped_column(String(20), default="")
    timezone: Mapped[str] = mapped_column(String(40), default="Europe/London")
    # {"mon": ["08:00", "18:00"], ..., "sun": null}: local opening and closing times.
    opening_hours: Mapped[dict] = mapped_column(JSON, default=dict)

    def __repr__(self) -> str:
        return f"<Branch {self.code}>"


class CarClass(db.Model):
    __tablename__ = "car_classes"
    __table_args__ = (
        CheckConstraint("daily_rate_pence > 0", name="daily_rate_positive"),
        CheckConstraint("deposit_pence >= 0", name="deposit_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(60))
    description: Mapped[str] = mapped_column(String(300), default="")
    daily_rate_pence: Mapped[int]
    deposit_pence: Mapped[int]
    mileage_allowance_per_day: Mapped[int] = mapped_column(default=200)

    cars: Mapped[list["Car"]] = relationship(back_populates="car_class")


class Car(db.Model):
    __tablename__ = "cars"
    __table_args__ = (
        CheckConstraint(f"transmission IN {TRANSMISSIONS!r}", name="transmission_known"),
        CheckConstraint(f"fuel_type IN {FUEL_TYPES!r}", name="fuel_type_known"),
        CheckConstraint(f"status IN {CAR_STATUSES!r}", name="status_known"),
        CheckConstraint("odometer_miles >= 0", name="odometer_not_negative"),
        CheckConstraint("seats BETWEEN 1 AND 9", name="seats_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    plate: Mapped[str] = mapped_column(String(8), unique=True)  # normalised: upper, no spaces
    vin: Mapped[str] = mapped_column(String(17), unique=True)
    make: Mapped[str] = mapped_column(String(40))
    model: Mapped[str] = mapped_column(String(40))
    year: Mapped[int]
    car_class_id: Mapped[int] = mapped_column(ForeignKey("car_classes.id"), index=True)
    seats: Mapped[int]
    doors: Mapped[int]
    transmission: Mapped[str] = mapped_column(String(12))
    fuel_type: Mapped[str] = mapped_column(String(12))
    co2_g_km: Mapped[int] = mapped_column(default=0)
    odometer_miles: Mapped[int] = mapped_column(default=0)
    home_branch_id: Mapped[int] = mapped_column(ForeignKey("branches.id"), index=True)
    daily_rate_override_pence: Mapped[Optional[int]]
    photo: Mapped[str] = mapped_column(String(100), default="")
    status: Mapped[str] = mapped_column(String(12), default="available")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # When it left the fleet (status "retired"): the end of its time in utilisation reports.
    retired_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())

    car_class: Mapped[CarClass] = relationship(back_populates="cars")
    home_branch: Mapped[Branch] = relationship()
    # `photo` above is the cover (shown in search); this is every photo, cover first.
    photos: Mapped[list["CarPhoto"]] = relationship(
        back_populates="car", order_by="CarPhoto.position, CarPhoto.id", cascade="all, delete-orphan"
    )

    def __repr__(self) -> str:
        return f"<Car {self.plate}>"


PHOTO_CONTENT_TYPES = ("image/jpeg", "image/png", "image/webp")


class CarPhoto(db.Model):
    """A car photo: re-encoded without metadata, stored in UPLOAD_DIR under its content hash."""

    __tablename__ = "car_photos"
    __table_args__ = (
        CheckConstraint(f"content_type IN {PHOTO_CONTENT_TYPES!r}", name="content_type_known"),
        UniqueConstraint("car_id", "filename", name="uq_car_photos_car_id_filename"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    car_id: Mapped[int] = mapped_column(ForeignKey("cars.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(80), index=True)  # <sha256>.<ext>
    content_type: Mapped[str] = mapped_column(String(20))
    width: Mapped[int]
    height: Mapped[int]
    size_bytes: Mapped[int]
    alt_text: Mapped[str] = mapped_column(String(150), default="")
    position: Mapped[int] = mapped_column(default=0)
    uploaded_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    car: Mapped[Car] = relationship(back_populates="photos")


class MaintenanceBlock(db.Model):
    __tablename__ = "maintenance_blocks"
    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        CheckConstraint(f"kind IN {MAINTENANCE_KINDS!r}", name="kind_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    car_id: Mapped[int] = mapped_column(ForeignKey("cars.id"), index=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(12))
    note: Mapped[str] = mapped_column(String(300), default="")
    created_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    car: Mapped[Car] = relationship()

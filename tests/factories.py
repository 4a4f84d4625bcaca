"""Test data with sensible defaults (Indico-style factory helpers)."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta, timezone

from app.accounts.services import hash_password
from app.extensions import db
from app.models import (Branch, Car, CarClass, CustomerProfile, Hire, HireState, LicenceStatus,
                        MaintenanceBlock, Occupancy, User)

PASSWORD = "correct-Horse-battery-42"
_seq = itertools.count(1)
# Hashing with argon2 is deliberately slow; tests share one hash of PASSWORD.
_PASSWORD_HASH: str | None = None


def _hash() -> str:
    global _PASSWORD_HASH
    if _PASSWORD_HASH is None:
        _PASSWORD_HASH = hash_password(PASSWORD)
    return _PASSWORD_HASH


def make_user(role: str = "customer", *, email: str | None = None, full_name: str = "Jane Customer",
              active: bool = True, licence_status: str = LicenceStatus.VERIFIED.value,
              branch: Branch | None = None) -> User:
    n = next(_seq)
    user = User(email=email or f"{role}{n}@example.com", full_name=full_name,
                password_hash=_hash(), role=role, active=active, branch=branch)
    if role == "customer":
        user.profile = CustomerProfile(
            date_of_birth=date(1990, 7, 15), phone="+447911123456", address_line1="1 High Street",
            address_line2="", town="London", postcode="SW1A 1AA", licence_number="CUSTO907150J99AB",
            licence_expires_on=date(2032, 7, 14), licence_status=licence_status,
            licence_refusal_reason="",
        )
    db.session.add(user)
    db.session.commit()
    return user


def make_branch(code: str | None = None) -> Branch:
    n = next(_seq)
    branch = Branch(code=code or f"B{n}", name=f"Branch {n}", address_line1="1 Road", town="London",
                    postcode="SW1A 1AA", timezone="Europe/London",
                    opening_hours={d: ["08:00", "18:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")})
    db.session.add(branch)
    db.session.commit()
    return branch


def make_car_class(code: str | None = None, daily_rate_pence: int = 3900) -> CarClass:
    n = next(_seq)
    cls = CarClass(code=code or f"class{n}", name=f"Class {n}", daily_rate_pence=daily_rate_pence,
                   deposit_pence=25000)
    db.session.add(cls)
    db.session.commit()
    return cls


def make_car(*, car_class: CarClass | None = None, branch: Branch | None = None, **overrides) -> Car:
    n = next(_seq)
    fields = dict(plate=f"TE{n % 100:02d}S{chr(65 + n % 26)}{chr(65 + (n // 26) % 26)}",
                  vin=f"TESTVIN{n:010d}", make="Ford", model="Focus", year=2024, seats=5, doors=5,
                  transmission="manual", fuel_type="petrol", odometer_miles=1000)
    fields.update(overrides)
    car = Car(car_class=car_class or make_car_class(), home_branch=branch or make_branch(), **fields)
    db.session.add(car)
    db.session.commit()
    return car


def make_hire(*, car: Car | None = None, customer: User | None = None,
              start: datetime | None = None, days: int = 3,
              state: HireState = HireState.CONFIRMED, occupy: bool = True) -> Hire:
    n = next(_seq)
    car = car or make_car()
    start = start or datetime(2030, 6, 1, 9, tzinfo=timezone.utc)
    hire = Hire(reference=f"ACM{n:06d}", customer=customer or make_user(), car=car,
                pickup_branch_id=car.home_branch_id, return_branch_id=car.home_branch_id,
                start_at=start, end_at=start + timedelta(days=days), state=state.value,
                price_lines=[{"code": "rental", "label": "Rental", "amount_pence": 3900 * days}],
                total_pence=3900 * days, deposit_pence=25000, idempotency_key=f"test-hire-{n}")
    if occupy:
        hire.occupy(until=hire.end_at)
    db.session.add(hire)
    db.session.commit()
    return hire


def make_block(*, car: Car, start: datetime, days: int = 1) -> MaintenanceBlock:
    block = MaintenanceBlock(car=car, starts_at=start, ends_at=start + timedelta(days=days), kind="service")
    db.session.add(block)
    db.session.flush()
    db.session.add(Occupancy(car_id=car.id, starts_at=block.starts_at, ends_at=block.ends_at,
                             maintenance_block_id=block.id))
    db.session.commit()
    return block


# --- staff two-factor sign-in (issue 8) ---------------------------------------------------

def enrol_two_factor(user: User) -> User:
    """Set up TOTP for a staff member as if they had scanned the QR code."""
    import pyotp
    user.totp_secret = pyotp.random_base32()
    user.totp_enabled_at = datetime.now(timezone.utc)
    user.totp_last_step = None
    db.session.commit()
    return user


def two_factor_code(user: User, at: datetime | None = None) -> str:
    """The code the user's authenticator app shows at `at` (default: now)."""
    import pyotp
    return pyotp.TOTP(user.totp_secret).at(at or datetime.now(timezone.utc))

"""Demo data for the embedded default: two branches, twenty cars in four classes, three people.

Every demo car shows its class's illustration (static/img/classes/<class code>.svg) until
staff upload photos of it.

Idempotent: running it again changes nothing that is already there.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from .accounts.services import hash_password
from .extensions import db
from .models import Branch, Car, CarClass, CustomerProfile, LicenceStatus, Role, User

WEEKDAY_HOURS = ["08:00", "18:00"]
DEMO_HOURS = {"mon": WEEKDAY_HOURS, "tue": WEEKDAY_HOURS, "wed": WEEKDAY_HOURS,
              "thu": WEEKDAY_HOURS, "fri": WEEKDAY_HOURS, "sat": ["09:00", "16:00"], "sun": None}

BRANCHES = [
    dict(code="LHR", name="London Heathrow", address_line1="Bath Road", town="Hounslow",
         postcode="TW6 2GA", phone="+442079460000"),
    dict(code="MAN", name="Manchester Piccadilly", address_line1="London Road", town="Manchester",
         postcode="M60 7RA", phone="+441619460000"),
]
CLASSES = [
    dict(code="mini", name="Mini", description="City cars for two to four people.",
         daily_rate_pence=2900, deposit_pence=20000),
    dict(code="compact", name="Compact", description="Five seats, room for a weekend's bags.",
         daily_rate_pence=3900, deposit_pence=25000),
    dict(code="estate", name="Estate", description="Big boot, long trips.",
         daily_rate_pence=5400, deposit_pence=30000),
    dict(code="premium", name="Premium", description="Comfort and power.",
         daily_rate_pence=8900, deposit_pence=50000),
]
# (class, make, model, seats, doors, transmission, fuel, co2)
MODELS = [
    ("mini", "Fiat", "500", 4, 3, "manual", "petrol", 115),
    ("mini", "Toyota", "Aygo X", 4, 5, "manual", "petrol", 108),
    ("mini", "Hyundai", "i10", 5, 5, "automatic", "petrol", 118),
    ("mini", "Kia", "Picanto", 4, 5, "manual", "petrol", 112),
    ("mini", "Renault", "Zoe", 5, 5, "automatic", "electric", 0),
    ("compact", "Volkswagen", "Golf", 5, 5, "manual", "petrol", 128),
    ("compact", "Ford", "Focus", 5, 5, "automatic", "petrol", 125),
    ("compact", "Toyota", "Corolla", 5, 5, "automatic", "hybrid", 101),
    ("compact", "Vauxhall", "Astra", 5, 5, "manual", "diesel", 119),
    ("compact", "Nissan", "Leaf", 5, 5, "automatic", "electric", 0),
    ("estate", "Skoda", "Octavia Estate", 5, 5, "manual", "diesel", 122),
    ("estate", "Volkswagen", "Passat Estate", 5, 5, "automatic", "diesel", 130),
    ("estate", "Toyota", "Corolla Touring", 5, 5, "automatic", "hybrid", 105),
    ("estate", "Ford", "Focus Estate", 5, 5, "manual", "petrol", 131),
    ("estate", "Kia", "Ceed Sportswagon", 5, 5, "automatic", "hybrid", 103),
    ("premium", "BMW", "3 Series", 5, 4, "automatic", "petrol", 150),
    ("premium", "Mercedes-Benz", "C-Class", 5, 4, "automatic", "diesel", 139),
    ("premium", "Audi", "A4", 5, 4, "automatic", "petrol", 145),
    ("premium", "Tesla", "Model 3", 5, 4, "automatic", "electric", 0),
    ("premium", "Volvo", "XC60", 5, 5, "automatic", "hybrid", 60),
]
VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"  # no I, O, Q

DEMO_PASSWORD = "demo-Rental-2026!"
DEMO_PEOPLE = [
    dict(email="customer@demo.acme", full_name="Jane Customer", role=Role.CUSTOMER.value),
    dict(email="staff@demo.acme", full_name="Sam Counter", role=Role.STAFF.value),
    dict(email="admin@demo.acme", full_name="Alex Admin", role=Role.ADMIN.value),
]
# Jane Customer, born 1990-07-15: DVLA number CUSTO 9 07 15 0 J9 9 AB
DEMO_LICENCE = "CUSTO907150J99AB"


def demo_vin(i: int) -> str:
    body = "".join(VIN_CHARS[(i * 7 + k * 3) % len(VIN_CHARS)] for k in range(11))
    return f"WDEMO{body}{i % 10}"


def load_demo() -> dict[str, str]:
    """Create what is missing; return the people's sign-in details."""
    branches = {}
    for spec in BRANCHES:
        branch = db.session.scalar(select(Branch).where(Branch.code == spec["code"]))
        if branch is None:
            branch = Branch(**spec, timezone="Europe/London", opening_hours=DEMO_HOURS)
            db.session.add(branch)
        branches[spec["code"]] = branch
    classes = {}
    for spec in CLASSES:
        cls = db.session.scalar(select(CarClass).where(CarClass.code == spec["code"]))
        if cls is None:
            cls = CarClass(**spec)
            db.session.add(cls)
        classes[spec["code"]] = cls
    db.session.flush()
    for i, (cls, make, model, seats, doors, gearbox, fuel, co2) in enumerate(MODELS, start=1):
        plate = f"AC{24 + i % 2}D{chr(65 + i)}{chr(65 + (i * 3) % 26)}"
        if db.session.scalar(select(Car).where(Car.vin == demo_vin(i))) is None:
            db.session.add(Car(
                plate=plate.replace(" ", ""), vin=demo_vin(i), make=make, model=model,
                year=2022 + i % 3, car_class=classes[cls], seats=seats, doors=doors,
                transmission=gearbox, fuel_type=fuel, co2_g_km=co2, odometer_miles=5000 + 731 * i,
                home_branch=branches["LHR" if i % 2 else "MAN"],
            ))
    for person in DEMO_PEOPLE:
        if db.session.scalar(select(User).where(User.email == person["email"])) is not None:
            continue
        user = User(**person, password_hash=hash_password(DEMO_PASSWORD))
        if person["role"] == Role.CUSTOMER.value:
            user.profile = CustomerProfile(
                date_of_birth=date(1990, 7, 15), phone="+447911123456",
                address_line1="1 High Street", address_line2="", town="London", postcode="SW1A 1AA",
                licence_number=DEMO_LICENCE, licence_expires_on=date(2032, 7, 14),
                licence_status=LicenceStatus.VERIFIED.value, licence_refusal_reason="",
            )
        else:
            user.branch = branches["LHR"]
        db.session.add(user)
    db.session.flush()
    from .booking.seed import seed_rate_tables
    seed_rate_tables()  # tiers, seasons, extras, one-way fees (booking, issue 4)
    db.session.commit()
    return {p["email"]: DEMO_PASSWORD for p in DEMO_PEOPLE}

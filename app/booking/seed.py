"""Starting rate tables: duration tiers, seasons, extras, one-way fees. Idempotent.

Used by the demo data and by tests; admins edit the tables afterwards.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from ..extensions import db
from ..models import Branch, DurationTier, Extra, OneWayFee, Season

# (min charged days, percent off the rental)
TIERS = [(3, 5), (7, 15), (14, 25)]
# (code suffix, name, (month, day) from, (month, day) to, percent); dated per year below.
SEASONS = [
    ("easter", "Easter holidays", (4, 1), (4, 14), 10),
    ("summer", "Summer season", (7, 15), (8, 31), 20),
    ("christmas", "Christmas", (12, 20), (12, 31), 25),
]
# code, name, description, per day, cap per unit per rental, max quantity, group
EXTRAS = [
    ("child_seat", "Child seat", "For children up to 36 kg; fitted at pickup.", 800, 4800, 3, ""),
    ("gps", "Satellite navigation", "A portable GPS with UK maps.", 600, 3600, 1, ""),
    ("additional_driver", "Additional driver", "Another licensed driver, checked at pickup.",
     1000, 7000, 2, ""),
    ("cover_plus", "Cover Plus", "Excess reduced to £250.", 900, 9000, 1, "cover"),
    ("cover_full", "Full cover", "No excess to pay for damage or theft.", 1500, 15000, 1, "cover"),
]
ONE_WAY_FEES = {("LHR", "MAN"): 6500, ("MAN", "LHR"): 6500}


def seed_rate_tables(*, years: list[int] | None = None) -> None:
    """Create whatever of the starting tables is missing (never changes existing rows)."""
    for min_days, percent in TIERS:
        if db.session.scalar(select(DurationTier).where(DurationTier.min_days == min_days)) is None:
            db.session.add(DurationTier(min_days=min_days, percent_off=percent))
    for year in years or [date.today().year, date.today().year + 1]:
        for code, name, (m1, d1), (m2, d2), percent in SEASONS:
            full_code = f"{code}-{year}"
            if db.session.scalar(select(Season).where(Season.code == full_code)) is None:
                db.session.add(Season(code=full_code, name=name, starts_on=date(year, m1, d1),
                                      ends_on=date(year, m2, d2), percent=percent))
    for order, (code, name, description, per_day, cap, most, group) in enumerate(EXTRAS):
        if db.session.scalar(select(Extra).where(Extra.code == code)) is None:
            db.session.add(Extra(code=code, name=name, description=description, per_day_pence=per_day,
                                 cap_pence=cap, max_quantity=most, group=group, sort_order=order))
    branches = {b.code: b for b in db.session.scalars(select(Branch))}
    for (src, dst), fee in ONE_WAY_FEES.items():
        if src in branches and dst in branches and db.session.scalar(select(OneWayFee).where(
                OneWayFee.from_branch_id == branches[src].id,
                OneWayFee.to_branch_id == branches[dst].id)) is None:
            db.session.add(OneWayFee(from_branch=branches[src], to_branch=branches[dst], fee_pence=fee))
    db.session.flush()

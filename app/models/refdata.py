"""One row saying which version of the reference data is current (app/refdata.py).

Reference data is what changes rarely and every page reads: branches (and their opening
hours), car classes, duration tiers, seasons, extras and one-way fees. Each worker keeps a copy
and reads this row once per request (inside a query it makes anyway); when the version differs
from its copy's, it reads the tables again.

The database sets the version itself: triggers on each of those tables (migration 0015_refdata_version)
write a new random value in the same transaction as the change, whoever makes it (the admin
pages, a script, psql). Only equality matters, so a restored backup or an emptied table cannot
make an old copy look current. A missing row is a version too ("nothing changed since the row
went"): any change to a reference table writes it again.
"""

from __future__ import annotations

from sqlalchemy import BigInteger
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db

# The tables whose changes the triggers report; the SQLite and PostgreSQL triggers are named
# reference_data_changed_* after them.
REFERENCE_TABLES = ("branches", "car_classes", "duration_tiers", "seasons", "extras",
                    "one_way_fees")


class ReferenceDataVersion(db.Model):
    __tablename__ = "reference_data_version"

    id: Mapped[int] = mapped_column(primary_key=True)  # always 1
    version: Mapped[int] = mapped_column(BigInteger)

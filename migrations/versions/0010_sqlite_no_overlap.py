"""SQLite refuses an overlapping occupancy too (triggers standing in for the exclusion constraint)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 16:30:00

PostgreSQL refuses two occupancies of one car whose [starts_at, ends_at) ranges overlap with
the exclusion constraint `occupancies_no_overlap`. SQLite has no such constraint, so two
requests of a threaded `flask run` could both pass the services' check and both insert. These
triggers make SQLite refuse the same rows, for every writer (booking, change, moving a hire to
another car, maintenance blocks), with a message that names the constraint, so the services
answer it as they answer PostgreSQL's.

UTCDateTime stores naive UTC on SQLite in SQLAlchemy's fixed-width text form
("YYYY-MM-DD HH:MM:SS.ffffff"), so comparing the stored values orders them as times, as the
services' own overlap queries do.

A later batch migration that rebuilds `occupancies` on SQLite drops these triggers: it must
create them again (tests/test_booking_race_server.py fails if it does not).
"""
from alembic import op


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

MESSAGE = "occupancies_no_overlap: the car is already taken for part of that period"
OVERLAP = ("SELECT 1 FROM occupancies AS taken WHERE taken.car_id = NEW.car_id "
           "AND taken.starts_at < NEW.ends_at AND taken.ends_at > NEW.starts_at")


def upgrade():
    if op.get_bind().dialect.name != "sqlite":
        return  # PostgreSQL has the exclusion constraint (0001)
    op.execute(f"""
        CREATE TRIGGER occupancies_no_overlap_insert BEFORE INSERT ON occupancies
        WHEN EXISTS ({OVERLAP})
        BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END
    """)
    op.execute(f"""
        CREATE TRIGGER occupancies_no_overlap_update
        BEFORE UPDATE OF car_id, starts_at, ends_at ON occupancies
        WHEN EXISTS ({OVERLAP} AND taken.id <> OLD.id)
        BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END
    """)


def downgrade():
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("DROP TRIGGER IF EXISTS occupancies_no_overlap_update")
    op.execute("DROP TRIGGER IF EXISTS occupancies_no_overlap_insert")

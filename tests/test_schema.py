"""The migrations produce exactly the models' schema; the database refuses double booking
(PostgreSQL's exclusion constraint, SQLite's triggers: migration 0010)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import DateTime, inspect, text
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import Hire, HireState, Occupancy
from app.models.types import UTCDateTime
from tests import factories

T0 = datetime(2030, 6, 1, 9, tzinfo=timezone.utc)


def test_migrations_match_models(app):
    """Alembic's autogenerate finds no difference between the migrated database and the models."""
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, db.metadata)
    assert diff == []


def test_the_database_itself_guards_against_overlap(app):
    """PostgreSQL: the exclusion constraint; SQLite: the two triggers of migration 0010."""
    if db.engine.dialect.name == "postgresql":
        names = db.session.scalars(text(
            "SELECT conname FROM pg_constraint WHERE conrelid = 'occupancies'::regclass AND contype = 'x'"
        )).all()
        assert names == ["occupancies_no_overlap"]
    else:
        names = db.session.scalars(text(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'occupancies' "
            "ORDER BY name")).all()
        assert names == ["occupancies_no_overlap_insert", "occupancies_no_overlap_update"]


def test_overlapping_hires_of_one_car_are_impossible(app):
    car = factories.make_car()
    factories.make_hire(car=car, start=T0, days=3)
    with pytest.raises(IntegrityError) as err:
        factories.make_hire(car=car, start=T0 + timedelta(days=2), days=3)
    assert "occupancies_no_overlap" in str(err.value)
    db.session.rollback()


def test_hire_overlapping_maintenance_is_impossible(app):
    car = factories.make_car()
    factories.make_block(car=car, start=T0, days=2)
    with pytest.raises(IntegrityError):
        factories.make_hire(car=car, start=T0 + timedelta(days=1), days=3)
    db.session.rollback()


def test_back_to_back_hires_and_other_cars_are_allowed(app):
    car, other = factories.make_car(), factories.make_car()
    factories.make_hire(car=car, start=T0, days=3)
    factories.make_hire(car=car, start=T0 + timedelta(days=3), days=2)  # starts when the first ends
    factories.make_hire(car=other, start=T0, days=3)
    assert db.session.query(Occupancy).count() == 3


def test_cancelled_hire_frees_the_car(app):
    car = factories.make_car()
    first = factories.make_hire(car=car, start=T0, days=3)
    first.transition(HireState.CANCELLED, by=first.customer, why="changed plans")
    db.session.commit()
    second = factories.make_hire(car=car, start=T0, days=3)
    assert second.occupancy is not None


def _is_timestamp(column) -> bool:
    return isinstance(column.type, DateTime) or isinstance(getattr(column.type, "impl", None), DateTime)


def test_every_model_timestamp_is_timezone_aware(app):
    """SQLite keeps no time zone in the column: every timestamp goes through UTCDateTime,
    which stores UTC and gives back aware times (tested on either database)."""
    timestamps = [c for t in db.metadata.tables.values() for c in t.columns if _is_timestamp(c)]
    assert timestamps  # the check below has something to look at
    assert [f"{c.table.name}.{c.name}" for c in timestamps if not isinstance(c.type, UTCDateTime)] == []
    hire = factories.make_hire(start=T0)
    db.session.expire_all()
    assert db.session.get(Hire, hire.id).start_at == T0 and hire.start_at.tzinfo is not None


@pytest.mark.postgres
def test_every_timestamp_column_is_timezone_aware(app):
    """What the migrations built in PostgreSQL: timestamp with time zone everywhere."""
    inspector = inspect(db.engine)
    columns = [(t, c) for t in inspector.get_table_names() for c in inspector.get_columns(t)
               if "TIMESTAMP" in str(c["type"]).upper()]
    assert columns
    assert [f"{t}.{c['name']}" for t, c in columns if not c["type"].timezone] == []

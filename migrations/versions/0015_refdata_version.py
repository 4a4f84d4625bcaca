"""reference data version: triggers on the reference tables mark every change (issue 19)

Revision ID: 0015_refdata_version
Revises: 0014_checkin_gdpr
Create Date: 2026-12-04 23:40:00

Workers keep branches, classes and the rate tables in memory (app/refdata.py) and compare
`reference_data_version.version` with their copy's on each request. The database writes a new
random version in the same transaction as any change to those tables, so every writer is
covered: the admin pages, the demo loader, scripts and psql. PostgreSQL: one statement-level
trigger per table (INSERT, UPDATE, DELETE, TRUNCATE). SQLite: one row trigger per table and
operation (it has neither statement-level nor TRUNCATE triggers).

A later batch migration that rebuilds one of these tables on SQLite drops its triggers: it must
create them again (tests/test_refdata.py checks that every one is there).
"""
import sqlalchemy as sa
from alembic import op


revision = '0015_refdata_version'
down_revision = '0014_checkin_gdpr'
branch_labels = None
depends_on = None

TABLES = ("branches", "car_classes", "duration_tiers", "seasons", "extras", "one_way_fees")
SQLITE_OPERATIONS = ("insert", "update", "delete")


def upgrade():
    op.create_table(
        "reference_data_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reference_data_version")),
    )
    if op.get_bind().dialect.name == "sqlite":
        op.execute("INSERT INTO reference_data_version (id, version) VALUES (1, random())")
        for table in TABLES:
            for operation in SQLITE_OPERATIONS:
                op.execute(f"""
                    CREATE TRIGGER reference_data_changed_{table}_{operation}
                    AFTER {operation.upper()} ON {table}
                    BEGIN
                        INSERT OR REPLACE INTO reference_data_version (id, version) VALUES (1, random());
                    END
                """)
        return
    op.execute("INSERT INTO reference_data_version (id, version) "
               "VALUES (1, floor(random() * 9007199254740991)::bigint)")
    op.execute("""
        CREATE FUNCTION reference_data_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO reference_data_version (id, version)
            VALUES (1, floor(random() * 9007199254740991)::bigint)
            ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version;
            RETURN NULL;
        END
        $$
    """)
    for table in TABLES:
        op.execute(f"""
            CREATE TRIGGER reference_data_changed_{table}
            AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION reference_data_changed()
        """)


def downgrade():
    if op.get_bind().dialect.name == "sqlite":
        for table in TABLES:
            for operation in SQLITE_OPERATIONS:
                op.execute(f"DROP TRIGGER IF EXISTS reference_data_changed_{table}_{operation}")
    else:
        for table in TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS reference_data_changed_{table} ON {table}")
        op.execute("DROP FUNCTION IF EXISTS reference_data_changed()")
    op.drop_table("reference_data_version")

"""payments carry a version: a request and a job can no longer overwrite each other's write

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 16:30:00

SQLAlchemy's version_id_col: every UPDATE of a payment says which version it read, so a
write based on a stale read is refused (StaleDataError) and redone on a fresh read instead
of silently undoing the other writer's change (PostgreSQL also locks the row; SQLite cannot).
Emails get a time at which a send began, so a job killed mid-send is not sent blindly again.
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('payments') as batch:
        batch.add_column(sa.Column('version', sa.Integer(), nullable=False, server_default='1'))
    with op.batch_alter_table('outbound_emails') as batch:
        batch.add_column(sa.Column('sending_since', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('outbound_emails') as batch:
        batch.drop_column('sending_since')
    with op.batch_alter_table('payments') as batch:
        batch.drop_column('version')

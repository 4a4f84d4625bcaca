"""crypto quotes say what they pay: the rental of a held hire, or the difference a confirmed
hire still owes (a dearer change or an extension paid in ETH)

Revision ID: 0017_crypto_quote_purpose
Revises: 0016_offline_steps
Create Date: 2026-12-05 03:00:00

One column with a default: the previous release never reads it and its inserts get "rental",
which is what every quote it makes is, so it keeps working on this schema.
"""
from alembic import op
import sqlalchemy as sa


revision = '0017_crypto_quote_purpose'
down_revision = '0016_offline_steps'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('crypto_quotes', sa.Column('purpose', sa.String(length=10), nullable=False,
                                             server_default='rental'))


def downgrade():
    with op.batch_alter_table('crypto_quotes') as batch:
        batch.drop_column('purpose')

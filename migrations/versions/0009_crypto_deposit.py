"""crypto quotes carry the refundable deposit paid with the price

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 09:30:00

A hire paid in ETH has no card to hold a deposit on, so the quote asks for the price plus
the deposit; the deposit part is kept apart so that the counter can return it less charges.
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('crypto_quotes') as batch:
        batch.add_column(sa.Column('deposit_pence', sa.Integer(), nullable=False, server_default='0'))
        batch.create_check_constraint(op.f('ck_crypto_quotes_deposit_not_negative'), 'deposit_pence >= 0')


def downgrade():
    with op.batch_alter_table('crypto_quotes') as batch:
        batch.drop_constraint(op.f('ck_crypto_quotes_deposit_not_negative'), type_='check')
        batch.drop_column('deposit_pence')

"""crypto payments: ETH quotes, payments seen on chain, the watcher's cursor, refunds

Revision ID: 0005
Revises: 0001
Create Date: 2026-11-26 11:00:00

"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0001'
branch_labels = None
depends_on = None

# Wei amounts are stored as their decimal digits (2**256 has 78), see app.models.crypto.Wei.
WEI = sa.String(length=78)


def upgrade():
    op.create_table('chain_cursors',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=120), nullable=False),
    sa.Column('last_block', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chain_cursors')),
    sa.UniqueConstraint('key', name=op.f('uq_chain_cursors_key'))
    )
    op.create_table('crypto_quotes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('hire_id', sa.Integer(), nullable=False),
    sa.Column('booking_ref', sa.String(length=66), nullable=False),
    sa.Column('chain_id', sa.BigInteger(), nullable=False),
    sa.Column('contract_address', sa.String(length=42), nullable=False),
    sa.Column('amount_pence', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('rate_pence_per_eth', sa.Integer(), nullable=False),
    sa.Column('rate_source', sa.String(length=120), nullable=False),
    sa.Column('rate_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('amount_wei', WEI, nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('state', sa.String(length=12), nullable=False),
    sa.Column('wallet_tx_hash', sa.String(length=66), nullable=False),
    sa.Column('wallet_reported_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("state IN ('open', 'paid', 'review')", name=op.f('ck_crypto_quotes_state_known')),
    sa.CheckConstraint('amount_pence > 0', name=op.f('ck_crypto_quotes_amount_positive')),
    sa.CheckConstraint('expires_at > created_at', name=op.f('ck_crypto_quotes_expires_after_created')),
    sa.CheckConstraint('rate_pence_per_eth > 0', name=op.f('ck_crypto_quotes_rate_positive')),
    sa.ForeignKeyConstraint(['hire_id'], ['hires.id'], name=op.f('fk_crypto_quotes_hire_id_hires')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_crypto_quotes')),
    sa.UniqueConstraint('booking_ref', name=op.f('uq_crypto_quotes_booking_ref'))
    )
    with op.batch_alter_table('crypto_quotes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_crypto_quotes_hire_id'), ['hire_id'], unique=False)

    op.create_table('chain_payments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('chain_id', sa.BigInteger(), nullable=False),
    sa.Column('contract_address', sa.String(length=42), nullable=False),
    sa.Column('tx_hash', sa.String(length=66), nullable=False),
    sa.Column('log_index', sa.Integer(), nullable=False),
    sa.Column('block_number', sa.BigInteger(), nullable=False),
    sa.Column('block_hash', sa.String(length=66), nullable=False),
    sa.Column('booking_ref', sa.String(length=66), nullable=False),
    sa.Column('payer', sa.String(length=42), nullable=False),
    sa.Column('amount_wei', WEI, nullable=False),
    sa.Column('quote_id', sa.Integer(), nullable=True),
    sa.Column('hire_id', sa.Integer(), nullable=True),
    sa.Column('state', sa.String(length=12), nullable=False),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.Column('review_reason', sa.String(length=300), nullable=False),
    sa.Column('paid_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('settled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reviewed_by_id', sa.Integer(), nullable=True),
    sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('payment_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("outcome IN ('', 'exact', 'within_tolerance', 'overpaid', 'duplicate', 'partial', 'late', 'several_bookings', 'unknown_booking', 'not_payable')", name=op.f('ck_chain_payments_outcome_known')),
    sa.CheckConstraint("state IN ('processing', 'vanished', 'settled', 'review', 'returned')", name=op.f('ck_chain_payments_state_known')),
    sa.CheckConstraint('log_index >= 0', name=op.f('ck_chain_payments_log_index_not_negative')),
    sa.ForeignKeyConstraint(['hire_id'], ['hires.id'], name=op.f('fk_chain_payments_hire_id_hires')),
    sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], name=op.f('fk_chain_payments_payment_id_payments')),
    sa.ForeignKeyConstraint(['quote_id'], ['crypto_quotes.id'], name=op.f('fk_chain_payments_quote_id_crypto_quotes')),
    sa.ForeignKeyConstraint(['reviewed_by_id'], ['users.id'], name=op.f('fk_chain_payments_reviewed_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chain_payments')),
    sa.UniqueConstraint('tx_hash', 'log_index', name=op.f('uq_chain_payments_tx_hash'))
    )
    with op.batch_alter_table('chain_payments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_chain_payments_booking_ref'), ['booking_ref'], unique=False)
        batch_op.create_index(batch_op.f('ix_chain_payments_hire_id'), ['hire_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_chain_payments_quote_id'), ['quote_id'], unique=False)

    op.create_table('crypto_refunds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('hire_id', sa.Integer(), nullable=False),
    sa.Column('chain_payment_id', sa.Integer(), nullable=True),
    sa.Column('payment_id', sa.Integer(), nullable=True),
    sa.Column('idempotency_key', sa.String(length=80), nullable=False),
    sa.Column('amount_wei', WEI, nullable=False),
    sa.Column('amount_pence', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=300), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('suggested_address', sa.String(length=42), nullable=False),
    sa.Column('to_address', sa.String(length=42), nullable=False),
    sa.Column('address_confirmed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('from_address', sa.String(length=42), nullable=True),
    sa.Column('nonce', sa.Integer(), nullable=True),
    sa.Column('raw_tx', sa.Text(), nullable=False),
    sa.Column('tx_hash', sa.String(length=66), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.String(length=300), nullable=False),
    sa.Column('requested_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("state IN ('awaiting_address', 'queued', 'signed', 'sent', 'confirmed', 'failed')", name=op.f('ck_crypto_refunds_state_known')),
    sa.CheckConstraint('amount_pence >= 0', name=op.f('ck_crypto_refunds_amount_pence_not_negative')),
    sa.ForeignKeyConstraint(['chain_payment_id'], ['chain_payments.id'], name=op.f('fk_crypto_refunds_chain_payment_id_chain_payments')),
    sa.ForeignKeyConstraint(['hire_id'], ['hires.id'], name=op.f('fk_crypto_refunds_hire_id_hires')),
    sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], name=op.f('fk_crypto_refunds_payment_id_payments')),
    sa.ForeignKeyConstraint(['requested_by_id'], ['users.id'], name=op.f('fk_crypto_refunds_requested_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_crypto_refunds')),
    sa.UniqueConstraint('from_address', 'nonce', name=op.f('uq_crypto_refunds_from_address')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_crypto_refunds_idempotency_key'))
    )
    with op.batch_alter_table('crypto_refunds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_crypto_refunds_hire_id'), ['hire_id'], unique=False)


def downgrade():
    with op.batch_alter_table('crypto_refunds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_crypto_refunds_hire_id'))
    op.drop_table('crypto_refunds')
    with op.batch_alter_table('chain_payments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_chain_payments_quote_id'))
        batch_op.drop_index(batch_op.f('ix_chain_payments_hire_id'))
        batch_op.drop_index(batch_op.f('ix_chain_payments_booking_ref'))
    op.drop_table('chain_payments')
    with op.batch_alter_table('crypto_quotes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_crypto_quotes_hire_id'))
    op.drop_table('crypto_quotes')
    op.drop_table('chain_cursors')

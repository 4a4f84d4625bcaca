"""card payments: payment history, Stripe events, refunds and holds linked to their payment

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-26 13:00:00

"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0001'
branch_labels = None
depends_on = None

OLD_STATES = "state IN ('pending', 'processing', 'succeeded', 'failed', 'cancelled', 'review')"
NEW_STATES = ("state IN ('pending', 'processing', 'authorised', 'succeeded', 'failed', "
              "'cancelled', 'review')")


def upgrade():
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('parent_id', sa.Integer(), nullable=True))
        # Existing rows get "" once; the models give every new row its value.
        batch_op.add_column(sa.Column('checkout_session_id', sa.String(length=120), nullable=False,
                                      server_default=''))
        batch_op.add_column(sa.Column('reason', sa.String(length=200), nullable=False,
                                      server_default=''))
        batch_op.add_column(sa.Column('requested_by_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_payments_parent_id_payments'), 'payments',
                                    ['parent_id'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_payments_requested_by_id_users'), 'users',
                                    ['requested_by_id'], ['id'])
        batch_op.create_index(batch_op.f('ix_payments_parent_id'), ['parent_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_payments_checkout_session_id'), ['checkout_session_id'],
                              unique=False)
        batch_op.drop_constraint(batch_op.f('ck_payments_state_known'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_payments_state_known'), sa.text(NEW_STATES))
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.alter_column('checkout_session_id', server_default=None)
        batch_op.alter_column('reason', server_default=None)

    op.create_table('payment_state_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('payment_id', sa.Integer(), nullable=False),
    sa.Column('from_state', sa.String(length=12), nullable=False),
    sa.Column('to_state', sa.String(length=12), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('by_user_id', sa.Integer(), nullable=True),
    sa.Column('reason', sa.String(length=300), nullable=False),
    sa.Column('stripe_event_id', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['by_user_id'], ['users.id'], name=op.f('fk_payment_state_changes_by_user_id_users')),
    sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], name=op.f('fk_payment_state_changes_payment_id_payments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payment_state_changes'))
    )
    with op.batch_alter_table('payment_state_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payment_state_changes_payment_id'), ['payment_id'], unique=False)

    op.create_table('stripe_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.String(length=255), nullable=False),
    sa.Column('type', sa.String(length=80), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('state', sa.String(length=10), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('outcome', sa.String(length=300), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.CheckConstraint("state IN ('received', 'processed', 'ignored', 'failed')", name=op.f('ck_stripe_events_state_known')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stripe_events')),
    sa.UniqueConstraint('event_id', name=op.f('uq_stripe_events_event_id'))
    )


def downgrade():
    op.drop_table('stripe_events')
    with op.batch_alter_table('payment_state_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payment_state_changes_payment_id'))
    op.drop_table('payment_state_changes')
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_payments_state_known'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_payments_state_known'), sa.text(OLD_STATES))
        batch_op.drop_index(batch_op.f('ix_payments_checkout_session_id'))
        batch_op.drop_index(batch_op.f('ix_payments_parent_id'))
        batch_op.drop_constraint(batch_op.f('fk_payments_requested_by_id_users'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_payments_parent_id_payments'), type_='foreignkey')
        batch_op.drop_column('requested_by_id')
        batch_op.drop_column('reason')
        batch_op.drop_column('checkout_session_id')
        batch_op.drop_column('parent_id')

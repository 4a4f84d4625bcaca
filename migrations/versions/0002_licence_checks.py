"""driving-licence checks

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 12:00:00

"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('licence_checks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('requested_by_id', sa.Integer(), nullable=True),
    sa.Column('hire_id', sa.Integer(), nullable=True),
    sa.Column('licence_number', sa.String(length=16), nullable=False),
    sa.Column('check_code', sa.String(length=16), nullable=False),
    sa.Column('idempotency_key', sa.String(length=80), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('reason_code', sa.String(length=40), nullable=False),
    sa.Column('message', sa.String(length=300), nullable=False),
    sa.Column('raw_response', sa.JSON(), nullable=True),
    sa.Column('valid_from', sa.Date(), nullable=True),
    sa.Column('valid_to', sa.Date(), nullable=True),
    sa.Column('categories', sa.JSON(), nullable=False),
    sa.Column('held_since', sa.Date(), nullable=True),
    sa.Column('penalty_points', sa.Integer(), nullable=True),
    sa.Column('disqualified', sa.Boolean(), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'verified', 'refused', 'failed')", name=op.f('ck_licence_checks_status_known')),
    sa.CheckConstraint('penalty_points IS NULL OR penalty_points >= 0', name=op.f('ck_licence_checks_points_not_negative')),
    sa.ForeignKeyConstraint(['hire_id'], ['hires.id'], name=op.f('fk_licence_checks_hire_id_hires'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['requested_by_id'], ['users.id'], name=op.f('fk_licence_checks_requested_by_id_users')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_licence_checks_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_licence_checks')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_licence_checks_idempotency_key'))
    )
    with op.batch_alter_table('licence_checks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_licence_checks_hire_id'), ['hire_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_licence_checks_user_id'), ['user_id'], unique=False)


def downgrade():
    with op.batch_alter_table('licence_checks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_licence_checks_user_id'))
        batch_op.drop_index(batch_op.f('ix_licence_checks_hire_id'))

    op.drop_table('licence_checks')

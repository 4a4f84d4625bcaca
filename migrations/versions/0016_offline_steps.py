"""the offline counter: steps sent later by a tablet, kept under their idempotency keys

Revision ID: 0016_offline_steps
Revises: 0015_refdata_version
Create Date: 2026-12-04 23:50:00

A new table only: the previous release never reads it, so it keeps working on this schema.
"""
from alembic import op
import sqlalchemy as sa


revision = '0016_offline_steps'
down_revision = '0015_refdata_version'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'offline_steps',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('hire_id', sa.Integer(), nullable=True),
        sa.Column('step', sa.String(length=20), nullable=False),
        sa.Column('outcome', sa.String(length=12), nullable=False),
        sa.Column('answer', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name='fk_offline_steps_user_id_users',
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['hire_id'], ['hires.id'], name='fk_offline_steps_hire_id_hires',
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name='pk_offline_steps'),
        sa.UniqueConstraint('key', name='uq_offline_steps_key'),
    )
    op.create_index('ix_offline_steps_user_id', 'offline_steps', ['user_id'])
    op.create_index('ix_offline_steps_hire_id', 'offline_steps', ['hire_id'])


def downgrade():
    op.drop_index('ix_offline_steps_hire_id', table_name='offline_steps')
    op.drop_index('ix_offline_steps_user_id', table_name='offline_steps')
    op.drop_table('offline_steps')

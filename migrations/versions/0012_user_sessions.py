"""signed-in sessions per device: signing out ends this device's session only

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 20:40:00

Each sign-in gets a row (the hash of the key its cookies carry). Signing out deletes that row;
"sign out everywhere", a password change or reset and a deactivation delete them all. Cookies
made before this migration name no row: everyone signs in once more after the deploy.
"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'user_sessions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('key_hash', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name='fk_user_sessions_user_id_users',
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name='pk_user_sessions'),
        sa.UniqueConstraint('key_hash', name='uq_user_sessions_key_hash'),
    )
    op.create_index('ix_user_sessions_user_id', 'user_sessions', ['user_id'])


def downgrade():
    op.drop_index('ix_user_sessions_user_id', table_name='user_sessions')
    op.drop_table('user_sessions')

"""online check-in, additional drivers, data downloads, erased accounts (issue 18)

Revision ID: 0014_checkin_gdpr
Revises: 0013_paperwork
Create Date: 2026-12-06 10:00:00

New tables: hire_checkins (one per hire: details confirmed, terms version accepted, licence
photo), hire_drivers (additional drivers named at check-in), data_exports (the customer's
"Download my data" ZIPs). New nullable columns: users.erased_at (the account was erased),
licence_checks.driver_id (the check is of an additional driver's licence). The previous
release ignores all of them, so it keeps working on the new schema.
"""
from alembic import op
import sqlalchemy as sa


revision = '0014_checkin_gdpr'
down_revision = '0013_paperwork'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'hire_checkins',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('hire_id', sa.Integer(), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('details_confirmed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('terms_version', sa.String(length=20), nullable=False),
        sa.Column('terms_accepted_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('licence_photo_filename', sa.String(length=80), nullable=False),
        sa.Column('licence_photo_content_type', sa.String(length=20), nullable=False),
        sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['hire_id'], ['hires.id'], name='fk_hire_checkins_hire_id_hires',
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name='pk_hire_checkins'),
        sa.UniqueConstraint('hire_id', name='uq_hire_checkins_hire_id'),
    )
    op.create_table(
        'hire_drivers',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('hire_id', sa.Integer(), nullable=False),
        sa.Column('full_name', sa.String(length=120), nullable=False),
        sa.Column('licence_number', sa.String(length=16), nullable=False),
        sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['hire_id'], ['hires.id'], name='fk_hire_drivers_hire_id_hires',
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name='pk_hire_drivers'),
    )
    op.create_index('ix_hire_drivers_hire_id', 'hire_drivers', ['hire_id'])
    op.create_table(
        'data_exports',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('state', sa.String(length=10), nullable=False),
        sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('ready_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('filename', sa.String(length=80), nullable=False),
        sa.Column('size_bytes', sa.Integer(), nullable=False),
        sa.CheckConstraint("state IN ('pending', 'ready', 'failed', 'expired')",
                           name=op.f('ck_data_exports_state_known')),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name='fk_data_exports_user_id_users',
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name='pk_data_exports'),
    )
    op.create_index('ix_data_exports_user_id', 'data_exports', ['user_id'])
    with op.batch_alter_table('users') as batch:
        batch.add_column(sa.Column('erased_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('licence_checks') as batch:
        batch.add_column(sa.Column('driver_id', sa.Integer(), nullable=True))
        batch.create_index('ix_licence_checks_driver_id', ['driver_id'])
        batch.create_foreign_key('fk_licence_checks_driver_id_hire_drivers', 'hire_drivers',
                                 ['driver_id'], ['id'], ondelete='CASCADE')


def downgrade():
    with op.batch_alter_table('licence_checks') as batch:
        batch.drop_constraint('fk_licence_checks_driver_id_hire_drivers', type_='foreignkey')
        batch.drop_index('ix_licence_checks_driver_id')
        batch.drop_column('driver_id')
    with op.batch_alter_table('users') as batch:
        batch.drop_column('erased_at')
    op.drop_index('ix_data_exports_user_id', table_name='data_exports')
    op.drop_table('data_exports')
    op.drop_index('ix_hire_drivers_hire_id', table_name='hire_drivers')
    op.drop_table('hire_drivers')
    op.drop_table('hire_checkins')

"""fleet and administration

Car photos, retirement time, staff two-factor and invites, the reports' rolled-up
figures, and indexes for the reports and the audit viewer.

Revision ID: 0006
Revises: 0007
Create Date: 2026-11-26 12:00:00

"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '0006'
# Chained after the counter's 0007 when the parallel heads were merged (see 0008).
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('car_photos',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('car_id', sa.Integer(), nullable=False),
    sa.Column('filename', sa.String(length=80), nullable=False),
    sa.Column('content_type', sa.String(length=20), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('size_bytes', sa.Integer(), nullable=False),
    sa.Column('alt_text', sa.String(length=150), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('uploaded_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("content_type IN ('image/jpeg', 'image/png', 'image/webp')", name=op.f('ck_car_photos_content_type_known')),
    sa.ForeignKeyConstraint(['car_id'], ['cars.id'], name=op.f('fk_car_photos_car_id_cars'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['uploaded_by_id'], ['users.id'], name=op.f('fk_car_photos_uploaded_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_car_photos')),
    sa.UniqueConstraint('car_id', 'filename', name='uq_car_photos_car_id_filename')
    )
    with op.batch_alter_table('car_photos', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_car_photos_car_id'), ['car_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_car_photos_filename'), ['filename'], unique=False)

    with op.batch_alter_table('cars', schema=None) as batch_op:
        batch_op.add_column(sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True))

    op.create_table('report_facts',
    sa.Column('period_kind', sa.String(length=5), nullable=False),
    sa.Column('period_start', sa.Date(), nullable=False),
    sa.Column('car_id', sa.Integer(), nullable=False),
    sa.Column('booked_seconds', sa.BigInteger(), nullable=False),
    sa.Column('fleet_seconds', sa.BigInteger(), nullable=False),
    sa.Column('bookings', sa.Integer(), nullable=False),
    sa.Column('cancellations', sa.Integer(), nullable=False),
    sa.Column('no_shows', sa.Integer(), nullable=False),
    sa.Column('revenue_card_pence', sa.BigInteger(), nullable=False),
    sa.Column('revenue_crypto_pence', sa.BigInteger(), nullable=False),
    sa.Column('late_returns', sa.Integer(), nullable=False),
    sa.Column('damage_charges', sa.Integer(), nullable=False),
    sa.Column('damage_pence', sa.BigInteger(), nullable=False),
    sa.CheckConstraint("period_kind IN ('week', 'month')", name=op.f('ck_report_facts_period_kind_known')),
    sa.ForeignKeyConstraint(['car_id'], ['cars.id'], name=op.f('fk_report_facts_car_id_cars'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('period_kind', 'period_start', 'car_id', name=op.f('pk_report_facts'))
    )
    op.create_table('report_group_facts',
    sa.Column('period_kind', sa.String(length=5), nullable=False),
    sa.Column('period_start', sa.Date(), nullable=False),
    sa.Column('car_class_id', sa.Integer(), nullable=False),
    sa.Column('branch_id', sa.Integer(), nullable=False),
    sa.Column('booked_seconds', sa.BigInteger(), nullable=False),
    sa.Column('fleet_seconds', sa.BigInteger(), nullable=False),
    sa.Column('bookings', sa.Integer(), nullable=False),
    sa.Column('cancellations', sa.Integer(), nullable=False),
    sa.Column('no_shows', sa.Integer(), nullable=False),
    sa.Column('revenue_card_pence', sa.BigInteger(), nullable=False),
    sa.Column('revenue_crypto_pence', sa.BigInteger(), nullable=False),
    sa.Column('late_returns', sa.Integer(), nullable=False),
    sa.Column('damage_charges', sa.Integer(), nullable=False),
    sa.Column('damage_pence', sa.BigInteger(), nullable=False),
    sa.CheckConstraint("period_kind IN ('week', 'month')", name=op.f('ck_report_group_facts_period_kind_known')),
    sa.ForeignKeyConstraint(['branch_id'], ['branches.id'], name=op.f('fk_report_group_facts_branch_id_branches'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['car_class_id'], ['car_classes.id'], name=op.f('fk_report_group_facts_car_class_id_car_classes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('period_kind', 'period_start', 'car_class_id', 'branch_id', name=op.f('pk_report_group_facts'))
    )
    op.create_table('report_refreshes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('date_from', sa.Date(), nullable=False),
    sa.Column('date_to', sa.Date(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('facts', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_report_refreshes'))
    )
    with op.batch_alter_table('report_refreshes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_report_refreshes_finished_at'), ['finished_at'], unique=False)

    with op.batch_alter_table('users', schema=None) as batch_op:
        # Server defaults fill the rows that already exist.
        batch_op.add_column(sa.Column('totp_secret', sa.String(length=32), nullable=False,
                                      server_default=''))
        batch_op.add_column(sa.Column('totp_enabled_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('totp_last_step', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('recovery_code_hashes', sa.JSON(), nullable=False,
                                      server_default=sa.text("'[]'")))
        batch_op.add_column(sa.Column('invited_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('invite_accepted_at', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('hires', schema=None) as batch_op:
        # INCLUDE (PostgreSQL only) lets the reports read these indexes alone.
        batch_op.create_index('ix_hires_reports_start_at', ['start_at'], unique=False,
                              postgresql_include=['id', 'car_id', 'state', 'end_at'])
        batch_op.create_index('ix_hires_reports_end_at', ['end_at'], unique=False,
                              postgresql_include=['id', 'car_id', 'state', 'start_at'])

    with op.batch_alter_table('audit_records', schema=None) as batch_op:
        batch_op.create_index('ix_audit_records_object', ['object_type', 'object_id'], unique=False)

    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.create_index('ix_payments_reports_hire_id', ['hire_id'], unique=False,
                              postgresql_include=['state', 'kind', 'method', 'amount_pence'])


def downgrade():
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_index('ix_payments_reports_hire_id')

    with op.batch_alter_table('audit_records', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_records_object')

    with op.batch_alter_table('hires', schema=None) as batch_op:
        batch_op.drop_index('ix_hires_reports_end_at')
        batch_op.drop_index('ix_hires_reports_start_at')

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('invite_accepted_at')
        batch_op.drop_column('invited_at')
        batch_op.drop_column('recovery_code_hashes')
        batch_op.drop_column('totp_last_step')
        batch_op.drop_column('totp_enabled_at')
        batch_op.drop_column('totp_secret')

    with op.batch_alter_table('report_refreshes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_report_refreshes_finished_at'))

    op.drop_table('report_refreshes')
    op.drop_table('report_group_facts')
    op.drop_table('report_facts')
    with op.batch_alter_table('cars', schema=None) as batch_op:
        batch_op.drop_column('retired_at')

    with op.batch_alter_table('car_photos', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_car_photos_filename'))
        batch_op.drop_index(batch_op.f('ix_car_photos_car_id'))

    op.drop_table('car_photos')

"""counter: pickup and return inspections, photos, signature, charges

Revision ID: 0007
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = '0007'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('inspections',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('hire_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('started_by_id', sa.Integer(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('id_checked_by_id', sa.Integer(), nullable=True),
    sa.Column('id_checked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('odometer_miles', sa.Integer(), nullable=True),
    sa.Column('fuel_eighths', sa.Integer(), nullable=True),
    sa.Column('checklist', sa.JSON(), nullable=False),
    sa.Column('condition_recorded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('needs_cleaning', sa.Boolean(), nullable=False),
    sa.Column('signature_filename', sa.String(length=80), nullable=False),
    sa.Column('signed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('damages', sa.JSON(), nullable=False),
    sa.Column('waivers', sa.JSON(), nullable=False),
    sa.Column('charge_lines', sa.JSON(), nullable=False),
    sa.Column('total_pence', sa.Integer(), nullable=True),
    sa.Column('completed_by_id', sa.Integer(), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.CheckConstraint("kind IN ('pickup', 'return')", name=op.f('ck_inspections_kind_known')),
    sa.CheckConstraint('fuel_eighths IS NULL OR fuel_eighths BETWEEN 0 AND 8', name=op.f('ck_inspections_fuel_range')),
    sa.CheckConstraint('odometer_miles IS NULL OR odometer_miles >= 0', name=op.f('ck_inspections_odometer_not_negative')),
    sa.ForeignKeyConstraint(['completed_by_id'], ['users.id'], name=op.f('fk_inspections_completed_by_id_users')),
    sa.ForeignKeyConstraint(['hire_id'], ['hires.id'], name=op.f('fk_inspections_hire_id_hires'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['id_checked_by_id'], ['users.id'], name=op.f('fk_inspections_id_checked_by_id_users')),
    sa.ForeignKeyConstraint(['started_by_id'], ['users.id'], name=op.f('fk_inspections_started_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inspections')),
    sa.UniqueConstraint('hire_id', 'kind', name='uq_inspections_hire_kind')
    )
    with op.batch_alter_table('inspections', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inspections_hire_id'), ['hire_id'], unique=False)

    op.create_table('inspection_photos',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('inspection_id', sa.Integer(), nullable=False),
    sa.Column('panel', sa.String(length=20), nullable=False),
    sa.Column('filename', sa.String(length=80), nullable=False),
    sa.Column('thumb_filename', sa.String(length=80), nullable=False),
    sa.Column('content_type', sa.String(length=20), nullable=False),
    sa.Column('taken_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['inspection_id'], ['inspections.id'], name=op.f('fk_inspection_photos_inspection_id_inspections'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['taken_by_id'], ['users.id'], name=op.f('fk_inspection_photos_taken_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inspection_photos'))
    )
    with op.batch_alter_table('inspection_photos', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inspection_photos_inspection_id'), ['inspection_id'], unique=False)


def downgrade():
    with op.batch_alter_table('inspection_photos', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inspection_photos_inspection_id'))
    op.drop_table('inspection_photos')
    with op.batch_alter_table('inspections', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inspections_hire_id'))
    op.drop_table('inspections')

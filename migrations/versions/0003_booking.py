"""booking: rate tables, hire extras and VAT, email attachments

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-26 11:00:00

The availability search probes each car's occupancies by time; the btree index
(car_id, starts_at, ends_at) answers that probe from the index alone, about ten times
faster than the exclusion constraint's GiST index (bench/README.md).
"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('duration_tiers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('min_days', sa.Integer(), nullable=False),
    sa.Column('percent_off', sa.Integer(), nullable=False),
    sa.CheckConstraint('min_days >= 1', name=op.f('ck_duration_tiers_min_days_positive')),
    sa.CheckConstraint('percent_off >= 0 AND percent_off < 100', name=op.f('ck_duration_tiers_percent_off_range')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_duration_tiers')),
    sa.UniqueConstraint('min_days', name=op.f('uq_duration_tiers_min_days'))
    )
    op.create_table('seasons',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=24), nullable=False),
    sa.Column('name', sa.String(length=60), nullable=False),
    sa.Column('starts_on', sa.Date(), nullable=False),
    sa.Column('ends_on', sa.Date(), nullable=False),
    sa.Column('percent', sa.Integer(), nullable=False),
    sa.CheckConstraint('ends_on >= starts_on', name=op.f('ck_seasons_ends_after_start')),
    sa.CheckConstraint('percent > -100 AND percent <= 200', name=op.f('ck_seasons_percent_range')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_seasons')),
    sa.UniqueConstraint('code', name=op.f('uq_seasons_code'))
    )
    op.create_table('extras',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=24), nullable=False),
    sa.Column('name', sa.String(length=60), nullable=False),
    sa.Column('description', sa.String(length=200), nullable=False),
    sa.Column('per_day_pence', sa.Integer(), nullable=False),
    sa.Column('cap_pence', sa.Integer(), nullable=True),
    sa.Column('max_quantity', sa.Integer(), nullable=False),
    sa.Column('group', sa.String(length=24), nullable=False),
    sa.Column('sort_order', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.CheckConstraint('cap_pence IS NULL OR cap_pence >= 0', name=op.f('ck_extras_cap_not_negative')),
    sa.CheckConstraint('max_quantity >= 1', name=op.f('ck_extras_max_quantity_positive')),
    sa.CheckConstraint('per_day_pence >= 0', name=op.f('ck_extras_per_day_not_negative')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_extras')),
    sa.UniqueConstraint('code', name=op.f('uq_extras_code'))
    )
    op.create_table('one_way_fees',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('from_branch_id', sa.Integer(), nullable=False),
    sa.Column('to_branch_id', sa.Integer(), nullable=False),
    sa.Column('fee_pence', sa.Integer(), nullable=False),
    sa.CheckConstraint('fee_pence >= 0', name=op.f('ck_one_way_fees_fee_not_negative')),
    sa.CheckConstraint('from_branch_id <> to_branch_id', name=op.f('ck_one_way_fees_different_branches')),
    sa.ForeignKeyConstraint(['from_branch_id'], ['branches.id'], name=op.f('fk_one_way_fees_from_branch_id_branches')),
    sa.ForeignKeyConstraint(['to_branch_id'], ['branches.id'], name=op.f('fk_one_way_fees_to_branch_id_branches')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_one_way_fees')),
    sa.UniqueConstraint('from_branch_id', 'to_branch_id', name=op.f('uq_one_way_fees_from_branch_id'))
    )
    with op.batch_alter_table('hires', schema=None) as batch_op:
        batch_op.add_column(sa.Column('extras', sa.JSON(), server_default=sa.text("'{}'"), nullable=False))
        batch_op.add_column(sa.Column('vat_pence', sa.Integer(), server_default=sa.text('0'), nullable=False))

    with op.batch_alter_table('occupancies', schema=None) as batch_op:
        batch_op.create_index('ix_occupancies_car_id_starts_at', ['car_id', 'starts_at', 'ends_at'], unique=False)

    with op.batch_alter_table('outbound_emails', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attachment_filename', sa.String(length=100), server_default=sa.text("''"), nullable=False))
        batch_op.add_column(sa.Column('attachment_mimetype', sa.String(length=60), server_default=sa.text("''"), nullable=False))
        batch_op.add_column(sa.Column('attachment_text', sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table('outbound_emails', schema=None) as batch_op:
        batch_op.drop_column('attachment_text')
        batch_op.drop_column('attachment_mimetype')
        batch_op.drop_column('attachment_filename')

    with op.batch_alter_table('occupancies', schema=None) as batch_op:
        batch_op.drop_index('ix_occupancies_car_id_starts_at')

    with op.batch_alter_table('hires', schema=None) as batch_op:
        batch_op.drop_column('vat_pence')
        batch_op.drop_column('extras')

    op.drop_table('one_way_fees')
    op.drop_table('extras')
    op.drop_table('seasons')
    op.drop_table('duration_tiers')

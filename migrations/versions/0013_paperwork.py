"""paperwork: rental agreements (and addenda), VAT invoices and credit notes, gapless
numbering, files attached to emails, the witness of a signature

Revision ID: 0013_paperwork
Revises: 0012
Create Date: 2026-12-06 10:00:00

Only new tables and one nullable column: the release before this one runs unchanged on the
new schema. Signatures recorded before it name no witness: their agreement names the member
of staff who handed the car over.
"""
from alembic import op
import sqlalchemy as sa


revision = '0013_paperwork'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'rental_agreements',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('hire_id', sa.Integer(), nullable=False),
        sa.Column('sequence', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=10), nullable=False),
        sa.Column('amends_id', sa.Integer(), nullable=True),
        sa.Column('state', sa.String(length=8), nullable=False),
        sa.Column('terms_version', sa.String(length=20), nullable=False),
        sa.Column('snapshot', sa.JSON(), nullable=False),
        sa.Column('content_sha256', sa.String(length=64), nullable=False),
        sa.Column('file_sha256', sa.String(length=64), nullable=False),
        sa.Column('pdf', sa.LargeBinary(), nullable=True),
        sa.Column('requested_by_id', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('ready_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('last_error', sa.String(length=300), nullable=False),
        sa.CheckConstraint("state IN ('pending', 'ready', 'failed', 'erased')", name='ck_rental_agreements_state_known'),
        sa.CheckConstraint("kind IN ('agreement', 'addendum')", name='ck_rental_agreements_kind_known'),
        sa.CheckConstraint("(kind = 'agreement') = (sequence = 1)", name='ck_rental_agreements_agreement_first'),
        sa.ForeignKeyConstraint(['hire_id'], ['hires.id'], name='fk_rental_agreements_hire_id_hires',
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['amends_id'], ['rental_agreements.id'],
                                name='fk_rental_agreements_amends_id_rental_agreements'),
        sa.ForeignKeyConstraint(['requested_by_id'], ['users.id'],
                                name='fk_rental_agreements_requested_by_id_users'),
        sa.PrimaryKeyConstraint('id', name='pk_rental_agreements'),
        sa.UniqueConstraint('hire_id', 'sequence', name='uq_rental_agreements_hire_sequence'),
    )
    op.create_index('ix_rental_agreements_hire_id', 'rental_agreements', ['hire_id'])

    op.create_table(
        'invoice_counters',
        sa.Column('series', sa.String(length=20), nullable=False),
        sa.Column('last_number', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('series', name='pk_invoice_counters'),
    )

    op.create_table(
        'invoices',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=12), nullable=False),
        sa.Column('number', sa.Integer(), nullable=False),
        sa.Column('purpose', sa.String(length=12), nullable=False),
        sa.Column('hire_id', sa.Integer(), nullable=False),
        sa.Column('customer_id', sa.Integer(), nullable=False),
        sa.Column('corrects_id', sa.Integer(), nullable=True),
        sa.Column('idempotency_key', sa.String(length=100), nullable=False),
        sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('tax_point', sa.DateTime(timezone=True), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('seller', sa.JSON(), nullable=False),
        sa.Column('buyer', sa.JSON(), nullable=False),
        sa.Column('lines', sa.JSON(), nullable=False),
        sa.Column('net_pence', sa.Integer(), nullable=False),
        sa.Column('vat_pence', sa.Integer(), nullable=False),
        sa.Column('gross_pence', sa.Integer(), nullable=False),
        sa.Column('deposit_held_pence', sa.Integer(), nullable=False),
        sa.Column('deposit_taken_pence', sa.Integer(), nullable=False),
        sa.Column('deposit_released_pence', sa.Integer(), nullable=False),
        sa.Column('card_charged_pence', sa.Integer(), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('issued_by_id', sa.Integer(), nullable=True),
        sa.CheckConstraint("kind IN ('invoice', 'credit_note')", name='ck_invoices_kind_known'),
        sa.CheckConstraint("purpose IN ('booking', 'settlement', 'refund')", name='ck_invoices_purpose_known'),
        sa.CheckConstraint('number > 0', name='ck_invoices_number_positive'),
        sa.CheckConstraint("(kind = 'credit_note') = (purpose = 'refund')", name='ck_invoices_credit_notes_refund'),
        sa.ForeignKeyConstraint(['hire_id'], ['hires.id'], name='fk_invoices_hire_id_hires'),
        sa.ForeignKeyConstraint(['customer_id'], ['users.id'], name='fk_invoices_customer_id_users'),
        sa.ForeignKeyConstraint(['corrects_id'], ['invoices.id'], name='fk_invoices_corrects_id_invoices'),
        sa.ForeignKeyConstraint(['issued_by_id'], ['users.id'], name='fk_invoices_issued_by_id_users'),
        sa.PrimaryKeyConstraint('id', name='pk_invoices'),
        sa.UniqueConstraint('kind', 'number', name='uq_invoices_kind_number'),
        sa.UniqueConstraint('idempotency_key', name='uq_invoices_idempotency_key'),
    )
    op.create_index('ix_invoices_hire_id', 'invoices', ['hire_id'])
    op.create_index('ix_invoices_customer_id', 'invoices', ['customer_id'])
    op.create_index('ix_invoices_issued_at', 'invoices', ['issued_at'])

    op.create_table(
        'email_files',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('email_id', sa.Integer(), nullable=False),
        sa.Column('filename', sa.String(length=100), nullable=False),
        sa.Column('mimetype', sa.String(length=60), nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(['email_id'], ['outbound_emails.id'], name='fk_email_files_email_id_outbound_emails',
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name='pk_email_files'),
    )
    op.create_index('ix_email_files_email_id', 'email_files', ['email_id'])

    with op.batch_alter_table('inspections', schema=None) as batch_op:
        batch_op.add_column(sa.Column('signature_witness_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_inspections_signature_witness_id_users', 'users',
                                    ['signature_witness_id'], ['id'])


def downgrade():
    with op.batch_alter_table('inspections', schema=None) as batch_op:
        batch_op.drop_constraint('fk_inspections_signature_witness_id_users', type_='foreignkey')
        batch_op.drop_column('signature_witness_id')
    op.drop_index('ix_email_files_email_id', table_name='email_files')
    op.drop_table('email_files')
    op.drop_index('ix_invoices_issued_at', table_name='invoices')
    op.drop_index('ix_invoices_customer_id', table_name='invoices')
    op.drop_index('ix_invoices_hire_id', table_name='invoices')
    op.drop_table('invoices')
    op.drop_table('invoice_counters')
    op.drop_index('ix_rental_agreements_hire_id', table_name='rental_agreements')
    op.drop_table('rental_agreements')

"""billing (charges, BHYT rules, payments, claims)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Ts = sa.DateTime(timezone=True)
Amount = sa.Numeric(precision=18, scale=2)
JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table('billing_claim_batches',
    sa.Column('id', BigId, nullable=False),
    sa.Column('format', sa.String(length=10), nullable=False),
    sa.Column('date_from', sa.Date(), nullable=False),
    sa.Column('date_to', sa.Date(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('claim_count', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', Ts, nullable=False),
    sa.Column('finished_at', Ts, nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_claim_batches'))
    )
    op.create_table('billing_counters',
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('value', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_billing_counters'))
    )
    op.create_table('billing_item_terms',
    sa.Column('id', BigId, nullable=False),
    sa.Column('item_kind', sa.String(length=10), nullable=False),
    sa.Column('item_code', sa.String(length=50), nullable=False),
    sa.Column('cost_group', sa.Integer(), nullable=True),
    sa.Column('in_list', sa.Boolean(), nullable=False),
    sa.Column('payment_ratio', sa.Integer(), nullable=False),
    sa.Column('tender', sa.String(length=50), nullable=True),
    sa.Column('valid_from', sa.Date(), nullable=False),
    sa.Column('valid_to', sa.Date(), nullable=True),
    sa.CheckConstraint("item_kind IN ('service', 'drug', 'supply', 'bed')", name=op.f('ck_billing_item_terms_item_kind')),
    sa.CheckConstraint('payment_ratio BETWEEN 0 AND 100', name=op.f('ck_billing_item_terms_payment_ratio')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_item_terms')),
    sa.UniqueConstraint('item_kind', 'item_code', 'valid_from', name=op.f('uq_billing_item_terms_item_kind'))
    )
    op.create_table('billing_department_bed_services',
    sa.Column('id', BigId, nullable=False),
    sa.Column('department_id', sa.Integer(), nullable=False),
    sa.Column('service_id', BigId, nullable=False),
    sa.ForeignKeyConstraint(['department_id'], ['departments.id'], name=op.f('fk_billing_department_bed_services_department_id_departments')),
    sa.ForeignKeyConstraint(['service_id'], ['catalog_services.id'], name=op.f('fk_billing_department_bed_services_service_id_catalog_services')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_department_bed_services')),
    sa.UniqueConstraint('department_id', name=op.f('uq_billing_department_bed_services_department_id'))
    )
    op.create_table('billing_shifts',
    sa.Column('id', BigId, nullable=False),
    sa.Column('cashier_id', sa.Integer(), nullable=False),
    sa.Column('opened_at', Ts, nullable=False),
    sa.Column('opening_float', Amount, nullable=False),
    sa.Column('closed_at', Ts, nullable=True),
    sa.Column('counted_cash', Amount, nullable=True),
    sa.Column('report', JSONType, nullable=True),
    sa.ForeignKeyConstraint(['cashier_id'], ['users.id'], name=op.f('fk_billing_shifts_cashier_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_shifts'))
    )
    op.create_index('uq_billing_shifts_cashier_open', 'billing_shifts', ['cashier_id'], unique=True, postgresql_where=sa.text('closed_at IS NULL'), sqlite_where=sa.text('closed_at IS NULL'))
    op.create_table('billing_bills',
    sa.Column('id', BigId, nullable=False),
    sa.Column('encounter_id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('rule_code', sa.String(length=40), nullable=True),
    sa.Column('benefit_percent', sa.Integer(), nullable=True),
    sa.Column('total', Amount, nullable=False),
    sa.Column('insurer_pays', Amount, nullable=False),
    sa.Column('patient_copay', Amount, nullable=False),
    sa.Column('patient_self', Amount, nullable=False),
    sa.Column('patient_share', Amount, nullable=False),
    sa.Column('computed_at', Ts, nullable=True),
    sa.Column('paid_at', Ts, nullable=True),
    sa.Column('created_at', Ts, nullable=False),
    sa.CheckConstraint("status IN ('open', 'paid')", name=op.f('ck_billing_bills_status')),
    sa.ForeignKeyConstraint(['encounter_id'], ['encounters.id'], name=op.f('fk_billing_bills_encounter_id_encounters')),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_billing_bills_patient_id_patients')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_bills')),
    sa.UniqueConstraint('code', name=op.f('uq_billing_bills_code')),
    sa.UniqueConstraint('encounter_id', name=op.f('uq_billing_bills_encounter_id'))
    )
    op.create_index(op.f('ix_billing_bills_patient_id'), 'billing_bills', ['patient_id'])
    op.create_table('billing_claims',
    sa.Column('id', BigId, nullable=False),
    sa.Column('encounter_id', sa.Integer(), nullable=False),
    sa.Column('format', sa.String(length=10), nullable=False),
    sa.Column('link_key', sa.String(length=100), nullable=False),
    sa.Column('ended_at', Ts, nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('errors', JSONType, nullable=True),
    sa.Column('supplement', JSONType, nullable=True),
    sa.Column('total', Amount, nullable=False),
    sa.Column('insurer_pays', Amount, nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=True),
    sa.Column('file_sha256', sa.String(length=64), nullable=True),
    sa.Column('built_at', Ts, nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('gateway_ref', sa.String(length=100), nullable=True),
    sa.Column('gateway_message', sa.Text(), nullable=True),
    sa.Column('sent_at', Ts, nullable=True),
    sa.Column('answered_at', Ts, nullable=True),
    sa.Column('batch_id', BigId, nullable=True),
    sa.CheckConstraint("format IN ('qd130', '4210')", name=op.f('ck_billing_claims_format')),
    sa.CheckConstraint("status IN ('invalid', 'valid', 'queued', 'sent', 'accepted', 'rejected', 'failed')", name=op.f('ck_billing_claims_status')),
    sa.ForeignKeyConstraint(['batch_id'], ['billing_claim_batches.id'], name=op.f('fk_billing_claims_batch_id_billing_claim_batches')),
    sa.ForeignKeyConstraint(['encounter_id'], ['encounters.id'], name=op.f('fk_billing_claims_encounter_id_encounters')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_claims')),
    sa.UniqueConstraint('encounter_id', 'format', name=op.f('uq_billing_claims_encounter_id'))
    )
    op.create_index(op.f('ix_billing_claims_batch_id'), 'billing_claims', ['batch_id'])
    op.create_index('ix_billing_claims_status_ended', 'billing_claims', ['status', 'ended_at'])
    op.create_table('billing_bank_transactions',
    sa.Column('id', BigId, nullable=False),
    sa.Column('bank_txn_id', sa.String(length=80), nullable=False),
    sa.Column('account', sa.String(length=40), nullable=False),
    sa.Column('amount', Amount, nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('reference', sa.String(length=40), nullable=True),
    sa.Column('credited_at', Ts, nullable=False),
    sa.Column('received_at', Ts, nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('hold_reason', sa.String(length=40), nullable=True),
    sa.Column('bill_id', BigId, nullable=True),
    sa.Column('raw', JSONType, nullable=False),
    sa.Column('resolved_at', Ts, nullable=True),
    sa.Column('resolved_by', sa.Integer(), nullable=True),
    sa.Column('resolution_note', sa.Text(), nullable=True),
    sa.CheckConstraint("status IN ('applied', 'held', 'unmatched', 'refunded', 'dismissed')", name=op.f('ck_billing_bank_transactions_status')),
    sa.ForeignKeyConstraint(['bill_id'], ['billing_bills.id'], name=op.f('fk_billing_bank_transactions_bill_id_billing_bills')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_bank_transactions')),
    sa.UniqueConstraint('bank_txn_id', name=op.f('uq_billing_bank_transactions_bank_txn_id'))
    )
    op.create_index(op.f('ix_billing_bank_transactions_bill_id'), 'billing_bank_transactions', ['bill_id'])
    op.create_index(op.f('ix_billing_bank_transactions_reference'), 'billing_bank_transactions', ['reference'])
    op.create_table('billing_charges',
    sa.Column('id', BigId, nullable=False),
    sa.Column('encounter_id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('source_key', sa.String(length=80), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=True),
    sa.Column('item_kind', sa.String(length=10), nullable=False),
    sa.Column('item_code', sa.String(length=50), nullable=False),
    sa.Column('bhyt_code', sa.String(length=50), nullable=True),
    sa.Column('item_name', sa.String(length=500), nullable=False),
    sa.Column('unit', sa.String(length=50), nullable=False),
    sa.Column('cost_group', sa.Integer(), nullable=False),
    sa.Column('in_list', sa.Boolean(), nullable=False),
    sa.Column('payment_ratio', sa.Integer(), nullable=False),
    sa.Column('bhyt_unit_price', sa.Numeric(precision=15, scale=3), nullable=True),
    sa.Column('payer', sa.String(length=10), nullable=False),
    sa.Column('quantity', sa.Numeric(precision=12, scale=3), nullable=False),
    sa.Column('unit_price', sa.Numeric(precision=15, scale=3), nullable=True),
    sa.Column('amount', Amount, nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('problem', sa.Text(), nullable=True),
    sa.Column('service_at', Ts, nullable=False),
    sa.Column('service_day', sa.Date(), nullable=False),
    sa.Column('department_id', sa.Integer(), nullable=True),
    sa.Column('doctor_id', sa.Integer(), nullable=True),
    sa.Column('performer_id', sa.Integer(), nullable=True),
    sa.Column('bed_code', sa.String(length=20), nullable=True),
    sa.Column('credit_of_id', BigId, nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', Ts, nullable=False),
    sa.CheckConstraint("item_kind IN ('service', 'drug', 'supply', 'bed')", name=op.f('ck_billing_charges_item_kind')),
    sa.CheckConstraint("source IN ('order', 'dispense', 'bed_day', 'adjustment')", name=op.f('ck_billing_charges_source')),
    sa.CheckConstraint("status = 'unpriced' OR (unit_price IS NOT NULL AND amount IS NOT NULL)", name=op.f('ck_billing_charges_priced')),
    sa.CheckConstraint("status IN ('priced', 'unpriced')", name=op.f('ck_billing_charges_status')),
    sa.ForeignKeyConstraint(['credit_of_id'], ['billing_charges.id'], name=op.f('fk_billing_charges_credit_of_id_billing_charges')),
    sa.ForeignKeyConstraint(['department_id'], ['departments.id'], name=op.f('fk_billing_charges_department_id_departments')),
    sa.ForeignKeyConstraint(['doctor_id'], ['staff.id'], name=op.f('fk_billing_charges_doctor_id_staff')),
    sa.ForeignKeyConstraint(['encounter_id'], ['encounters.id'], name=op.f('fk_billing_charges_encounter_id_encounters')),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_billing_charges_order_id_orders')),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_billing_charges_patient_id_patients')),
    sa.ForeignKeyConstraint(['performer_id'], ['staff.id'], name=op.f('fk_billing_charges_performer_id_staff')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_charges')),
    sa.UniqueConstraint('source_key', name=op.f('uq_billing_charges_source_key'))
    )
    op.create_index('ix_billing_charges_encounter_service', 'billing_charges', ['encounter_id', 'service_at'])
    op.create_index(op.f('ix_billing_charges_order_id'), 'billing_charges', ['order_id'])
    op.create_index(op.f('ix_billing_charges_patient_id'), 'billing_charges', ['patient_id'])
    op.create_table('billing_clinical_results',
    sa.Column('id', BigId, nullable=False),
    sa.Column('encounter_id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=True),
    sa.Column('source', sa.String(length=10), nullable=False),
    sa.Column('report_id', sa.String(length=40), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=50), nullable=True),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('value', sa.String(length=50), nullable=True),
    sa.Column('unit', sa.String(length=50), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('conclusion', sa.Text(), nullable=True),
    sa.Column('reported_at', Ts, nullable=False),
    sa.Column('reported_by', sa.String(length=255), nullable=True),
    sa.ForeignKeyConstraint(['encounter_id'], ['encounters.id'], name=op.f('fk_billing_clinical_results_encounter_id_encounters')),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_billing_clinical_results_order_id_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_clinical_results')),
    sa.UniqueConstraint('source', 'report_id', 'position', name=op.f('uq_billing_clinical_results_source'))
    )
    op.create_index(op.f('ix_billing_clinical_results_encounter_id'), 'billing_clinical_results', ['encounter_id'])
    op.create_table('billing_payments',
    sa.Column('id', BigId, nullable=False),
    sa.Column('bill_id', BigId, nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('method', sa.String(length=10), nullable=False),
    sa.Column('amount', Amount, nullable=False),
    sa.Column('receipt_number', sa.String(length=30), nullable=False),
    sa.Column('shift_id', BigId, nullable=True),
    sa.Column('bank_transaction_id', BigId, nullable=True),
    sa.Column('card_approval_code', sa.String(length=20), nullable=True),
    sa.Column('card_terminal', sa.String(length=20), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', Ts, nullable=False),
    sa.CheckConstraint("kind IN ('payment', 'advance', 'refund')", name=op.f('ck_billing_payments_kind')),
    sa.CheckConstraint("method IN ('cash', 'qr', 'card')", name=op.f('ck_billing_payments_method')),
    sa.CheckConstraint('amount > 0', name=op.f('ck_billing_payments_amount')),
    sa.ForeignKeyConstraint(['bank_transaction_id'], ['billing_bank_transactions.id'], name=op.f('fk_billing_payments_bank_transaction_id_billing_bank_transactions')),
    sa.ForeignKeyConstraint(['bill_id'], ['billing_bills.id'], name=op.f('fk_billing_payments_bill_id_billing_bills')),
    sa.ForeignKeyConstraint(['shift_id'], ['billing_shifts.id'], name=op.f('fk_billing_payments_shift_id_billing_shifts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_payments')),
    sa.UniqueConstraint('bank_transaction_id', name=op.f('uq_billing_payments_bank_transaction_id')),
    sa.UniqueConstraint('receipt_number', name=op.f('uq_billing_payments_receipt_number'))
    )
    op.create_index(op.f('ix_billing_payments_bill_id'), 'billing_payments', ['bill_id'])
    op.create_index(op.f('ix_billing_payments_shift_id'), 'billing_payments', ['shift_id'])

def downgrade() -> None:
    op.drop_table("billing_payments")
    op.drop_table("billing_clinical_results")
    op.drop_table("billing_charges")
    op.drop_table("billing_bank_transactions")
    op.drop_table("billing_claims")
    op.drop_table("billing_bills")
    op.drop_table("billing_shifts")
    op.drop_table("billing_department_bed_services")
    op.drop_table("billing_item_terms")
    op.drop_table("billing_counters")
    op.drop_table("billing_claim_batches")

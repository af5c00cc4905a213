"""laboratory (catalogue, specimens, analysers, message store, results, reports, critical alerts)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Ts = sa.DateTime(timezone=True)
JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BARCODE_SEQUENCE = "lis_specimen_barcode_seq"


def upgrade() -> None:
    op.create_table('lis_analysers',
    sa.Column('id', BigId, nullable=False),
    sa.Column('code', sa.String(length=30), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('sender', sa.String(length=200), nullable=False),
    sa.Column('protocol', sa.String(length=10), nullable=False),
    sa.Column('hl7_version', sa.String(length=10), nullable=False),
    sa.Column('host', sa.String(length=200), nullable=True),
    sa.Column('port', sa.Integer(), nullable=True),
    sa.Column('order_message', sa.String(length=10), nullable=False),
    sa.Column('specimen_field', sa.String(length=10), nullable=True),
    sa.Column('quirks', JSONType, nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', Ts, nullable=False),
    sa.Column('updated_at', Ts, nullable=False),
    sa.CheckConstraint("order_message IN ('ORM^O01', 'OML^O21')", name=op.f('ck_lis_analysers_order_message')),
    sa.CheckConstraint("protocol IN ('hl7', 'astm')", name=op.f('ck_lis_analysers_protocol')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lis_analysers')),
    sa.UniqueConstraint('code', name=op.f('uq_lis_analysers_code')),
    sa.UniqueConstraint('sender', name=op.f('uq_lis_analysers_sender'))
    )
    op.create_table('lis_tests',
    sa.Column('id', BigId, nullable=False),
    sa.Column('code', sa.String(length=30), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('loinc', sa.String(length=20), nullable=True),
    sa.Column('unit', sa.String(length=30), nullable=True),
    sa.Column('value_type', sa.String(length=2), nullable=False),
    sa.Column('decimals', sa.Integer(), nullable=True),
    sa.Column('specimen_type', sa.String(length=10), nullable=False),
    sa.Column('is_panel', sa.Boolean(), nullable=False),
    sa.Column('service_code', sa.String(length=50), nullable=True),
    sa.Column('delta_percent', sa.Numeric(precision=6, scale=2), nullable=True),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', Ts, nullable=False),
    sa.CheckConstraint("value_type IN ('NM', 'ST', 'TX', 'CE', 'SN')", name=op.f('ck_lis_tests_value_type')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lis_tests')),
    sa.UniqueConstraint('code', name=op.f('uq_lis_tests_code'))
    )
    op.create_index(op.f('ix_lis_tests_loinc'), 'lis_tests', ['loinc'], unique=False)
    op.create_index(op.f('ix_lis_tests_service_code'), 'lis_tests', ['service_code'], unique=False)
    op.create_table('lis_analyser_codes',
    sa.Column('id', BigId, nullable=False),
    sa.Column('analyser_id', BigId, nullable=False),
    sa.Column('code', sa.String(length=50), nullable=False),
    sa.Column('test_id', BigId, nullable=False),
    sa.ForeignKeyConstraint(['analyser_id'], ['lis_analysers.id'], name=op.f('fk_lis_analyser_codes_analyser_id_lis_analysers')),
    sa.ForeignKeyConstraint(['test_id'], ['lis_tests.id'], name=op.f('fk_lis_analyser_codes_test_id_lis_tests')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lis_analyser_codes')),
    sa.UniqueConstraint('analyser_id', 'code', name=op.f('uq_lis_analyser_codes_analyser_id'))
    )
    op.create_index(op.f('ix_lis_analyser_codes_analyser_id'), 'lis_analyser_codes', ['analyser_id'], unique=False)
    op.create_index(op.f('ix_lis_analyser_codes_test_id'), 'lis_analyser_codes', ['test_id'], unique=False)
    op.create_table('lis_messages',
    sa.Column('id', BigId, nullable=False),
    sa.Column('protocol', sa.String(length=10), nullable=False),
    sa.Column('direction', sa.String(length=3), nullable=False),
    sa.Column('sender', sa.String(length=200), nullable=True),
    sa.Column('control_id', sa.String(length=199), nullable=True),
    sa.Column('content_hash', sa.String(length=64), nullable=True),
    sa.Column('message_type', sa.String(length=20), nullable=True),
    sa.Column('version', sa.String(length=10), nullable=True),
    sa.Column('analyser_id', BigId, nullable=True),
    sa.Column('peer', sa.String(length=100), nullable=True),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.Column('received_at', Ts, nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('error_code', sa.String(length=10), nullable=True),
    sa.Column('error_location', sa.String(length=40), nullable=True),
    sa.Column('error_reason', sa.Text(), nullable=True),
    sa.Column('ack_code', sa.String(length=2), nullable=True),
    sa.Column('ack', sa.LargeBinary(), nullable=True),
    sa.Column('specimen_barcodes', sa.String(length=300), nullable=True),
    sa.Column('results_count', sa.Integer(), nullable=False),
    sa.Column('processed_at', Ts, nullable=True),
    sa.Column('resolved_by', sa.String(length=120), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.CheckConstraint("direction IN ('in', 'out')", name=op.f('ck_lis_messages_direction')),
    sa.CheckConstraint("status IN ('applied', 'unmatched', 'resolved', 'error', 'rejected', 'answered', 'pending', 'sent')", name=op.f('ck_lis_messages_status')),
    sa.ForeignKeyConstraint(['analyser_id'], ['lis_analysers.id'], name=op.f('fk_lis_messages_analyser_id_lis_analysers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lis_messages')),
    sa.UniqueConstraint('sender', 'control_id', 'content_hash', name=op.f('uq_lis_messages_sender'))
    )
    op.create_index(op.f('ix_lis_messages_analyser_id'), 'lis_messages', ['analyser_id'], unique=False)
    op.create_index('ix_lis_messages_status_received', 'lis_messages', ['status', 'received_at'], unique=False)
    op.create_table('lis_panel_members',
    sa.Column('id', BigId, nullable=False),
    sa.Column('panel_id', BigId, nullable=False),
    sa.Column('test_id', BigId, nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['panel_id'], ['lis_tests.id'], name=op.f('fk_lis_panel_members_panel_id_lis_tests')),
    sa.ForeignKeyConstraint(['test_id'], ['lis_tests.id'], name=op.f('fk_lis_panel_members_test_id_lis_tests')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lis_panel_members')),
    sa.UniqueConstraint('panel_id', 'test_id', name=op.f('uq_lis_panel_members_panel_id'))
    )
    op.create_index(op.f('ix_lis_panel_members_panel_id'), 'lis_panel_members', ['panel_id'], unique=False)
    op.create_index(op.f('ix_lis_panel_members_test_id'), 'lis_panel_members', ['test_id'], unique=False)
    op.create_table('lis_reference_ranges',
    sa.Column('id', BigId, nullable=False),
    sa.Column('test_id', BigId, nullable=False),
    sa.Column('sex', sa.String(length=6), nullable=True),
    sa.Column('age_from_months', sa.Integer(), nullable=True),
    sa.Column('age_to_months', sa.Integer(), nullable=True),
    sa.Column('low', sa.Numeric(precision=18, scale=6), nullable=True),
    sa.Column('high', sa.Numeric(precision=18, scale=6), nullable=True),
    sa.Column('critical_low', sa.Numeric(precision=18, scale=6), nullable=True),
    sa.Column('critical_high', sa.Numeric(precision=18, scale=6), nullable=True),
    sa.Column('text', sa.String(length=100), nullable=True),
    sa.CheckConstraint("sex IN ('female', 'male')", name=op.f('ck_lis_reference_ranges_sex')),
    sa.ForeignKeyConstraint(['test_id'], ['lis_tests.id'], name=op.f('fk_lis_reference_ranges_test_id_lis_tests')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lis_reference_ranges'))
    )
    op.create_index(op.f('ix_lis_reference_ranges_test_id'), 'lis_reference_ranges', ['test_id'], unique=False)
    op.create_table('lis_specimens',
    sa.Column('id', BigId, nullable=False),
    sa.Column('barcode', sa.String(length=30), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('encounter_id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('specimen_type', sa.String(length=10), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('created_at', Ts, nullable=False),
    sa.Column('collected_at', Ts, nullable=True),
    sa.Column('collected_by', sa.String(length=120), nullable=True),
    sa.Column('received_at', Ts, nullable=True),
    sa.Column('received_by', sa.String(length=120), nullable=True),
    sa.Column('rejected_at', Ts, nullable=True),
    sa.Column('rejected_by', sa.String(length=120), nullable=True),
    sa.Column('reject_reason', sa.Text(), nullable=True),
    sa.CheckConstraint("status IN ('ordered', 'collected', 'received', 'rejected', 'resulted', 'released')", name=op.f('ck_lis_specimens_status')),
    sa.ForeignKeyConstraint(['encounter_id'], ['encounters.id'], name=op.f('fk_lis_specimens_encounter_id_encounters')),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_lis_specimens_order_id_orders')),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_lis_specimens_patient_id_patients')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lis_specimens')),
    sa.UniqueConstraint('barcode', name=op.f('uq_lis_specimens_barcode'))
    )
    op.create_index(op.f('ix_lis_specimens_encounter_id'), 'lis_specimens', ['encounter_id'], unique=False)
    op.create_index(op.f('ix_lis_specimens_order_id'), 'lis_specimens', ['order_id'], unique=False)
    op.create_index(op.f('ix_lis_specimens_patient_id'), 'lis_specimens', ['patient_id'], unique=False)
    op.create_index('ix_lis_specimens_status_created', 'lis_specimens', ['status', 'created_at'], unique=False)
    op.create_table('lis_reports',
    sa.Column('id', BigId, nullable=False),
    sa.Column('specimen_id', BigId, nullable=False),
    sa.Column('encounter_id', sa.Integer(), nullable=False),
    sa.Column('released_at', Ts, nullable=False),
    sa.Column('released_by', sa.String(length=200), nullable=False),
    sa.Column('released_by_id', sa.Integer(), nullable=True),
    sa.Column('content', JSONType, nullable=False),
    sa.ForeignKeyConstraint(['encounter_id'], ['encounters.id'], name=op.f('fk_lis_reports_encounter_id_encounters')),
    sa.ForeignKeyConstraint(['specimen_id'], ['lis_specimens.id'], name=op.f('fk_lis_reports_specimen_id_lis_specimens')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lis_reports'))
    )
    op.create_index(op.f('ix_lis_reports_encounter_id'), 'lis_reports', ['encounter_id'], unique=False)
    op.create_index(op.f('ix_lis_reports_specimen_id'), 'lis_reports', ['specimen_id'], unique=False)
    op.create_table('lis_specimen_tests',
    sa.Column('id', BigId, nullable=False),
    sa.Column('specimen_id', BigId, nullable=False),
    sa.Column('test_id', BigId, nullable=False),
    sa.Column('order_line_id', sa.Integer(), nullable=True),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['order_line_id'], ['order_lines.id'], name=op.f('fk_lis_specimen_tests_order_line_id_order_lines')),
    sa.ForeignKeyConstraint(['specimen_id'], ['lis_specimens.id'], name=op.f('fk_lis_specimen_tests_specimen_id_lis_specimens')),
    sa.ForeignKeyConstraint(['test_id'], ['lis_tests.id'], name=op.f('fk_lis_specimen_tests_test_id_lis_tests')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lis_specimen_tests')),
    sa.UniqueConstraint('specimen_id', 'test_id', name=op.f('uq_lis_specimen_tests_specimen_id'))
    )
    op.create_index(op.f('ix_lis_specimen_tests_specimen_id'), 'lis_specimen_tests', ['specimen_id'], unique=False)
    op.create_index(op.f('ix_lis_specimen_tests_test_id'), 'lis_specimen_tests', ['test_id'], unique=False)
    op.create_table('lis_results',
    sa.Column('id', BigId, nullable=False),
    sa.Column('specimen_id', BigId, nullable=False),
    sa.Column('test_id', BigId, nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('value', sa.String(length=500), nullable=True),
    sa.Column('numeric_value', sa.Numeric(precision=18, scale=6), nullable=True),
    sa.Column('unit', sa.String(length=30), nullable=True),
    sa.Column('reference_range', sa.String(length=100), nullable=True),
    sa.Column('flag', sa.String(length=4), nullable=True),
    sa.Column('analyser_flags', sa.String(length=30), nullable=True),
    sa.Column('critical', sa.Boolean(), nullable=False),
    sa.Column('delta_flag', sa.Boolean(), nullable=False),
    sa.Column('previous_value', sa.String(length=500), nullable=True),
    sa.Column('result_status', sa.String(length=1), nullable=False),
    sa.Column('stage', sa.String(length=25), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('message_id', BigId, nullable=True),
    sa.Column('analyser_id', BigId, nullable=True),
    sa.Column('observed_at', Ts, nullable=True),
    sa.Column('created_at', Ts, nullable=False),
    sa.Column('entered_by', sa.String(length=120), nullable=True),
    sa.Column('superseded_at', Ts, nullable=True),
    sa.Column('technical_by', sa.String(length=120), nullable=True),
    sa.Column('technical_at', Ts, nullable=True),
    sa.Column('medical_by', sa.String(length=120), nullable=True),
    sa.Column('medical_at', Ts, nullable=True),
    sa.Column('report_id', BigId, nullable=True),
    sa.CheckConstraint("stage IN ('preliminary', 'technically_validated', 'medically_validated', 'released')", name=op.f('ck_lis_results_stage')),
    sa.ForeignKeyConstraint(['analyser_id'], ['lis_analysers.id'], name=op.f('fk_lis_results_analyser_id_lis_analysers')),
    sa.ForeignKeyConstraint(['message_id'], ['lis_messages.id'], name=op.f('fk_lis_results_message_id_lis_messages')),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_lis_results_patient_id_patients')),
    sa.ForeignKeyConstraint(['report_id'], ['lis_reports.id'], name=op.f('fk_lis_results_report_id_lis_reports')),
    sa.ForeignKeyConstraint(['specimen_id'], ['lis_specimens.id'], name=op.f('fk_lis_results_specimen_id_lis_specimens')),
    sa.ForeignKeyConstraint(['test_id'], ['lis_tests.id'], name=op.f('fk_lis_results_test_id_lis_tests')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lis_results')),
    sa.UniqueConstraint('specimen_id', 'test_id', 'version', name=op.f('uq_lis_results_specimen_id'))
    )
    op.create_index(op.f('ix_lis_results_message_id'), 'lis_results', ['message_id'], unique=False)
    op.create_index('ix_lis_results_patient_test', 'lis_results', ['patient_id', 'test_id', 'created_at'], unique=False)
    op.create_index(op.f('ix_lis_results_report_id'), 'lis_results', ['report_id'], unique=False)
    op.create_index(op.f('ix_lis_results_specimen_id'), 'lis_results', ['specimen_id'], unique=False)
    op.create_table('lis_critical_alerts',
    sa.Column('id', BigId, nullable=False),
    sa.Column('result_id', BigId, nullable=False),
    sa.Column('encounter_id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('doctor_user_id', sa.Integer(), nullable=True),
    sa.Column('created_at', Ts, nullable=False),
    sa.Column('acknowledged_at', Ts, nullable=True),
    sa.Column('acknowledged_by', sa.String(length=120), nullable=True),
    sa.Column('acknowledged_by_id', sa.Integer(), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['encounter_id'], ['encounters.id'], name=op.f('fk_lis_critical_alerts_encounter_id_encounters')),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_lis_critical_alerts_patient_id_patients')),
    sa.ForeignKeyConstraint(['result_id'], ['lis_results.id'], name=op.f('fk_lis_critical_alerts_result_id_lis_results')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lis_critical_alerts'))
    )
    op.create_index(op.f('ix_lis_critical_alerts_doctor_user_id'), 'lis_critical_alerts', ['doctor_user_id'], unique=False)
    op.create_index(op.f('ix_lis_critical_alerts_encounter_id'), 'lis_critical_alerts', ['encounter_id'], unique=False)
    op.create_index(op.f('ix_lis_critical_alerts_result_id'), 'lis_critical_alerts', ['result_id'], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE SEQUENCE {BARCODE_SEQUENCE}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP SEQUENCE IF EXISTS {BARCODE_SEQUENCE}")
    op.drop_index(op.f('ix_lis_critical_alerts_result_id'), table_name='lis_critical_alerts')
    op.drop_index(op.f('ix_lis_critical_alerts_encounter_id'), table_name='lis_critical_alerts')
    op.drop_index(op.f('ix_lis_critical_alerts_doctor_user_id'), table_name='lis_critical_alerts')
    op.drop_table('lis_critical_alerts')
    op.drop_index(op.f('ix_lis_results_specimen_id'), table_name='lis_results')
    op.drop_index(op.f('ix_lis_results_report_id'), table_name='lis_results')
    op.drop_index('ix_lis_results_patient_test', table_name='lis_results')
    op.drop_index(op.f('ix_lis_results_message_id'), table_name='lis_results')
    op.drop_table('lis_results')
    op.drop_index(op.f('ix_lis_specimen_tests_test_id'), table_name='lis_specimen_tests')
    op.drop_index(op.f('ix_lis_specimen_tests_specimen_id'), table_name='lis_specimen_tests')
    op.drop_table('lis_specimen_tests')
    op.drop_index(op.f('ix_lis_reports_specimen_id'), table_name='lis_reports')
    op.drop_index(op.f('ix_lis_reports_encounter_id'), table_name='lis_reports')
    op.drop_table('lis_reports')
    op.drop_index('ix_lis_specimens_status_created', table_name='lis_specimens')
    op.drop_index(op.f('ix_lis_specimens_patient_id'), table_name='lis_specimens')
    op.drop_index(op.f('ix_lis_specimens_order_id'), table_name='lis_specimens')
    op.drop_index(op.f('ix_lis_specimens_encounter_id'), table_name='lis_specimens')
    op.drop_table('lis_specimens')
    op.drop_index(op.f('ix_lis_reference_ranges_test_id'), table_name='lis_reference_ranges')
    op.drop_table('lis_reference_ranges')
    op.drop_index(op.f('ix_lis_panel_members_test_id'), table_name='lis_panel_members')
    op.drop_index(op.f('ix_lis_panel_members_panel_id'), table_name='lis_panel_members')
    op.drop_table('lis_panel_members')
    op.drop_index('ix_lis_messages_status_received', table_name='lis_messages')
    op.drop_index(op.f('ix_lis_messages_analyser_id'), table_name='lis_messages')
    op.drop_table('lis_messages')
    op.drop_index(op.f('ix_lis_analyser_codes_test_id'), table_name='lis_analyser_codes')
    op.drop_index(op.f('ix_lis_analyser_codes_analyser_id'), table_name='lis_analyser_codes')
    op.drop_table('lis_analyser_codes')
    op.drop_index(op.f('ix_lis_tests_service_code'), table_name='lis_tests')
    op.drop_index(op.f('ix_lis_tests_loinc'), table_name='lis_tests')
    op.drop_table('lis_tests')
    op.drop_table('lis_analysers')

"""his core: organisation, patients and BHYT cards, merges, encounters, diagnoses, queue tickets

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Ts = sa.DateTime(timezone=True)
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
FoldedName = sa.String(200).with_variant(sa.String(200, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table('departments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=20), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('bhyt_code', sa.String(length=20), nullable=True),
    sa.Column('is_clinical', sa.Boolean(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_departments')),
    sa.UniqueConstraint('code', name=op.f('uq_departments_code'))
    )
    if op.get_bind().dialect.name == "postgresql":
        # Code counters without row locks (his.counters); SQLite uses the his_counters table.
        op.execute("CREATE SEQUENCE his_patient_code_seq")
        op.execute("CREATE SEQUENCE his_encounter_code_seq")
    op.create_table('his_counters',
    sa.Column('name', sa.String(length=60), nullable=False),
    sa.Column('value', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_his_counters'))
    )
    op.create_table('patients',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=20), nullable=False),
    sa.Column('full_name', sa.String(length=200), nullable=False),
    sa.Column('name_folded', FoldedName, nullable=False),
    sa.Column('name_reversed', FoldedName, nullable=False),
    sa.Column('birth_date', sa.Date(), nullable=True),
    sa.Column('birth_year', sa.Integer(), nullable=False),
    sa.Column('sex', sa.String(length=10), nullable=False),
    sa.Column('national_id', sa.String(length=12), nullable=True),
    sa.Column('national_id_raw_qr', sa.Text(), nullable=True),
    sa.Column('passport_number', sa.String(length=20), nullable=True),
    sa.Column('phone', sa.String(length=20), nullable=True),
    sa.Column('ethnicity_code', sa.String(length=4), nullable=True),
    sa.Column('occupation_code', sa.String(length=10), nullable=True),
    sa.Column('nationality', sa.String(length=2), nullable=False),
    sa.Column('address_scheme', sa.String(length=10), nullable=True),
    sa.Column('province_code', sa.String(length=10), nullable=True),
    sa.Column('district_code', sa.String(length=10), nullable=True),
    sa.Column('ward_code', sa.String(length=10), nullable=True),
    sa.Column('street', sa.String(length=300), nullable=True),
    sa.Column('address_text', sa.String(length=500), nullable=True),
    sa.Column('current_address_text', sa.String(length=500), nullable=True),
    sa.Column('merged_into_id', sa.Integer(), nullable=True),
    sa.Column('created_at', Ts, nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('updated_at', Ts, nullable=False),
    sa.CheckConstraint("sex IN ('male', 'female', 'unknown')", name=op.f('ck_patients_sex')),
    sa.ForeignKeyConstraint(['merged_into_id'], ['patients.id'], name=op.f('fk_patients_merged_into_id_patients')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patients')),
    sa.UniqueConstraint('code', name=op.f('uq_patients_code'))
    )
    op.create_index(op.f('ix_patients_birth_year'), 'patients', ['birth_year'], unique=False)
    op.create_index(op.f('ix_patients_merged_into_id'), 'patients', ['merged_into_id'], unique=False)
    op.create_index('ix_patients_name_folded', 'patients', ['name_folded', 'id'], unique=False)
    op.create_index('ix_patients_name_reversed', 'patients', ['name_reversed', 'id'], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        # Trigram similarity for typo-tolerant name search (pg_trgm is a trusted extension since PG 13).
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.create_index('ix_patients_name_trgm', 'patients', ['name_folded'], unique=False, postgresql_using='gin',
                        postgresql_ops={'name_folded': 'gin_trgm_ops'})
    op.create_index(op.f('ix_patients_national_id'), 'patients', ['national_id'], unique=False)
    op.create_index(op.f('ix_patients_phone'), 'patients', ['phone'], unique=False)
    op.create_index('uq_patients_national_id_live', 'patients', ['national_id'], unique=True, postgresql_where=sa.text('merged_into_id IS NULL AND national_id IS NOT NULL'), sqlite_where=sa.text('merged_into_id IS NULL AND national_id IS NOT NULL'))
    op.create_table('bhyt_cards',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.String(length=15), nullable=False),
    sa.Column('layout', sa.String(length=10), nullable=False),
    sa.Column('bhxh_number', sa.String(length=10), nullable=False),
    sa.Column('group_code', sa.String(length=2), nullable=True),
    sa.Column('benefit_level', sa.String(length=4), nullable=True),
    sa.Column('province_code', sa.String(length=2), nullable=True),
    sa.Column('valid_from', sa.Date(), nullable=True),
    sa.Column('valid_to', sa.Date(), nullable=True),
    sa.Column('registered_facility', sa.String(length=5), nullable=True),
    sa.Column('five_years_since', sa.Date(), nullable=True),
    sa.Column('source', sa.String(length=10), nullable=False),
    sa.Column('verified_at', Ts, nullable=True),
    sa.Column('created_at', Ts, nullable=False),
    sa.Column('superseded_at', Ts, nullable=True),
    sa.CheckConstraint("layout IN ('legacy15', 'bhxh10')", name=op.f('ck_bhyt_cards_layout')),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_bhyt_cards_patient_id_patients')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bhyt_cards'))
    )
    op.create_index(op.f('ix_bhyt_cards_bhxh_number'), 'bhyt_cards', ['bhxh_number'], unique=False)
    op.create_index(op.f('ix_bhyt_cards_number'), 'bhyt_cards', ['number'], unique=False)
    op.create_index(op.f('ix_bhyt_cards_patient_id'), 'bhyt_cards', ['patient_id'], unique=False)
    op.create_index('uq_bhyt_cards_number_current', 'bhyt_cards', ['number'], unique=True, postgresql_where=sa.text('superseded_at IS NULL'), sqlite_where=sa.text('superseded_at IS NULL'))
    op.create_table('patient_merges',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('survivor_id', sa.Integer(), nullable=False),
    sa.Column('duplicate_id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('snapshot', Json, nullable=False),
    sa.Column('merged_at', Ts, nullable=False),
    sa.Column('merged_by', sa.Integer(), nullable=True),
    sa.Column('undone_at', Ts, nullable=True),
    sa.Column('undone_by', sa.Integer(), nullable=True),
    sa.Column('undo_reason', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['duplicate_id'], ['patients.id'], name=op.f('fk_patient_merges_duplicate_id_patients')),
    sa.ForeignKeyConstraint(['survivor_id'], ['patients.id'], name=op.f('fk_patient_merges_survivor_id_patients')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patient_merges'))
    )
    op.create_index(op.f('ix_patient_merges_duplicate_id'), 'patient_merges', ['duplicate_id'], unique=False)
    op.create_index(op.f('ix_patient_merges_survivor_id'), 'patient_merges', ['survivor_id'], unique=False)
    op.create_table('rooms',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('department_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=20), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.CheckConstraint("kind IN ('exam', 'ward', 'lab', 'imaging', 'procedure', 'pharmacy', 'cashier', 'reception', 'other')", name=op.f('ck_rooms_kind')),
    sa.ForeignKeyConstraint(['department_id'], ['departments.id'], name=op.f('fk_rooms_department_id_departments')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rooms')),
    sa.UniqueConstraint('code', name=op.f('uq_rooms_code'))
    )
    op.create_index(op.f('ix_rooms_department_id'), 'rooms', ['department_id'], unique=False)
    op.create_table('staff',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('full_name', sa.String(length=200), nullable=False),
    sa.Column('title', sa.String(length=80), nullable=True),
    sa.Column('department_id', sa.Integer(), nullable=True),
    sa.Column('licence_number', sa.String(length=40), nullable=True),
    sa.Column('licence_issuer', sa.String(length=200), nullable=True),
    sa.Column('licence_date', sa.Date(), nullable=True),
    sa.Column('practice_scope', sa.String(length=400), nullable=True),
    sa.Column('national_id', sa.String(length=12), nullable=True),
    sa.Column('eprescription_code', sa.String(length=40), nullable=True),
    sa.Column('bhyt_doctor_code', sa.String(length=40), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['department_id'], ['departments.id'], name=op.f('fk_staff_department_id_departments')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_staff_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff')),
    sa.UniqueConstraint('user_id', name=op.f('uq_staff_user_id'))
    )
    op.create_index(op.f('ix_staff_department_id'), 'staff', ['department_id'], unique=False)
    op.create_table('beds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('room_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=20), nullable=False),
    sa.Column('bhyt_code', sa.String(length=4), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['room_id'], ['rooms.id'], name=op.f('fk_beds_room_id_rooms')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_beds')),
    sa.UniqueConstraint('code', name=op.f('uq_beds_code'))
    )
    op.create_index(op.f('ix_beds_room_id'), 'beds', ['room_id'], unique=False)
    op.create_table('encounters',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=30), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('department_id', sa.Integer(), nullable=True),
    sa.Column('room_id', sa.Integer(), nullable=True),
    sa.Column('doctor_id', sa.Integer(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('started_at', Ts, nullable=False),
    sa.Column('ended_at', Ts, nullable=True),
    sa.Column('insured', sa.Boolean(), nullable=False),
    sa.Column('bhyt_card_id', sa.Integer(), nullable=True),
    sa.Column('bhyt_route', sa.String(length=20), nullable=True),
    sa.Column('referral_from', sa.String(length=5), nullable=True),
    sa.Column('referral_number', sa.String(length=50), nullable=True),
    sa.Column('is_emergency', sa.Boolean(), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('cancelled_at', Ts, nullable=True),
    sa.Column('cancelled_by', sa.Integer(), nullable=True),
    sa.Column('cancel_reason', sa.Text(), nullable=True),
    sa.CheckConstraint("bhyt_route IS NULL OR bhyt_route IN ('correct', 'referred', 'emergency', 'self_referred')", name=op.f('ck_encounters_bhyt_route')),
    sa.CheckConstraint("kind IN ('outpatient', 'emergency', 'inpatient', 'day_treatment')", name=op.f('ck_encounters_kind')),
    sa.CheckConstraint("status IN ('registered', 'in_progress', 'finished', 'admitted', 'discharged', 'cancelled')", name=op.f('ck_encounters_status')),
    sa.ForeignKeyConstraint(['bhyt_card_id'], ['bhyt_cards.id'], name=op.f('fk_encounters_bhyt_card_id_bhyt_cards')),
    sa.ForeignKeyConstraint(['department_id'], ['departments.id'], name=op.f('fk_encounters_department_id_departments')),
    sa.ForeignKeyConstraint(['doctor_id'], ['staff.id'], name=op.f('fk_encounters_doctor_id_staff')),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_encounters_patient_id_patients')),
    sa.ForeignKeyConstraint(['room_id'], ['rooms.id'], name=op.f('fk_encounters_room_id_rooms')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_encounters')),
    sa.UniqueConstraint('code', name=op.f('uq_encounters_code'))
    )
    op.create_index(op.f('ix_encounters_department_id'), 'encounters', ['department_id'], unique=False)
    op.create_index(op.f('ix_encounters_doctor_id'), 'encounters', ['doctor_id'], unique=False)
    op.create_index('ix_encounters_patient_started', 'encounters', ['patient_id', 'started_at'], unique=False)
    op.create_index('ix_encounters_room_started', 'encounters', ['room_id', 'started_at'], unique=False)
    op.create_table('service_points',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=20), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('room_id', sa.Integer(), nullable=True),
    sa.Column('normal_per_priority', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.CheckConstraint("kind IN ('reception', 'exam_room', 'lab_collection', 'imaging', 'cashier', 'pharmacy')", name=op.f('ck_service_points_kind')),
    sa.ForeignKeyConstraint(['room_id'], ['rooms.id'], name=op.f('fk_service_points_room_id_rooms')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_service_points')),
    sa.UniqueConstraint('code', name=op.f('uq_service_points_code'))
    )
    op.create_table('encounter_diagnoses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('encounter_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.String(length=10), nullable=False),
    sa.Column('icd10_code', sa.String(length=10), nullable=False),
    sa.Column('text', sa.String(length=500), nullable=True),
    sa.Column('recorded_at', Ts, nullable=False),
    sa.Column('recorded_by', sa.Integer(), nullable=True),
    sa.Column('cancelled_at', Ts, nullable=True),
    sa.Column('cancelled_by', sa.Integer(), nullable=True),
    sa.CheckConstraint("position IN ('principal', 'secondary')", name=op.f('ck_encounter_diagnoses_position')),
    sa.ForeignKeyConstraint(['encounter_id'], ['encounters.id'], name=op.f('fk_encounter_diagnoses_encounter_id_encounters')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_encounter_diagnoses'))
    )
    op.create_index(op.f('ix_encounter_diagnoses_encounter_id'), 'encounter_diagnoses', ['encounter_id'], unique=False)
    op.create_table('queue_ticket_counters',
    sa.Column('service_point_id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('last_number', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['service_point_id'], ['service_points.id'], name=op.f('fk_queue_ticket_counters_service_point_id_service_points')),
    sa.PrimaryKeyConstraint('service_point_id', 'day', name=op.f('pk_queue_ticket_counters'))
    )
    op.create_table('queue_tickets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('service_point_id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('priority_group', sa.String(length=20), nullable=True),
    sa.Column('patient_id', sa.Integer(), nullable=True),
    sa.Column('encounter_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('issued_at', Ts, nullable=False),
    sa.Column('issued_by', sa.Integer(), nullable=True),
    sa.Column('called_at', Ts, nullable=True),
    sa.Column('call_count', sa.Integer(), nullable=False),
    sa.Column('called_by', sa.Integer(), nullable=True),
    sa.Column('finished_at', Ts, nullable=True),
    sa.Column('transferred_to_id', sa.Integer(), nullable=True),
    sa.Column('called_out_of_order', sa.Boolean(), nullable=False),
    sa.CheckConstraint("priority_group IS NULL OR priority_group IN ('emergency', 'under6', 'pregnant', 'disabled', 'elderly', 'merit')", name=op.f('ck_queue_tickets_priority_group')),
    sa.CheckConstraint("status IN ('waiting', 'called', 'serving', 'done', 'no_show', 'transferred', 'cancelled')", name=op.f('ck_queue_tickets_status')),
    sa.ForeignKeyConstraint(['encounter_id'], ['encounters.id'], name=op.f('fk_queue_tickets_encounter_id_encounters')),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_queue_tickets_patient_id_patients')),
    sa.ForeignKeyConstraint(['service_point_id'], ['service_points.id'], name=op.f('fk_queue_tickets_service_point_id_service_points')),
    sa.ForeignKeyConstraint(['transferred_to_id'], ['queue_tickets.id'], name=op.f('fk_queue_tickets_transferred_to_id_queue_tickets')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_queue_tickets')),
    sa.UniqueConstraint('service_point_id', 'day', 'number', name='uq_queue_tickets_point_day_number')
    )
    op.create_index(op.f('ix_queue_tickets_encounter_id'), 'queue_tickets', ['encounter_id'], unique=False)
    op.create_index(op.f('ix_queue_tickets_patient_id'), 'queue_tickets', ['patient_id'], unique=False)
    op.create_index('ix_queue_tickets_point_day_status', 'queue_tickets', ['service_point_id', 'day', 'status'], unique=False)
    open_ticket = sa.text("patient_id IS NOT NULL AND status IN ('waiting', 'called', 'serving')")
    op.create_index('uq_queue_tickets_patient_open', 'queue_tickets', ['service_point_id', 'day', 'patient_id'], unique=True,
                    postgresql_where=open_ticket, sqlite_where=open_ticket)
    op.create_table('queue_ticket_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=20), nullable=False),
    sa.Column('at', Ts, nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('detail', Json, nullable=True),
    sa.ForeignKeyConstraint(['ticket_id'], ['queue_tickets.id'], name=op.f('fk_queue_ticket_events_ticket_id_queue_tickets')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_queue_ticket_events'))
    )
    op.create_index(op.f('ix_queue_ticket_events_ticket_id'), 'queue_ticket_events', ['ticket_id'], unique=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP SEQUENCE his_patient_code_seq")
        op.execute("DROP SEQUENCE his_encounter_code_seq")
    for table in ('queue_ticket_events', 'queue_tickets', 'queue_ticket_counters', 'encounter_diagnoses', 'service_points', 'encounters', 'beds', 'staff', 'rooms', 'patient_merges', 'bhyt_cards', 'patients', 'his_counters', 'departments'):
        op.drop_table(table)

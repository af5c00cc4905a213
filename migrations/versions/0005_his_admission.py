"""his admission, transfer, discharge and bed stays

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Ts = sa.DateTime(timezone=True)
CURRENT = "ended_at IS NULL"
END_REASON = "end_reason IS NULL OR end_reason IN ('transfer', 'discharge', 'cancelled')"


def _stay_columns() -> list:
    return [
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("encounter_id", sa.Integer(), nullable=False),
    ]


def _stay_tail(table: str) -> list:
    return [
        sa.Column("started_at", Ts, nullable=False),
        sa.Column("ended_at", Ts, nullable=True),
        sa.Column("started_by", sa.Integer(), nullable=True),
        sa.Column("ended_by", sa.Integer(), nullable=True),
        sa.Column("end_reason", sa.String(20), nullable=True),
        sa.CheckConstraint(END_REASON, name=op.f(f"ck_{table}_end_reason")),
        sa.CheckConstraint("ended_at IS NULL OR ended_at >= started_at", name=op.f(f"ck_{table}_ends_after_start")),
        sa.ForeignKeyConstraint(["encounter_id"], ["encounters.id"], name=op.f(f"fk_{table}_encounter_id_encounters")),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
    ]


def _partial(name: str, table: str, column: str, unique: bool) -> None:
    op.create_index(name, table, [column], unique=unique, postgresql_where=sa.text(CURRENT),
                    sqlite_where=sa.text(CURRENT))


def upgrade() -> None:
    op.create_table(
        "admissions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("encounter_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("department_id", sa.Integer(), nullable=False),
        sa.Column("admitted_at", Ts, nullable=False),
        sa.Column("admitted_by", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("discharged_at", Ts, nullable=True),
        sa.Column("discharged_by", sa.Integer(), nullable=True),
        sa.Column("discharge_type", sa.String(20), nullable=True),
        sa.Column("outcome", sa.String(20), nullable=True),
        sa.Column("cause_of_death_code", sa.String(10), nullable=True),
        sa.Column("death_certificate_issued", sa.Boolean(), nullable=True),
        sa.Column("discharge_note", sa.Text(), nullable=True),
        sa.Column("cancelled_at", Ts, nullable=True),
        sa.Column("created_at", Ts, nullable=False),
        sa.CheckConstraint("cause_of_death_code IS NULL OR outcome = 'died'",
                           name=op.f("ck_admissions_cause_of_death_if_died")),
        sa.CheckConstraint("discharge_type IS NULL OR discharge_type IN ('home', 'referred', 'absconded', "
                           "'at_request', 'referred_at_request')", name=op.f("ck_admissions_discharge_type")),
        sa.CheckConstraint("outcome IS NULL OR outcome IN ('cured', 'improved', 'unchanged', 'worse', 'died')",
                           name=op.f("ck_admissions_outcome")),
        sa.CheckConstraint("source IN ('outpatient', 'emergency', 'day_treatment', 'direct')",
                           name=op.f("ck_admissions_source")),
        sa.CheckConstraint("(discharged_at IS NULL AND discharge_type IS NULL AND outcome IS NULL) OR "
                           "(discharged_at IS NOT NULL AND discharge_type IS NOT NULL AND outcome IS NOT NULL)",
                           name=op.f("ck_admissions_discharge_complete")),
        sa.CheckConstraint("discharged_at IS NULL OR discharged_at >= admitted_at",
                           name=op.f("ck_admissions_discharge_after_admission")),
        sa.ForeignKeyConstraint(["department_id"], ["departments.id"],
                                name=op.f("fk_admissions_department_id_departments")),
        sa.ForeignKeyConstraint(["encounter_id"], ["encounters.id"], name=op.f("fk_admissions_encounter_id_encounters")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admissions")),
        sa.UniqueConstraint("encounter_id", name=op.f("uq_admissions_encounter_id")),
    )

    op.create_table(
        "bed_stays", *_stay_columns(),
        sa.Column("bed_id", sa.Integer(), nullable=False),
        *_stay_tail("bed_stays"),
        sa.ForeignKeyConstraint(["bed_id"], ["beds.id"], name=op.f("fk_bed_stays_bed_id_beds")),
    )
    op.create_index(op.f("ix_bed_stays_bed_id"), "bed_stays", ["bed_id"])
    op.create_index(op.f("ix_bed_stays_encounter_id"), "bed_stays", ["encounter_id"])
    # The invariants of the ward: one current stay per bed, one current bed per encounter.
    _partial("uq_bed_stays_bed_current", "bed_stays", "bed_id", unique=True)
    _partial("uq_bed_stays_encounter_current", "bed_stays", "encounter_id", unique=True)

    op.create_table(
        "department_stays", *_stay_columns(),
        sa.Column("department_id", sa.Integer(), nullable=False),
        *_stay_tail("department_stays"),
        sa.ForeignKeyConstraint(["department_id"], ["departments.id"],
                                name=op.f("fk_department_stays_department_id_departments")),
    )
    op.create_index(op.f("ix_department_stays_encounter_id"), "department_stays", ["encounter_id"])
    _partial("ix_department_stays_department_current", "department_stays", "department_id", unique=False)
    _partial("uq_department_stays_encounter_current", "department_stays", "encounter_id", unique=True)


def downgrade() -> None:
    op.drop_table("department_stays")
    op.drop_table("bed_stays")
    op.drop_table("admissions")

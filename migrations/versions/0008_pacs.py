"""PACS (DICOM index, remote AEs, worklist, reports)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Ts = sa.DateTime(timezone=True)
Json = sa.JSON().with_variant(JSONB(), "postgresql")


def _fk(table: str, column: str, target: str):
    return sa.ForeignKeyConstraint([column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}"))


def _text(name: str, length: int):
    return sa.Column(name, sa.String(length), nullable=False)


def upgrade() -> None:
    op.create_table(
        "pacs_studies",
        sa.Column("id", BigId, nullable=False),
        _text("study_uid", 64), _text("patient_dicom_id", 64), _text("patient_name", 200),
        _text("patient_name_folded", 200), _text("patient_birth_date", 8), _text("patient_sex", 16),
        _text("study_date", 8), _text("study_time", 16), _text("accession_number", 16), _text("study_id", 16),
        _text("study_description", 200), _text("referring_physician", 200), _text("modalities", 200),
        sa.Column("patient_id", sa.Integer(), nullable=True),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("created_at", Ts, nullable=False),
        _fk("pacs_studies", "patient_id", "patients"),
        _fk("pacs_studies", "order_id", "orders"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pacs_studies")),
        sa.UniqueConstraint("study_uid", name=op.f("uq_pacs_studies_study_uid")),
    )
    for column in ("accession_number", "patient_id", "order_id", "study_date", "patient_dicom_id",
                   "patient_name_folded"):
        op.create_index(op.f(f"ix_pacs_studies_{column}"), "pacs_studies", [column])

    op.create_table(
        "pacs_series",
        sa.Column("id", BigId, nullable=False),
        sa.Column("study_pk", BigId, nullable=False),
        _text("series_uid", 64), _text("modality", 16),
        sa.Column("series_number", sa.Integer(), nullable=True),
        _text("series_description", 200), _text("body_part", 64),
        sa.Column("created_at", Ts, nullable=False),
        _fk("pacs_series", "study_pk", "pacs_studies"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pacs_series")),
        sa.UniqueConstraint("series_uid", name=op.f("uq_pacs_series_series_uid")),
    )
    op.create_index(op.f("ix_pacs_series_study_pk"), "pacs_series", ["study_pk"])

    op.create_table(
        "pacs_instances",
        sa.Column("id", BigId, nullable=False),
        sa.Column("series_pk", BigId, nullable=False),
        sa.Column("study_pk", BigId, nullable=False),
        _text("sop_instance_uid", 64), _text("sop_class_uid", 64),
        sa.Column("instance_number", sa.Integer(), nullable=True),
        _text("transfer_syntax", 64),
        sa.Column("rows", sa.Integer(), nullable=True),
        sa.Column("columns", sa.Integer(), nullable=True),
        sa.Column("frames", sa.Integer(), nullable=True),
        _text("path", 300),
        sa.Column("size", sa.BigInteger(), nullable=False),
        _text("sha256", 64), _text("calling_ae", 16),
        sa.Column("received_at", Ts, nullable=False),
        _fk("pacs_instances", "series_pk", "pacs_series"),
        _fk("pacs_instances", "study_pk", "pacs_studies"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pacs_instances")),
        sa.UniqueConstraint("sop_instance_uid", name=op.f("uq_pacs_instances_sop_instance_uid")),
    )
    op.create_index(op.f("ix_pacs_instances_series_pk"), "pacs_instances", ["series_pk"])
    op.create_index(op.f("ix_pacs_instances_study_pk"), "pacs_instances", ["study_pk"])

    op.create_table(
        "pacs_remote_aes",
        sa.Column("id", sa.Integer(), nullable=False),
        _text("ae_title", 16), _text("host", 255),
        sa.Column("port", sa.Integer(), nullable=False),
        _text("description", 200),
        sa.Column("created_at", Ts, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pacs_remote_aes")),
        sa.UniqueConstraint("ae_title", name=op.f("uq_pacs_remote_aes_ae_title")),
    )

    op.create_table(
        "pacs_worklist_items",
        sa.Column("id", BigId, nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        _text("accession_number", 16), _text("study_uid", 64), _text("modality", 16), _text("station_ae", 16),
        _text("procedure_code", 50), _text("procedure_name", 500),
        sa.Column("scheduled_at", Ts, nullable=False),
        _text("status", 20),
        sa.Column("created_at", Ts, nullable=False),
        sa.CheckConstraint("status IN ('scheduled', 'in_progress', 'completed', 'discontinued')",
                           name=op.f("ck_pacs_worklist_items_status")),
        _fk("pacs_worklist_items", "order_id", "orders"),
        _fk("pacs_worklist_items", "patient_id", "patients"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pacs_worklist_items")),
        sa.UniqueConstraint("order_id", name=op.f("uq_pacs_worklist_items_order_id")),
        sa.UniqueConstraint("accession_number", name=op.f("uq_pacs_worklist_items_accession_number")),
        sa.UniqueConstraint("study_uid", name=op.f("uq_pacs_worklist_items_study_uid")),
    )
    op.create_index(op.f("ix_pacs_worklist_items_patient_id"), "pacs_worklist_items", ["patient_id"])
    op.create_index(op.f("ix_pacs_worklist_items_status_scheduled"), "pacs_worklist_items",
                    ["status", "scheduled_at"])

    op.create_table(
        "pacs_performed_steps",
        sa.Column("id", BigId, nullable=False),
        _text("sop_instance_uid", 64),
        sa.Column("worklist_item_id", BigId, nullable=True),
        _text("status", 20), _text("calling_ae", 16),
        sa.Column("attributes", Json, nullable=False),
        sa.Column("created_at", Ts, nullable=False),
        sa.Column("updated_at", Ts, nullable=False),
        sa.CheckConstraint("status IN ('IN PROGRESS', 'COMPLETED', 'DISCONTINUED')",
                           name=op.f("ck_pacs_performed_steps_status")),
        _fk("pacs_performed_steps", "worklist_item_id", "pacs_worklist_items"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pacs_performed_steps")),
        sa.UniqueConstraint("sop_instance_uid", name=op.f("uq_pacs_performed_steps_sop_instance_uid")),
    )
    op.create_index(op.f("ix_pacs_performed_steps_worklist_item_id"), "pacs_performed_steps",
                    ["worklist_item_id"])

    op.create_table(
        "pacs_reports",
        sa.Column("id", BigId, nullable=False),
        sa.Column("study_pk", BigId, nullable=False),
        sa.Column("findings", sa.Text(), nullable=False),
        sa.Column("conclusion", sa.Text(), nullable=False),
        _text("status", 10),
        sa.Column("written_by", sa.Integer(), nullable=True),
        sa.Column("signed_by", sa.Integer(), nullable=True),
        sa.Column("signed_by_name", sa.String(200), nullable=True),
        sa.Column("signed_at", Ts, nullable=True),
        sa.Column("created_at", Ts, nullable=False),
        sa.Column("updated_at", Ts, nullable=False),
        sa.CheckConstraint("status IN ('draft', 'signed')", name=op.f("ck_pacs_reports_status")),
        _fk("pacs_reports", "study_pk", "pacs_studies"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pacs_reports")),
        sa.UniqueConstraint("study_pk", name=op.f("uq_pacs_reports_study_pk")),
    )


def downgrade() -> None:
    for table in ("pacs_reports", "pacs_performed_steps", "pacs_worklist_items", "pacs_remote_aes",
                  "pacs_instances", "pacs_series", "pacs_studies"):
        op.drop_table(table)

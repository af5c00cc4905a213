"""his orders (lab, imaging, procedures, prescriptions)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Ts = sa.DateTime(timezone=True)
Money = sa.Numeric(15, 3)
Quantity = sa.Numeric(12, 3)


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("encounter_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("department_id", sa.Integer(), nullable=True),
        sa.Column("ordered_by", sa.Integer(), nullable=True),
        sa.Column("orderer_id", sa.Integer(), nullable=True),
        sa.Column("diagnosis_id", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("chronic", sa.Boolean(), nullable=False),
        sa.Column("weight_kg", sa.Numeric(5, 2), nullable=True),
        sa.Column("guardian_name", sa.String(200), nullable=True),
        sa.Column("ordered_at", Ts, nullable=False),
        sa.Column("executed_at", Ts, nullable=True),
        sa.Column("result_at", Ts, nullable=True),
        sa.Column("performed_by", sa.Integer(), nullable=True),
        sa.Column("performer_id", sa.Integer(), nullable=True),
        sa.Column("machine_code", sa.String(50), nullable=True),
        sa.Column("cancelled_at", Ts, nullable=True),
        sa.Column("cancelled_by", sa.Integer(), nullable=True),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.Column("reversed_at", Ts, nullable=True),
        sa.Column("reversed_by", sa.Integer(), nullable=True),
        sa.Column("reverse_reason", sa.Text(), nullable=True),
        sa.CheckConstraint("kind IN ('lab', 'imaging', 'procedure', 'prescription')", name=op.f("ck_orders_kind")),
        sa.CheckConstraint("status IN ('placed', 'in_progress', 'completed', 'cancelled', 'reversed')",
                           name=op.f("ck_orders_status")),
        sa.ForeignKeyConstraint(["department_id"], ["departments.id"], name=op.f("fk_orders_department_id_departments")),
        sa.ForeignKeyConstraint(["diagnosis_id"], ["encounter_diagnoses.id"],
                                name=op.f("fk_orders_diagnosis_id_encounter_diagnoses")),
        sa.ForeignKeyConstraint(["encounter_id"], ["encounters.id"], name=op.f("fk_orders_encounter_id_encounters")),
        sa.ForeignKeyConstraint(["orderer_id"], ["staff.id"], name=op.f("fk_orders_orderer_id_staff")),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f("fk_orders_patient_id_patients")),
        sa.ForeignKeyConstraint(["performer_id"], ["staff.id"], name=op.f("fk_orders_performer_id_staff")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
    )
    op.create_index("ix_orders_encounter_ordered", "orders", ["encounter_id", "ordered_at"])
    op.create_index("ix_orders_kind_status", "orders", ["kind", "status"])
    op.create_index(op.f("ix_orders_patient_id"), "orders", ["patient_id"])
    op.create_table(
        "order_lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("service_id", BigId, nullable=True),
        sa.Column("drug_id", BigId, nullable=True),
        sa.Column("item_code", sa.String(50), nullable=False),
        sa.Column("item_name", sa.String(500), nullable=False),
        sa.Column("quantity", Quantity, nullable=False),
        sa.Column("unit", sa.String(50), nullable=False),
        sa.Column("unit_price", Money, nullable=False),
        sa.Column("payer", sa.String(10), nullable=False),
        sa.Column("dose", Quantity, nullable=True),
        sa.Column("frequency", sa.Integer(), nullable=True),
        sa.Column("days", sa.Integer(), nullable=True),
        sa.Column("route", sa.String(100), nullable=True),
        sa.Column("quantity_entered", sa.Boolean(), nullable=False),
        sa.Column("instructions", sa.Text(), nullable=True),
        sa.CheckConstraint("payer IN ('bhyt', 'fee', 'on_demand')", name=op.f("ck_order_lines_payer")),
        sa.CheckConstraint("(service_id IS NULL) <> (drug_id IS NULL)", name=op.f("ck_order_lines_one_item")),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_order_lines_quantity")),
        sa.ForeignKeyConstraint(["drug_id"], ["catalog_drugs.id"], name=op.f("fk_order_lines_drug_id_catalog_drugs")),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_order_lines_order_id_orders")),
        sa.ForeignKeyConstraint(["service_id"], ["catalog_services.id"],
                                name=op.f("fk_order_lines_service_id_catalog_services")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_lines")),
    )
    op.create_index(op.f("ix_order_lines_drug_id"), "order_lines", ["drug_id"])
    op.create_index(op.f("ix_order_lines_order_id"), "order_lines", ["order_id"])
    op.create_index(op.f("ix_order_lines_service_id"), "order_lines", ["service_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_order_lines_service_id"), table_name="order_lines")
    op.drop_index(op.f("ix_order_lines_order_id"), table_name="order_lines")
    op.drop_index(op.f("ix_order_lines_drug_id"), table_name="order_lines")
    op.drop_table("order_lines")
    op.drop_index(op.f("ix_orders_patient_id"), table_name="orders")
    op.drop_index("ix_orders_kind_status", table_name="orders")
    op.drop_index("ix_orders_encounter_ordered", table_name="orders")
    op.drop_table("orders")

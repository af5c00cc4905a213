"""his pharmacy stock (warehouses, lots, movements)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Ts = sa.DateTime(timezone=True)
Qty = sa.Numeric(15, 3)
Cost = sa.Numeric(15, 3)
MOVEMENT_KINDS = "('receipt', 'dispense', 'return', 'transfer_out', 'transfer_in', 'adjustment', 'destruction')"


def _fk(table: str, column: str, target: str):
    return sa.ForeignKeyConstraint([column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}"))


def upgrade() -> None:
    op.create_table(
        "pharmacy_warehouses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(20), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("department_id", sa.Integer(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", Ts, nullable=False),
        sa.CheckConstraint("kind IN ('main_store', 'dispensing', 'ward_cabinet')",
                           name=op.f("ck_pharmacy_warehouses_kind")),
        _fk("pharmacy_warehouses", "department_id", "departments"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pharmacy_warehouses")),
        sa.UniqueConstraint("code", name=op.f("uq_pharmacy_warehouses_code")),
    )
    op.create_index(op.f("ix_pharmacy_warehouses_department_id"), "pharmacy_warehouses", ["department_id"])

    op.create_table(
        "pharmacy_lots",
        sa.Column("id", BigId, nullable=False),
        sa.Column("drug_id", BigId, nullable=False),
        sa.Column("lot_number", sa.String(50), nullable=False),
        sa.Column("expiry_date", sa.Date(), nullable=False),
        sa.Column("unit_cost", Cost, nullable=False),
        sa.Column("created_at", Ts, nullable=False),
        sa.CheckConstraint("unit_cost >= 0", name=op.f("ck_pharmacy_lots_unit_cost")),
        _fk("pharmacy_lots", "drug_id", "catalog_drugs"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pharmacy_lots")),
        sa.UniqueConstraint("drug_id", "lot_number", name=op.f("uq_pharmacy_lots_drug_id")),
    )
    op.create_index(op.f("ix_pharmacy_lots_drug_id"), "pharmacy_lots", ["drug_id"])
    op.create_index(op.f("ix_pharmacy_lots_expiry_date"), "pharmacy_lots", ["expiry_date"])

    op.create_table(
        "pharmacy_goods_receipts",
        sa.Column("id", BigId, nullable=False),
        sa.Column("warehouse_id", sa.Integer(), nullable=False),
        sa.Column("supplier", sa.String(300), nullable=False),
        sa.Column("invoice_number", sa.String(50), nullable=False),
        sa.Column("invoice_date", sa.Date(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("total_cost", sa.Numeric(18, 3), nullable=False),
        sa.Column("received_by", sa.Integer(), nullable=True),
        sa.Column("received_at", Ts, nullable=False),
        _fk("pharmacy_goods_receipts", "warehouse_id", "pharmacy_warehouses"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pharmacy_goods_receipts")),
        sa.UniqueConstraint("supplier", "invoice_number", name=op.f("uq_pharmacy_goods_receipts_supplier")),
    )
    op.create_index(op.f("ix_pharmacy_goods_receipts_warehouse_id"), "pharmacy_goods_receipts", ["warehouse_id"])

    op.create_table(
        "pharmacy_stock",
        sa.Column("id", BigId, nullable=False),
        sa.Column("warehouse_id", sa.Integer(), nullable=False),
        sa.Column("lot_id", BigId, nullable=False),
        sa.Column("on_hand", Qty, nullable=False),
        sa.Column("updated_at", Ts, nullable=False),
        sa.CheckConstraint("on_hand >= 0", name=op.f("ck_pharmacy_stock_on_hand")),
        _fk("pharmacy_stock", "lot_id", "pharmacy_lots"),
        _fk("pharmacy_stock", "warehouse_id", "pharmacy_warehouses"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pharmacy_stock")),
        sa.UniqueConstraint("warehouse_id", "lot_id", name=op.f("uq_pharmacy_stock_warehouse_id")),
    )
    op.create_index(op.f("ix_pharmacy_stock_lot_id"), "pharmacy_stock", ["lot_id"])

    op.create_table(
        "pharmacy_goods_receipt_lines",
        sa.Column("id", BigId, nullable=False),
        sa.Column("receipt_id", BigId, nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("lot_id", BigId, nullable=False),
        sa.Column("quantity", Qty, nullable=False),
        sa.Column("unit_cost", Cost, nullable=False),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_pharmacy_goods_receipt_lines_quantity")),
        sa.CheckConstraint("unit_cost >= 0", name=op.f("ck_pharmacy_goods_receipt_lines_unit_cost")),
        _fk("pharmacy_goods_receipt_lines", "lot_id", "pharmacy_lots"),
        _fk("pharmacy_goods_receipt_lines", "receipt_id", "pharmacy_goods_receipts"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pharmacy_goods_receipt_lines")),
        sa.UniqueConstraint("receipt_id", "line_no", name=op.f("uq_pharmacy_goods_receipt_lines_receipt_id")),
    )
    op.create_index(op.f("ix_pharmacy_goods_receipt_lines_lot_id"), "pharmacy_goods_receipt_lines", ["lot_id"])

    op.create_table(
        "pharmacy_stock_movements",
        sa.Column("id", BigId, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("stock_id", BigId, nullable=False),
        sa.Column("warehouse_id", sa.Integer(), nullable=False),
        sa.Column("lot_id", BigId, nullable=False),
        sa.Column("quantity", Qty, nullable=False),
        sa.Column("on_hand_after", Qty, nullable=False),
        sa.Column("reference_type", sa.String(40), nullable=True),
        sa.Column("reference_id", sa.BigInteger(), nullable=True),
        sa.Column("receipt_id", BigId, nullable=True),
        sa.Column("returns_movement_id", BigId, nullable=True),
        sa.Column("counterpart_warehouse_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("actor_name", sa.String(150), nullable=False),
        sa.Column("occurred_at", Ts, nullable=False),
        sa.CheckConstraint(f"kind IN {MOVEMENT_KINDS}", name=op.f("ck_pharmacy_stock_movements_kind")),
        sa.CheckConstraint("on_hand_after >= 0", name=op.f("ck_pharmacy_stock_movements_on_hand_after")),
        sa.CheckConstraint("quantity <> 0", name=op.f("ck_pharmacy_stock_movements_quantity")),
        _fk("pharmacy_stock_movements", "counterpart_warehouse_id", "pharmacy_warehouses"),
        _fk("pharmacy_stock_movements", "lot_id", "pharmacy_lots"),
        _fk("pharmacy_stock_movements", "receipt_id", "pharmacy_goods_receipts"),
        _fk("pharmacy_stock_movements", "returns_movement_id", "pharmacy_stock_movements"),
        _fk("pharmacy_stock_movements", "stock_id", "pharmacy_stock"),
        _fk("pharmacy_stock_movements", "warehouse_id", "pharmacy_warehouses"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pharmacy_stock_movements")),
    )
    for column in ("lot_id", "occurred_at", "receipt_id", "returns_movement_id", "stock_id", "warehouse_id"):
        op.create_index(op.f(f"ix_pharmacy_stock_movements_{column}"), "pharmacy_stock_movements", [column])
    op.create_index("ix_pharmacy_stock_movements_reference", "pharmacy_stock_movements",
                    ["reference_type", "reference_id"])


def downgrade() -> None:
    op.drop_table("pharmacy_stock_movements")
    op.drop_table("pharmacy_goods_receipt_lines")
    op.drop_table("pharmacy_stock")
    op.drop_table("pharmacy_goods_receipts")
    op.drop_table("pharmacy_lots")
    op.drop_table("pharmacy_warehouses")

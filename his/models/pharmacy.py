"""Pharmacy stock (his.md §9): warehouses, lots with their expiry, stock per warehouse and lot, the
movement ledger, and goods receipts.

The ledger is the truth of what happened: every change of `PharmacyStock.on_hand` writes one
`StockMovement` whose signed `quantity` is that change, so the on-hand quantity of a row always
equals the sum of its movements. Nothing is deleted; a mistake is corrected by a new movement
(an adjustment, a return). On-hand can never go below zero: a CHECK constraint says so, whatever
the code above it does.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, BigId, utcnow
from his.models.catalog import Drug

# Quantities in the drug's unit; fractions exist (half an ampoule, litres of oxygen).
Quantity = Numeric(15, 3)
Cost = Numeric(15, 3)

WAREHOUSE_KINDS = ("main_store", "dispensing", "ward_cabinet")
# transfer_out/transfer_in are the two halves of one transfer (one per warehouse).
MOVEMENT_KINDS = ("receipt", "dispense", "return", "transfer_out", "transfer_in", "adjustment", "destruction")


class Warehouse(Base):
    """A place that holds stock: the main store (kho chính), a dispensing pharmacy (nhà thuốc / quầy
    cấp phát) or a ward cabinet (tủ trực) of a department."""

    __tablename__ = "pharmacy_warehouses"
    __table_args__ = (CheckConstraint(f"kind IN {WAREHOUSE_KINDS}", name="kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Lot(Base):
    """A manufacturer's lot (số lô) of one drug with its expiry date (hạn dùng).

    The lot number identifies it per drug; `unit_cost` is the purchase cost of its first receipt
    (each receipt line keeps its own cost).
    """

    __tablename__ = "pharmacy_lots"
    __table_args__ = (UniqueConstraint("drug_id", "lot_number"), CheckConstraint("unit_cost >= 0", name="unit_cost"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    drug_id: Mapped[int] = mapped_column(ForeignKey("catalog_drugs.id"), index=True)
    lot_number: Mapped[str] = mapped_column(String(50))
    expiry_date: Mapped[date] = mapped_column(Date, index=True)
    unit_cost: Mapped[Decimal] = mapped_column(Cost)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    drug: Mapped[Drug] = relationship(lazy="joined")


class PharmacyStock(Base):
    """What one warehouse holds of one lot."""

    __tablename__ = "pharmacy_stock"
    __table_args__ = (UniqueConstraint("warehouse_id", "lot_id"), CheckConstraint("on_hand >= 0", name="on_hand"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    warehouse_id: Mapped[int] = mapped_column(ForeignKey("pharmacy_warehouses.id"))
    lot_id: Mapped[int] = mapped_column(ForeignKey("pharmacy_lots.id"), index=True)
    on_hand: Mapped[Decimal] = mapped_column(Quantity, default=Decimal(0))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    warehouse: Mapped[Warehouse] = relationship(lazy="joined")
    lot: Mapped[Lot] = relationship(lazy="joined")


class GoodsReceipt(Base):
    """A delivery into a warehouse against a supplier's invoice (phiếu nhập kho)."""

    __tablename__ = "pharmacy_goods_receipts"
    __table_args__ = (UniqueConstraint("supplier", "invoice_number"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    warehouse_id: Mapped[int] = mapped_column(ForeignKey("pharmacy_warehouses.id"), index=True)
    supplier: Mapped[str] = mapped_column(String(300))
    invoice_number: Mapped[str] = mapped_column(String(50))
    invoice_date: Mapped[date | None] = mapped_column(Date)
    note: Mapped[str | None] = mapped_column(Text)
    total_cost: Mapped[Decimal] = mapped_column(Numeric(18, 3))
    received_by: Mapped[int | None]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)

    warehouse: Mapped[Warehouse] = relationship(lazy="joined")
    lines: Mapped[list[GoodsReceiptLine]] = relationship(order_by="GoodsReceiptLine.line_no", lazy="selectin")


class GoodsReceiptLine(Base):
    __tablename__ = "pharmacy_goods_receipt_lines"
    __table_args__ = (UniqueConstraint("receipt_id", "line_no"), CheckConstraint("quantity > 0", name="quantity"),
                      CheckConstraint("unit_cost >= 0", name="unit_cost"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    receipt_id: Mapped[int] = mapped_column(ForeignKey("pharmacy_goods_receipts.id"))
    line_no: Mapped[int] = mapped_column(Integer)
    lot_id: Mapped[int] = mapped_column(ForeignKey("pharmacy_lots.id"), index=True)
    quantity: Mapped[Decimal] = mapped_column(Quantity)
    unit_cost: Mapped[Decimal] = mapped_column(Cost)

    lot: Mapped[Lot] = relationship(lazy="joined")


class StockMovement(Base):
    """One change of one stock row: `quantity` is signed (+ in, − out) and `on_hand_after` is the row's
    quantity right after it, so the ledger can be read like a stock card (thẻ kho).

    `reference_type`/`reference_id` name what caused it (e.g. "prescription_line", 42) as plain
    values: the orders area is not imported here. A return points at the dispense it gives back
    (`returns_movement_id`); a transfer's two halves point at each other's warehouse.
    """

    __tablename__ = "pharmacy_stock_movements"
    __table_args__ = (CheckConstraint(f"kind IN {MOVEMENT_KINDS}", name="kind"),
                      CheckConstraint("quantity <> 0", name="quantity"),
                      CheckConstraint("on_hand_after >= 0", name="on_hand_after"),
                      Index("ix_pharmacy_stock_movements_reference", "reference_type", "reference_id"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    stock_id: Mapped[int] = mapped_column(ForeignKey("pharmacy_stock.id"), index=True)
    warehouse_id: Mapped[int] = mapped_column(ForeignKey("pharmacy_warehouses.id"), index=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("pharmacy_lots.id"), index=True)
    quantity: Mapped[Decimal] = mapped_column(Quantity)
    on_hand_after: Mapped[Decimal] = mapped_column(Quantity)
    reference_type: Mapped[str | None] = mapped_column(String(40))
    reference_id: Mapped[int | None] = mapped_column(BigInteger)
    receipt_id: Mapped[int | None] = mapped_column(ForeignKey("pharmacy_goods_receipts.id"), index=True)
    returns_movement_id: Mapped[int | None] = mapped_column(ForeignKey("pharmacy_stock_movements.id"), index=True)
    counterpart_warehouse_id: Mapped[int | None] = mapped_column(ForeignKey("pharmacy_warehouses.id"))
    reason: Mapped[str | None] = mapped_column(Text)
    actor_id: Mapped[int | None]
    actor_name: Mapped[str] = mapped_column(String(150))
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    lot: Mapped[Lot] = relationship(lazy="joined")
    warehouse: Mapped[Warehouse] = relationship(lazy="joined", foreign_keys=[warehouse_id])

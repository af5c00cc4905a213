"""Orders inside an encounter (chỉ định, y lệnh): lab tests, imaging, procedures and prescriptions.

An order is append-only: its lines never change once placed, and its life is recorded by status
and time stamps (placed → in_progress → completed; cancelled before it was executed, reversed after).
Each line keeps a snapshot of what billing needs later: the item's code and name, the unit price in
force on the order day and the payer that price is for.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, utcnow
from his.models.catalog import BigId, Drug, Money, Service
from his.models.encounters import Diagnosis, Encounter
from his.models.org import Department, Staff

ORDER_KINDS = ("lab", "imaging", "procedure", "prescription")
ORDER_STATUSES = ("placed", "in_progress", "completed", "cancelled", "reversed")
LINE_PAYERS = ("bhyt", "fee", "on_demand")
Quantity = Numeric(12, 3)


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint(f"kind IN {ORDER_KINDS}", name="kind"),
        CheckConstraint(f"status IN {ORDER_STATUSES}", name="status"),
        Index("ix_orders_encounter_ordered", "encounter_id", "ordered_at"),
        Index("ix_orders_kind_status", "kind", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    encounter_id: Mapped[int] = mapped_column(ForeignKey("encounters.id"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="placed")
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    # Who ordered: the login account always, the practitioner (MA_BAC_SI) when the account is staff.
    ordered_by: Mapped[int | None]
    orderer_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    diagnosis_id: Mapped[int | None] = mapped_column(ForeignKey("encounter_diagnoses.id"))
    note: Mapped[str | None] = mapped_column(Text)
    # Prescriptions: a chronic-disease prescription may run 90 days (TT 26/2025); children under 72
    # months need their weight and the accompanying adult's name.
    chronic: Mapped[bool] = mapped_column(Boolean, default=False)
    weight_kg: Mapped[Decimal | None] = mapped_column(Numeric(5, 2))
    guardian_name: Mapped[str | None] = mapped_column(String(200))
    ordered_at: Mapped[datetime] = mapped_column(default=utcnow)  # NGAY_YL
    executed_at: Mapped[datetime | None]  # NGAY_TH_YL
    result_at: Mapped[datetime | None]  # NGAY_KQ
    performed_by: Mapped[int | None]
    performer_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    machine_code: Mapped[str | None] = mapped_column(String(50))  # MA_MAY, for procedures and imaging
    cancelled_at: Mapped[datetime | None]
    cancelled_by: Mapped[int | None]
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    reversed_at: Mapped[datetime | None]
    reversed_by: Mapped[int | None]
    reverse_reason: Mapped[str | None] = mapped_column(Text)

    encounter: Mapped[Encounter] = relationship()
    department: Mapped[Department | None] = relationship(lazy="joined")
    orderer: Mapped[Staff | None] = relationship(foreign_keys=[orderer_id], lazy="joined")
    performer: Mapped[Staff | None] = relationship(foreign_keys=[performer_id], lazy="joined")
    diagnosis: Mapped[Diagnosis | None] = relationship(lazy="joined")
    lines: Mapped[list[OrderLine]] = relationship(back_populates="order", order_by="OrderLine.position",
                                                  lazy="selectin")


class OrderLine(Base):
    """One service or drug of an order, with the price snapshot of the order day."""

    __tablename__ = "order_lines"
    __table_args__ = (
        CheckConstraint("(service_id IS NULL) <> (drug_id IS NULL)", name="one_item"),
        CheckConstraint("quantity > 0", name="quantity"),
        CheckConstraint(f"payer IN {LINE_PAYERS}", name="payer"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    service_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("catalog_services.id"), index=True)
    drug_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("catalog_drugs.id"), index=True)
    item_code: Mapped[str] = mapped_column(String(50))
    item_name: Mapped[str] = mapped_column(String(500))
    quantity: Mapped[Decimal] = mapped_column(Quantity)
    unit: Mapped[str] = mapped_column(String(50))
    unit_price: Mapped[Decimal] = mapped_column(Money)
    payer: Mapped[str] = mapped_column(String(10))
    # Prescription lines: dose per intake (in the drug's unit), intakes per day, days; the quantity
    # was computed from them unless the doctor entered it.
    dose: Mapped[Decimal | None] = mapped_column(Quantity)
    frequency: Mapped[int | None] = mapped_column(Integer)
    days: Mapped[int | None] = mapped_column(Integer)
    route: Mapped[str | None] = mapped_column(String(100))
    quantity_entered: Mapped[bool] = mapped_column(Boolean, default=False)
    instructions: Mapped[str | None] = mapped_column(Text)

    order: Mapped[Order] = relationship(back_populates="lines")
    service: Mapped[Service | None] = relationship(lazy="joined")
    drug: Mapped[Drug | None] = relationship(lazy="joined")

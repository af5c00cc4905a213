"""Catalogues (danh mục): ICD-10, technical services (DVKT), drugs, medical supplies, and their prices.

Nothing here is deleted. An item keeps its identity (its facility code) and an `active` flag with
the window in which the facility may use it; its descriptive fields may be corrected in place
(audited with the old values). Prices are versioned: a change closes the row in force
(`valid_to` = the day before) and opens a new one, so an order or a claim always finds the price
of its own date. Validity dates are inclusive on both ends, like TU_NGAY..DEN_NGAY of BHXH.

ICD-10 is versioned as a whole list (`version`, e.g. "TT06/2026"): codes of one list are never
edited, a new list is imported beside the old one with its own validity window.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, BigId, utcnow

# DON_GIA is rounded to 3 decimal places (QĐ 130); 15 digits hold any VND price.
Money = Numeric(15, 3)
PAYERS = ("bhyt", "fee", "on_demand")
SEXES = ("female", "male")


class Icd10Code(Base):
    __tablename__ = "catalog_icd10_codes"
    __table_args__ = (
        UniqueConstraint("version", "code"),
        CheckConstraint("sex IN ('female', 'male')", name="sex"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    version: Mapped[str] = mapped_column(String(40))
    # With its dot (B18.00); up to 7 characters in claims, never truncated: the column is wider.
    code: Mapped[str] = mapped_column(String(10), index=True)
    dagger_asterisk: Mapped[str | None] = mapped_column(String(1))  # "†" or "*" as marked in the list
    name_vi: Mapped[str | None] = mapped_column(String(500))
    name_en: Mapped[str | None] = mapped_column(String(500))
    name_folded: Mapped[str] = mapped_column(String(1000))  # both names folded, for search
    chapter: Mapped[str | None] = mapped_column(String(20))
    block: Mapped[str | None] = mapped_column(String(20))  # e.g. J09-J18
    notes: Mapped[str | None] = mapped_column(Text)
    # TT 06/2026 annex rule flags (columns 24-29).
    not_principal: Mapped[bool] = mapped_column(Boolean, default=False)  # 24: block as principal
    discouraged_principal: Mapped[bool] = mapped_column(Boolean, default=False)  # 25: warn as principal
    not_for_use: Mapped[bool] = mapped_column(Boolean, default=False)  # 26: block everywhere
    cause_of_death_only: Mapped[bool] = mapped_column(Boolean, default=False)  # 27
    sex: Mapped[str | None] = mapped_column(String(6))  # 28/29: female or male only/mainly (warn)
    valid_from: Mapped[date] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class _Item:
    """Columns shared by services, drugs and supplies."""

    id: Mapped[int] = mapped_column(BigId, primary_key=True, sort_order=-1)
    code: Mapped[str] = mapped_column(String(50), unique=True, sort_order=-1)  # the facility's own code
    bhyt_code: Mapped[str | None] = mapped_column(String(50), index=True)
    name: Mapped[str] = mapped_column(String(500))
    name_folded: Mapped[str] = mapped_column(String(1000), index=True)
    unit: Mapped[str] = mapped_column(String(50))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    valid_from: Mapped[date | None] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Service(_Item, Base):
    """A technical service (DVKT): examination, test, imaging, procedure, bed day."""

    __tablename__ = "catalog_services"

    group: Mapped[str | None] = mapped_column(String(100))


class Drug(_Item, Base):
    __tablename__ = "catalog_drugs"

    active_ingredient: Mapped[str] = mapped_column(String(500))
    strength: Mapped[str | None] = mapped_column(String(200))
    dosage_form: Mapped[str | None] = mapped_column(String(200))
    route: Mapped[str | None] = mapped_column(String(100))
    registration_number: Mapped[str | None] = mapped_column(String(50))
    manufacturer: Mapped[str | None] = mapped_column(String(300))
    country: Mapped[str | None] = mapped_column(String(100))
    is_narcotic: Mapped[bool] = mapped_column(Boolean, default=False)
    is_psychotropic: Mapped[bool] = mapped_column(Boolean, default=False)
    is_prescription_only: Mapped[bool] = mapped_column(Boolean, default=True)


class Supply(_Item, Base):
    """A medical supply (VTYT). Its BHYT code is assigned by the BHXH portal, never by us."""

    __tablename__ = "catalog_supplies"


class _Price:
    id: Mapped[int] = mapped_column(BigId, primary_key=True, sort_order=-1)
    price: Mapped[Decimal] = mapped_column(Money)
    valid_from: Mapped[date] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)
    # False for a row superseded on its own first day (a correction); kept, never deleted.
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ServicePrice(_Price, Base):
    __tablename__ = "catalog_service_prices"
    __table_args__ = (CheckConstraint("payer IN ('bhyt', 'fee', 'on_demand')", name="payer"),
                      CheckConstraint("price >= 0", name="price"))

    service_id: Mapped[int] = mapped_column(ForeignKey("catalog_services.id"), index=True)
    payer: Mapped[str] = mapped_column(String(10))


class DrugPrice(_Price, Base):
    __tablename__ = "catalog_drug_prices"
    __table_args__ = (CheckConstraint("price >= 0", name="price"),)

    drug_id: Mapped[int] = mapped_column(ForeignKey("catalog_drugs.id"), index=True)


class SupplyPrice(_Price, Base):
    __tablename__ = "catalog_supply_prices"
    __table_args__ = (CheckConstraint("price >= 0", name="price"),)

    supply_id: Mapped[int] = mapped_column(ForeignKey("catalog_supplies.id"), index=True)

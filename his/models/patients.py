"""The patient master index: patients, their BHYT cards over time, merges."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, utcnow

SEXES = ("male", "female", "unknown")
# Folded names compare byte-wise on PostgreSQL, so one b-tree serves both the prefix LIKE and the
# ORDER BY (under a linguistic collation a LIKE prefix needs text_pattern_ops, which cannot sort).
FoldedName = String(200).with_variant(String(200, collation="C"), "postgresql")
ADDRESS_SCHEMES = ("post2025", "pre2025")


class Patient(Base):
    __tablename__ = "patients"
    __table_args__ = (
        CheckConstraint(f"sex IN {SEXES}", name="sex"),
        # One live record per CCCD; a merged-away record keeps its number for history.
        Index("uq_patients_national_id_live", "national_id", unique=True,
              postgresql_where=text("merged_into_id IS NULL AND national_id IS NOT NULL"),
              sqlite_where=text("merged_into_id IS NULL AND national_id IS NOT NULL")),
        # Name search is a prefix match on the folded name, in both word orders (docs/benchmarks.md).
        # (name, id) under the "C" collation: a prefix LIKE walks the index in result order and stops
        # at the page size (docs/benchmarks.md).
        Index("ix_patients_name_folded", "name_folded", "id"),
        Index("ix_patients_name_reversed", "name_reversed", "id"),
        # Typo-tolerant fallback only (pg_trgm similarity with a threshold and a small limit).
        Index("ix_patients_name_trgm", "name_folded", postgresql_using="gin",
              postgresql_ops={"name_folded": "gin_trgm_ops"}).ddl_if(dialect="postgresql"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)  # the facility's patient code (MA_BN)
    full_name: Mapped[str] = mapped_column(String(200))  # as written on the card
    name_folded: Mapped[str] = mapped_column(FoldedName)  # "nguyen van an"
    name_reversed: Mapped[str] = mapped_column(FoldedName)  # "an van nguyen": given-name-first prefixes
    birth_date: Mapped[date | None]
    birth_year: Mapped[int] = mapped_column(Integer, index=True)  # always known, often the only part
    sex: Mapped[str] = mapped_column(String(10))
    national_id: Mapped[str | None] = mapped_column(String(12), index=True)  # CCCD / số định danh cá nhân
    national_id_raw_qr: Mapped[str | None] = mapped_column(Text)  # what the card's QR said, as scanned
    passport_number: Mapped[str | None] = mapped_column(String(20))
    phone: Mapped[str | None] = mapped_column(String(20), index=True)
    ethnicity_code: Mapped[str | None] = mapped_column(String(4))
    occupation_code: Mapped[str | None] = mapped_column(String(10))
    nationality: Mapped[str] = mapped_column(String(2), default="VN")  # ISO 3166-1 alpha-2
    # Permanent residence (thường trú) and current residence (nơi ở hiện nay), in either scheme.
    address_scheme: Mapped[str | None] = mapped_column(String(10))
    province_code: Mapped[str | None] = mapped_column(String(10))
    district_code: Mapped[str | None] = mapped_column(String(10))  # pre2025 only
    ward_code: Mapped[str | None] = mapped_column(String(10))
    street: Mapped[str | None] = mapped_column(String(300))
    address_text: Mapped[str | None] = mapped_column(String(500))  # as printed on the card
    current_address_text: Mapped[str | None] = mapped_column(String(500))
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[int | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    cards: Mapped[list[BhytCard]] = relationship(back_populates="patient", order_by="BhytCard.id.desc()",
                                                 foreign_keys="BhytCard.patient_id")


class BhytCard(Base):
    """One BHYT card seen for a patient; a new card closes the previous one (history kept)."""

    __tablename__ = "bhyt_cards"
    __table_args__ = (
        CheckConstraint("layout IN ('legacy15', 'bhxh10')", name="layout"),
        # A card number belongs to one live card row at a time.
        Index("uq_bhyt_cards_number_current", "number", unique=True,
              postgresql_where=text("superseded_at IS NULL"), sqlite_where=text("superseded_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    number: Mapped[str] = mapped_column(String(15), index=True)  # old cards are searched too
    layout: Mapped[str] = mapped_column(String(10))
    bhxh_number: Mapped[str] = mapped_column(String(10), index=True)
    group_code: Mapped[str | None] = mapped_column(String(2))
    benefit_level: Mapped[str | None] = mapped_column(String(4))  # MUC_HUONG: up to 4 characters since 07/2026
    province_code: Mapped[str | None] = mapped_column(String(2))
    valid_from: Mapped[date | None]
    valid_to: Mapped[date | None]
    registered_facility: Mapped[str | None] = mapped_column(String(5))  # MA_DKBD
    five_years_since: Mapped[date | None]  # 5 years of continuous coverage (miễn cùng chi trả)
    source: Mapped[str] = mapped_column(String(10), default="desk")  # desk | gateway
    verified_at: Mapped[datetime | None]  # when the insurer's portal confirmed it
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    superseded_at: Mapped[datetime | None]

    patient: Mapped[Patient] = relationship(back_populates="cards", foreign_keys=[patient_id])


class PatientMerge(Base):
    """A merge of a duplicate into the surviving record, with what it takes to undo it exactly."""

    __tablename__ = "patient_merges"

    id: Mapped[int] = mapped_column(primary_key=True)
    survivor_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    duplicate_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    # Both records' columns before the merge, and the ids of every row that was re-pointed.
    snapshot: Mapped[dict]
    merged_at: Mapped[datetime] = mapped_column(default=utcnow)
    merged_by: Mapped[int | None]
    undone_at: Mapped[datetime | None]
    undone_by: Mapped[int | None]
    undo_reason: Mapped[str | None] = mapped_column(Text)


class Counter(Base):
    """Named counters for codes that must never repeat (patient codes, encounter codes)."""

    __tablename__ = "his_counters"

    name: Mapped[str] = mapped_column(String(60), primary_key=True)
    value: Mapped[int] = mapped_column(Integer)

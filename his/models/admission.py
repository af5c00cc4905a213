"""Inpatient stays: the admission and discharge facts of an encounter, the departments it passed
through and the beds it lay in — both as time series (started, ended), never overwritten (his.md §8).

A bed holds at most one current stay and an encounter lies in at most one bed at a time: partial
unique indexes (PostgreSQL and SQLite) enforce it, so two nurses taking the same bed at the same
moment cannot both win. Vietnamese wards run above 100 % occupancy; the extra beds set up in
corridors and rooms (giường kê thêm) are modelled as extra Bed rows (e.g. N201-K01), so the rule
stands and the BHYT bed-sharing rate (100/50/33 %) is computed by billing from the stays of the
beds of one room, not from several patients on one Bed row.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, utcnow
from his.models.encounters import Encounter
from his.models.org import Bed, Department

# Our names; billing maps them to MA_LOAI_RV (QĐ 130: 1 ra viện, 2 chuyển tuyến theo yêu cầu chuyên
# môn, 3 trốn viện, 4 xin ra viện, 5 chuyển tuyến theo yêu cầu người bệnh) at the XML border.
DISCHARGE_TYPES = ("home", "referred", "absconded", "at_request", "referred_at_request")
# KET_QUA_DTRI 1–5. "Severe, discharged at request" (6) is outcome "worse" with type "at_request".
OUTCOMES = ("cured", "improved", "unchanged", "worse", "died")
# What the encounter was before it became an inpatient stay (the visit-type history, his.md §3).
ADMISSION_SOURCES = ("outpatient", "emergency", "day_treatment", "direct")
STAY_END_REASONS = ("transfer", "discharge", "cancelled")

_CURRENT = "ended_at IS NULL"


class Admission(Base):
    """One per inpatient encounter: when and why it was admitted, and how it ended."""

    __tablename__ = "admissions"
    __table_args__ = (
        CheckConstraint(f"source IN {ADMISSION_SOURCES}", name="source"),
        CheckConstraint(f"discharge_type IS NULL OR discharge_type IN {DISCHARGE_TYPES}", name="discharge_type"),
        CheckConstraint(f"outcome IS NULL OR outcome IN {OUTCOMES}", name="outcome"),
        CheckConstraint("(discharged_at IS NULL AND discharge_type IS NULL AND outcome IS NULL) OR "
                        "(discharged_at IS NOT NULL AND discharge_type IS NOT NULL AND outcome IS NOT NULL)",
                        name="discharge_complete"),
        CheckConstraint("cause_of_death_code IS NULL OR outcome = 'died'", name="cause_of_death_if_died"),
        CheckConstraint("discharged_at IS NULL OR discharged_at >= admitted_at", name="discharge_after_admission"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    encounter_id: Mapped[int] = mapped_column(ForeignKey("encounters.id"), unique=True)
    source: Mapped[str] = mapped_column(String(20))
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"))  # the admitting department
    admitted_at: Mapped[datetime]  # NGAY_VAO_NOI_TRU; the encounter's started_at stays NGAY_VAO
    admitted_by: Mapped[int | None]
    reason: Mapped[str] = mapped_column(Text)  # LY_DO_VNT
    discharged_at: Mapped[datetime | None]
    discharged_by: Mapped[int | None]
    discharge_type: Mapped[str | None] = mapped_column(String(20))
    outcome: Mapped[str | None] = mapped_column(String(20))
    cause_of_death_code: Mapped[str | None] = mapped_column(String(10))  # ICD-10, checked as "cause_of_death"
    death_certificate_issued: Mapped[bool | None] = mapped_column(Boolean)
    discharge_note: Mapped[str | None] = mapped_column(Text)
    # Set when the encounter itself is cancelled (admitted by mistake): the stays were ended then.
    cancelled_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    encounter: Mapped[Encounter] = relationship(lazy="joined")
    department: Mapped[Department] = relationship()

    @property
    def current(self) -> bool:
        return self.discharged_at is None and self.cancelled_at is None


class DepartmentStay(Base):
    """The episode's department list: it grows with each transfer, and the time in each is kept."""

    __tablename__ = "department_stays"
    __table_args__ = (
        Index("uq_department_stays_encounter_current", "encounter_id", unique=True,
              postgresql_where=text(_CURRENT), sqlite_where=text(_CURRENT)),
        Index("ix_department_stays_department_current", "department_id",
              postgresql_where=text(_CURRENT), sqlite_where=text(_CURRENT)),
        CheckConstraint("ended_at IS NULL OR ended_at >= started_at", name="ends_after_start"),
        CheckConstraint(f"end_reason IS NULL OR end_reason IN {STAY_END_REASONS}", name="end_reason"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    encounter_id: Mapped[int] = mapped_column(ForeignKey("encounters.id"), index=True)
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    started_by: Mapped[int | None]
    ended_by: Mapped[int | None]
    end_reason: Mapped[str | None] = mapped_column(String(20))

    department: Mapped[Department] = relationship(lazy="joined")


class BedStay(Base):
    """A bed assignment (bed_assignment(episode, bed, from, to) of his.md §8): billing counts bed days from these."""

    __tablename__ = "bed_stays"
    __table_args__ = (
        Index("uq_bed_stays_bed_current", "bed_id", unique=True,
              postgresql_where=text(_CURRENT), sqlite_where=text(_CURRENT)),
        Index("uq_bed_stays_encounter_current", "encounter_id", unique=True,
              postgresql_where=text(_CURRENT), sqlite_where=text(_CURRENT)),
        CheckConstraint("ended_at IS NULL OR ended_at >= started_at", name="ends_after_start"),
        CheckConstraint(f"end_reason IS NULL OR end_reason IN {STAY_END_REASONS}", name="end_reason"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    encounter_id: Mapped[int] = mapped_column(ForeignKey("encounters.id"), index=True)
    bed_id: Mapped[int] = mapped_column(ForeignKey("beds.id"), index=True)
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    started_by: Mapped[int | None]
    ended_by: Mapped[int | None]
    end_reason: Mapped[str | None] = mapped_column(String(20))

    bed: Mapped[Bed] = relationship(lazy="joined")
    encounter: Mapped[Encounter] = relationship()


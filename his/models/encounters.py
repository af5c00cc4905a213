"""Encounters (a visit or a stay) and their diagnoses."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, utcnow
from his.models.org import Department, Room, Staff
from his.models.patients import BhytCard, Patient

ENCOUNTER_KINDS = ("outpatient", "emergency", "inpatient", "day_treatment")
# registered → in_progress → finished; inpatient stays: admitted → discharged; any open one → cancelled.
ENCOUNTER_STATUSES = ("registered", "in_progress", "finished", "admitted", "discharged", "cancelled")
# How the visit stands with the insurer (decides the share the fund pays; see billing).
BHYT_ROUTES = ("correct", "referred", "emergency", "self_referred")


class Encounter(Base):
    __tablename__ = "encounters"
    __table_args__ = (
        CheckConstraint(f"kind IN {ENCOUNTER_KINDS}", name="kind"),
        CheckConstraint(f"status IN {ENCOUNTER_STATUSES}", name="status"),
        CheckConstraint(f"bhyt_route IS NULL OR bhyt_route IN {BHYT_ROUTES}", name="bhyt_route"),
        Index("ix_encounters_room_started", "room_id", "started_at"),
        Index("ix_encounters_patient_started", "patient_id", "started_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # The episode's link key (MA_LK): unique, and never changes once given.
    code: Mapped[str] = mapped_column(String(30), unique=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"), index=True)
    room_id: Mapped[int | None] = mapped_column(ForeignKey("rooms.id"))
    doctor_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    insured: Mapped[bool] = mapped_column(Boolean, default=False)
    bhyt_card_id: Mapped[int | None] = mapped_column(ForeignKey("bhyt_cards.id"))
    bhyt_route: Mapped[str | None] = mapped_column(String(20))
    referral_from: Mapped[str | None] = mapped_column(String(5))  # facility code (MA_NOI_DI)
    referral_number: Mapped[str | None] = mapped_column(String(50))
    is_emergency: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[int | None]
    cancelled_at: Mapped[datetime | None]
    cancelled_by: Mapped[int | None]
    cancel_reason: Mapped[str | None] = mapped_column(Text)

    patient: Mapped[Patient] = relationship()
    department: Mapped[Department | None] = relationship()
    room: Mapped[Room | None] = relationship()
    doctor: Mapped[Staff | None] = relationship()
    bhyt_card: Mapped[BhytCard | None] = relationship()
    diagnoses: Mapped[list[Diagnosis]] = relationship(back_populates="encounter", order_by="Diagnosis.id",
                                                      primaryjoin="and_(Diagnosis.encounter_id == Encounter.id, "
                                                                  "Diagnosis.cancelled_at.is_(None))",
                                                      viewonly=True)


class Diagnosis(Base):
    """An ICD-10 diagnosis of an encounter; corrections cancel the old row and add a new one."""

    __tablename__ = "encounter_diagnoses"
    __table_args__ = (CheckConstraint("position IN ('principal', 'secondary')", name="position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    encounter_id: Mapped[int] = mapped_column(ForeignKey("encounters.id"), index=True)
    position: Mapped[str] = mapped_column(String(10))
    icd10_code: Mapped[str] = mapped_column(String(10))
    text: Mapped[str | None] = mapped_column(String(500))
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
    recorded_by: Mapped[int | None]
    cancelled_at: Mapped[datetime | None]
    cancelled_by: Mapped[int | None]

    encounter: Mapped[Encounter] = relationship(back_populates="diagnoses")

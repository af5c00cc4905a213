"""Laboratory tables: the test catalogue, specimens, analyser profiles, the message store, results
with their versions and validation stages, released reports and critical-value notifications.

Nothing is deleted. A new value for a test of a specimen (preliminary → final, a correction) is a
new version row; the previous one keeps its value and gets `superseded_at`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, BigId, utcnow

VALUE_TYPES = ("NM", "ST", "TX", "CE", "SN")
SPECIMEN_STATUSES = ("ordered", "collected", "received", "rejected", "resulted", "released")
STAGES = ("preliminary", "technically_validated", "medically_validated", "released")
MESSAGE_STATUSES = ("applied", "unmatched", "resolved", "error", "rejected", "answered", "pending", "sent")
ORDER_MESSAGES = ("ORM^O01", "OML^O21")
PROTOCOLS = ("hl7", "astm")
Value = Numeric(18, 6)


class LabTest(Base):
    """One analyte (Glucose, WBC) or a panel of them (CBC): what a lab order line asks for."""

    __tablename__ = "lis_tests"
    __table_args__ = (CheckConstraint(f"value_type IN {VALUE_TYPES}", name="value_type"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(30), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    loinc: Mapped[str | None] = mapped_column(String(20), index=True)
    unit: Mapped[str | None] = mapped_column(String(30))
    value_type: Mapped[str] = mapped_column(String(2), default="NM")
    decimals: Mapped[int | None] = mapped_column(Integer)
    specimen_type: Mapped[str] = mapped_column(String(10), default="SER")  # HL7 table 0487: WB, SER, UR…
    is_panel: Mapped[bool] = mapped_column(Boolean, default=False)
    service_code: Mapped[str | None] = mapped_column(String(50), index=True)  # the his/billing service (DVKT)
    delta_percent: Mapped[Decimal | None] = mapped_column(Numeric(6, 2))  # change vs previous result that is flagged
    position: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    ranges: Mapped[list[ReferenceRange]] = relationship(back_populates="test", order_by="ReferenceRange.id",
                                                        lazy="selectin")


class PanelMember(Base):
    __tablename__ = "lis_panel_members"
    __table_args__ = (UniqueConstraint("panel_id", "test_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    panel_id: Mapped[int] = mapped_column(ForeignKey("lis_tests.id"), index=True)
    test_id: Mapped[int] = mapped_column(ForeignKey("lis_tests.id"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)

    test: Mapped[LabTest] = relationship(foreign_keys=[test_id], lazy="joined")


class ReferenceRange(Base):
    """Normal and critical limits of a test for a sex and an age band (months, upper bound exclusive)."""

    __tablename__ = "lis_reference_ranges"
    __table_args__ = (CheckConstraint("sex IN ('female', 'male')", name="sex"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    test_id: Mapped[int] = mapped_column(ForeignKey("lis_tests.id"), index=True)
    sex: Mapped[str | None] = mapped_column(String(6))
    age_from_months: Mapped[int | None] = mapped_column(Integer)
    age_to_months: Mapped[int | None] = mapped_column(Integer)
    low: Mapped[Decimal | None] = mapped_column(Value)
    high: Mapped[Decimal | None] = mapped_column(Value)
    critical_low: Mapped[Decimal | None] = mapped_column(Value)
    critical_high: Mapped[Decimal | None] = mapped_column(Value)
    text: Mapped[str | None] = mapped_column(String(100))  # for non-numeric tests: "Âm tính"

    test: Mapped[LabTest] = relationship(back_populates="ranges")


class Analyser(Base):
    """An analyser or middleware connection: who it is in MSH-3/4, where to send orders, its quirks."""

    __tablename__ = "lis_analysers"
    __table_args__ = (
        CheckConstraint(f"protocol IN {PROTOCOLS}", name="protocol"),
        CheckConstraint(f"order_message IN {ORDER_MESSAGES}", name="order_message"),
        UniqueConstraint("sender"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(30), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    sender: Mapped[str] = mapped_column(String(200))  # "MSH-3^MSH-4" as it sends them, or the ASTM H-5 name
    protocol: Mapped[str] = mapped_column(String(10), default="hl7")
    hl7_version: Mapped[str] = mapped_column(String(10), default="2.3.1")
    host: Mapped[str | None] = mapped_column(String(200))
    port: Mapped[int | None] = mapped_column(Integer)
    order_message: Mapped[str] = mapped_column(String(10), default="ORM^O01")
    specimen_field: Mapped[str | None] = mapped_column(String(10))  # OBR-3, OBR-2, SPM-2, SAC-3; None: try all
    quirks: Mapped[dict] = mapped_column(default=dict)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    codes: Mapped[list[AnalyserCode]] = relationship(back_populates="analyser", order_by="AnalyserCode.code",
                                                     lazy="selectin")


class AnalyserCode(Base):
    """The analyser's own code for one of our tests (OBX-3 / ASTM R-3 and the order download)."""

    __tablename__ = "lis_analyser_codes"
    __table_args__ = (UniqueConstraint("analyser_id", "code"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    analyser_id: Mapped[int] = mapped_column(ForeignKey("lis_analysers.id"), index=True)
    code: Mapped[str] = mapped_column(String(50))
    test_id: Mapped[int] = mapped_column(ForeignKey("lis_tests.id"), index=True)

    analyser: Mapped[Analyser] = relationship(back_populates="codes")
    test: Mapped[LabTest] = relationship(lazy="joined")


class Specimen(Base):
    """A tube with its barcode, for one lab order of an encounter."""

    __tablename__ = "lis_specimens"
    __table_args__ = (CheckConstraint(f"status IN {SPECIMEN_STATUSES}", name="status"),
                      Index("ix_lis_specimens_status_created", "status", "created_at"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    barcode: Mapped[str] = mapped_column(String(30), unique=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    encounter_id: Mapped[int] = mapped_column(ForeignKey("encounters.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    specimen_type: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(20), default="ordered")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    collected_at: Mapped[datetime | None]
    collected_by: Mapped[str | None] = mapped_column(String(120))
    received_at: Mapped[datetime | None]
    received_by: Mapped[str | None] = mapped_column(String(120))
    rejected_at: Mapped[datetime | None]
    rejected_by: Mapped[str | None] = mapped_column(String(120))
    reject_reason: Mapped[str | None] = mapped_column(Text)

    requests: Mapped[list[SpecimenTest]] = relationship(back_populates="specimen", order_by="SpecimenTest.position",
                                                        lazy="selectin")


class SpecimenTest(Base):
    """A test asked of a specimen (a panel is expanded into its members)."""

    __tablename__ = "lis_specimen_tests"
    __table_args__ = (UniqueConstraint("specimen_id", "test_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    specimen_id: Mapped[int] = mapped_column(ForeignKey("lis_specimens.id"), index=True)
    test_id: Mapped[int] = mapped_column(ForeignKey("lis_tests.id"), index=True)
    order_line_id: Mapped[int | None] = mapped_column(ForeignKey("order_lines.id"))
    position: Mapped[int] = mapped_column(Integer, default=0)

    specimen: Mapped[Specimen] = relationship(back_populates="requests")
    test: Mapped[LabTest] = relationship(lazy="joined")


class Message(Base):
    """The message store: every frame received or sent, raw, with what became of it and the answer."""

    __tablename__ = "lis_messages"
    __table_args__ = (
        CheckConstraint(f"status IN {MESSAGE_STATUSES}", name="status"),
        CheckConstraint("direction IN ('in', 'out')", name="direction"),
        UniqueConstraint("sender", "control_id", "content_hash"),
        Index("ix_lis_messages_status_received", "status", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    protocol: Mapped[str] = mapped_column(String(10), default="hl7")
    direction: Mapped[str] = mapped_column(String(3), default="in")
    sender: Mapped[str | None] = mapped_column(String(200))
    control_id: Mapped[str | None] = mapped_column(String(199))
    content_hash: Mapped[str | None] = mapped_column(String(64))
    message_type: Mapped[str | None] = mapped_column(String(20))
    version: Mapped[str | None] = mapped_column(String(10))
    analyser_id: Mapped[int | None] = mapped_column(ForeignKey("lis_analysers.id"), index=True)
    peer: Mapped[str | None] = mapped_column(String(100))  # remote address
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(20))
    error_code: Mapped[str | None] = mapped_column(String(10))  # HL7 table 0357
    error_location: Mapped[str | None] = mapped_column(String(40))
    error_reason: Mapped[str | None] = mapped_column(Text)
    ack_code: Mapped[str | None] = mapped_column(String(2))
    ack: Mapped[bytes | None] = mapped_column(LargeBinary)
    specimen_barcodes: Mapped[str | None] = mapped_column(String(300))  # the ids the message named
    results_count: Mapped[int] = mapped_column(Integer, default=0)
    processed_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(120))
    attempts: Mapped[int] = mapped_column(Integer, default=0)


class Result(Base):
    """One version of the value of a test on a specimen, with its validation stage."""

    __tablename__ = "lis_results"
    __table_args__ = (
        CheckConstraint(f"stage IN {STAGES}", name="stage"),
        UniqueConstraint("specimen_id", "test_id", "version"),  # also the index for lookups by specimen
        Index("ix_lis_results_patient_test", "patient_id", "test_id", "created_at"),
        # room on the page for the superseded version: a HOT update, no index touched (migration 0012)
        {"postgresql_with": {"fillfactor": 70}},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    specimen_id: Mapped[int] = mapped_column(ForeignKey("lis_specimens.id"))
    test_id: Mapped[int] = mapped_column(ForeignKey("lis_tests.id"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    version: Mapped[int] = mapped_column(Integer, default=1)
    value: Mapped[str | None] = mapped_column(String(500))
    numeric_value: Mapped[Decimal | None] = mapped_column(Value)
    unit: Mapped[str | None] = mapped_column(String(30))
    reference_range: Mapped[str | None] = mapped_column(String(100))
    flag: Mapped[str | None] = mapped_column(String(4))  # L, H, LL, HH, A, N
    analyser_flags: Mapped[str | None] = mapped_column(String(30))
    critical: Mapped[bool] = mapped_column(Boolean, default=False)
    delta_flag: Mapped[bool] = mapped_column(Boolean, default=False)
    previous_value: Mapped[str | None] = mapped_column(String(500))
    result_status: Mapped[str] = mapped_column(String(1), default="F")  # OBX-11 as sent: P, F, C, X…
    stage: Mapped[str] = mapped_column(String(25), default="preliminary")
    note: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("lis_messages.id"))  # written, never searched by
    analyser_id: Mapped[int | None] = mapped_column(ForeignKey("lis_analysers.id"))
    observed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    entered_by: Mapped[str | None] = mapped_column(String(120))
    superseded_at: Mapped[datetime | None]
    technical_by: Mapped[str | None] = mapped_column(String(120))
    technical_at: Mapped[datetime | None]
    medical_by: Mapped[str | None] = mapped_column(String(120))
    medical_at: Mapped[datetime | None]
    report_id: Mapped[int | None] = mapped_column(ForeignKey("lis_reports.id"))  # written, never searched by

    test: Mapped[LabTest] = relationship(lazy="joined")


class Report(Base):
    """A released result report of a specimen, signed by a lab physician; a re-release is a new one."""

    __tablename__ = "lis_reports"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    specimen_id: Mapped[int] = mapped_column(ForeignKey("lis_specimens.id"), index=True)
    encounter_id: Mapped[int] = mapped_column(ForeignKey("encounters.id"), index=True)
    released_at: Mapped[datetime] = mapped_column(default=utcnow)
    released_by: Mapped[str] = mapped_column(String(200))
    released_by_id: Mapped[int | None]
    content: Mapped[dict] = mapped_column(default=dict)  # the results as released


class CriticalAlert(Base):
    """A critical value to be acknowledged by the ordering doctor (or whoever takes the call)."""

    __tablename__ = "lis_critical_alerts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("lis_results.id"), index=True)
    encounter_id: Mapped[int] = mapped_column(ForeignKey("encounters.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    doctor_user_id: Mapped[int | None] = mapped_column(index=True)  # the ordering doctor's account
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(120))
    acknowledged_by_id: Mapped[int | None]
    note: Mapped[str | None] = mapped_column(Text)

    result: Mapped[Result] = relationship(lazy="joined")

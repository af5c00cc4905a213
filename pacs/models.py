"""The image index (study → series → instance), remote DICOM nodes, the modality worklist, MPPS and
radiology reports.

The index holds a copy of the attributes Query/Retrieve matches on; the files themselves stay as they
arrived under the storage directory. DICOM dates and times are kept as their DICOM text (DA
"YYYYMMDD", TM "HHMMSS.ffffff") because range matching on that text is exact and portable.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, BigId, utcnow

WORKLIST_STATUSES = ("scheduled", "in_progress", "completed", "discontinued")
MPPS_STATUSES = ("IN PROGRESS", "COMPLETED", "DISCONTINUED")
REPORT_STATUSES = ("draft", "signed")


class Study(Base):
    __tablename__ = "pacs_studies"
    __table_args__ = (
        Index("ix_pacs_studies_study_date", "study_date"),
        Index("ix_pacs_studies_patient_dicom_id", "patient_dicom_id"),
        Index("ix_pacs_studies_patient_name_folded", "patient_name_folded"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64), unique=True)
    patient_dicom_id: Mapped[str] = mapped_column(String(64), default="")  # PatientID as sent
    patient_name: Mapped[str] = mapped_column(String(200), default="")  # PN as sent, decoded
    patient_name_folded: Mapped[str] = mapped_column(String(200), default="")  # "nguyen^thi huong"
    patient_birth_date: Mapped[str] = mapped_column(String(8), default="")
    patient_sex: Mapped[str] = mapped_column(String(16), default="")
    study_date: Mapped[str] = mapped_column(String(8), default="")
    study_time: Mapped[str] = mapped_column(String(16), default="")
    accession_number: Mapped[str] = mapped_column(String(16), default="", index=True)
    study_id: Mapped[str] = mapped_column(String(16), default="")
    study_description: Mapped[str] = mapped_column(String(200), default="")
    referring_physician: Mapped[str] = mapped_column(String(200), default="")
    modalities: Mapped[str] = mapped_column(String(200), default=",")  # ",CT,SR,": searchable by member
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"), index=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    series: Mapped[list[Series]] = relationship(back_populates="study", order_by="Series.series_number")

    @property
    def modality_list(self) -> list[str]:
        return [m for m in self.modalities.split(",") if m]


class Series(Base):
    __tablename__ = "pacs_series"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    study_pk: Mapped[int] = mapped_column(BigId, ForeignKey("pacs_studies.id"), index=True)
    series_uid: Mapped[str] = mapped_column(String(64), unique=True)
    modality: Mapped[str] = mapped_column(String(16), default="")
    series_number: Mapped[int | None] = mapped_column(Integer)
    series_description: Mapped[str] = mapped_column(String(200), default="")
    body_part: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    study: Mapped[Study] = relationship(back_populates="series")
    instances: Mapped[list[Instance]] = relationship(back_populates="series",
                                                     order_by="Instance.instance_number")


class Instance(Base):
    __tablename__ = "pacs_instances"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    series_pk: Mapped[int] = mapped_column(BigId, ForeignKey("pacs_series.id"), index=True)
    study_pk: Mapped[int] = mapped_column(BigId, ForeignKey("pacs_studies.id"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    instance_number: Mapped[int | None] = mapped_column(Integer)
    transfer_syntax: Mapped[str] = mapped_column(String(64))
    rows: Mapped[int | None] = mapped_column(Integer)
    columns: Mapped[int | None] = mapped_column(Integer)
    frames: Mapped[int | None] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(300))  # relative to the storage directory
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    calling_ae: Mapped[str] = mapped_column(String(16), default="")
    received_at: Mapped[datetime] = mapped_column(default=utcnow)

    series: Mapped[Series] = relationship(back_populates="instances")


class RemoteAE(Base):
    """A DICOM node we know: a C-MOVE destination, and (with AE checking on) an allowed caller."""

    __tablename__ = "pacs_remote_aes"

    id: Mapped[int] = mapped_column(primary_key=True)
    ae_title: Mapped[str] = mapped_column(String(16), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WorklistItem(Base):
    """The scheduled procedure step of one imaging order, as modalities pull it (MWL)."""

    __tablename__ = "pacs_worklist_items"
    __table_args__ = (
        CheckConstraint(f"status IN {WORKLIST_STATUSES}", name="status"),
        Index("ix_pacs_worklist_items_status_scheduled", "status", "scheduled_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), unique=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    accession_number: Mapped[str] = mapped_column(String(16), unique=True)
    study_uid: Mapped[str] = mapped_column(String(64), unique=True)
    modality: Mapped[str] = mapped_column(String(16))
    station_ae: Mapped[str] = mapped_column(String(16), default="")
    procedure_code: Mapped[str] = mapped_column(String(50))
    procedure_name: Mapped[str] = mapped_column(String(500))
    scheduled_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(20), default="scheduled")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PerformedStep(Base):
    """An MPPS instance as the modality created and updated it."""

    __tablename__ = "pacs_performed_steps"
    __table_args__ = (CheckConstraint(f"status IN {MPPS_STATUSES}", name="status"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    worklist_item_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("pacs_worklist_items.id"), index=True)
    status: Mapped[str] = mapped_column(String(20))
    calling_ae: Mapped[str] = mapped_column(String(16), default="")
    attributes: Mapped[dict] = mapped_column(default=dict)  # the DICOM JSON of what the modality sent
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Report(Base):
    """The radiologist's report of one study; once signed it is never edited."""

    __tablename__ = "pacs_reports"
    __table_args__ = (CheckConstraint(f"status IN {REPORT_STATUSES}", name="status"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    study_pk: Mapped[int] = mapped_column(BigId, ForeignKey("pacs_studies.id"), unique=True)
    findings: Mapped[str] = mapped_column(Text, default="")
    conclusion: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(10), default="draft")
    written_by: Mapped[int | None]
    signed_by: Mapped[int | None]
    signed_by_name: Mapped[str | None] = mapped_column(String(200))
    signed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    study: Mapped[Study] = relationship()

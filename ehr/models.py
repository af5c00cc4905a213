"""Medical records: one per encounter, its documents, their immutable versions and signatures, the
certificates and keys that sign, emergency (break-glass) openings and external access grants.

Nothing here is physically deleted: documents are cancelled and restored, a change is a new version,
and on PostgreSQL triggers refuse DELETE and any UPDATE of a version's content (migration 0009).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, BigId, utcnow

RECORD_STATUSES = ("active", "closed", "archived", "destroyed")
DOCUMENT_STATUSES = ("active", "cancelled")
RETENTION_CLASSES = ("standard", "special", "death", "permanent")
CERT_KINDS = ("ca", "external_ca", "staff", "organisation", "tsa")


class MedicalRecord(Base):
    """The bệnh án of one encounter, of a form type from TT 32/2023 PL XXVIII (e.g. 01/BV1)."""

    __tablename__ = "ehr_records"
    __table_args__ = (
        CheckConstraint(f"status IN {RECORD_STATUSES}", name="status"),
        CheckConstraint(f"retention_class IS NULL OR retention_class IN {RETENTION_CLASSES}",
                        name="retention_class"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    encounter_id: Mapped[int] = mapped_column(ForeignKey("encounters.id"), unique=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    form_code: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="active")
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    opened_by: Mapped[int | None]
    closed_at: Mapped[datetime | None]
    closed_by: Mapped[int | None]
    archived_at: Mapped[datetime | None]
    retention_class: Mapped[str | None] = mapped_column(String(20))
    retention_until: Mapped[date | None]  # None with the permanent class
    legal_hold: Mapped[bool] = mapped_column(Boolean, default=False)
    destroyed_at: Mapped[datetime | None]
    destroyed_by: Mapped[int | None]
    destroy_reason: Mapped[str | None] = mapped_column(Text)
    imported_from: Mapped[str | None] = mapped_column(String(200))  # the facility a transferred record came from

    documents: Mapped[list[Document]] = relationship(back_populates="record", order_by="Document.id")


class Document(Base):
    """One document of a record (a treatment sheet, a care sheet, a lab report…), of a form kind."""

    __tablename__ = "ehr_documents"
    __table_args__ = (
        CheckConstraint(f"status IN {DOCUMENT_STATUSES}", name="status"),
        Index("ix_ehr_documents_author_unsigned", "author_id", "signed_version"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    record_id: Mapped[int] = mapped_column(BigId, ForeignKey("ehr_records.id"), index=True)
    form_code: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="active")
    current_version: Mapped[int] = mapped_column(Integer, default=0)  # the optimistic lock
    signed_version: Mapped[int | None] = mapped_column(Integer)  # newest version that carries a signature
    author_id: Mapped[int | None]
    author_name: Mapped[str] = mapped_column(String(200))
    clinical_time: Mapped[datetime]  # when the act happened (the 12 h / 24 h clock starts here)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Where a document that was not typed here came from: "lis:report:12", "pacs:report:7".
    source_ref: Mapped[str | None] = mapped_column(String(80), unique=True)
    cancelled_at: Mapped[datetime | None]
    cancelled_by: Mapped[int | None]
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    restored_at: Mapped[datetime | None]
    restored_by: Mapped[int | None]
    restore_reason: Mapped[str | None] = mapped_column(Text)

    record: Mapped[MedicalRecord] = relationship(back_populates="documents")
    versions: Mapped[list[Version]] = relationship(back_populates="document", order_by="Version.number")


class Version(Base):
    """An immutable version: the content, its canonical bytes (what is signed) and their SHA-256."""

    __tablename__ = "ehr_versions"
    __table_args__ = (UniqueConstraint("document_id", "number"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    document_id: Mapped[int] = mapped_column(BigId, ForeignKey("ehr_documents.id"))
    number: Mapped[int] = mapped_column(Integer)
    content: Mapped[dict]
    canonical: Mapped[bytes] = mapped_column(LargeBinary)
    content_hash: Mapped[str] = mapped_column(String(64))
    author_id: Mapped[int | None]
    author_name: Mapped[str] = mapped_column(String(200))
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
    amend_reason: Mapped[str | None] = mapped_column(Text)
    purged_at: Mapped[datetime | None]  # content erased at the end of retention (metadata kept)

    document: Mapped[Document] = relationship(back_populates="versions")
    signatures: Mapped[list[Signature]] = relationship(back_populates="version", order_by="Signature.id")


class Certificate(Base):
    """An X.509 certificate known to this facility: its CA, another facility's CA (trusted for the records
    imported from it), a staff member's, the organisation's, a TSA's."""

    __tablename__ = "ehr_certificates"
    __table_args__ = (CheckConstraint(f"kind IN {CERT_KINDS}", name="kind"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    subject: Mapped[str] = mapped_column(String(500))
    issuer: Mapped[str] = mapped_column(String(500))
    serial: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 of the DER
    not_before: Mapped[datetime]
    not_after: Mapped[datetime]
    pem: Mapped[str] = mapped_column(Text)
    revoked_at: Mapped[datetime | None]
    revoke_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SoftwareKey(Base):
    """A private key kept by the application, encrypted (PKCS#8, AES-256) with the key-store passphrase."""

    __tablename__ = "ehr_software_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    certificate_id: Mapped[int] = mapped_column(BigId, ForeignKey("ehr_certificates.id"), unique=True)
    encrypted_pkcs8: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Signature(Base):
    """A detached CMS signature over one version's canonical bytes, with the optional RFC 3161 token."""

    __tablename__ = "ehr_signatures"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    version_id: Mapped[int] = mapped_column(BigId, ForeignKey("ehr_versions.id"), index=True)
    certificate_id: Mapped[int] = mapped_column(BigId, ForeignKey("ehr_certificates.id"))
    signer_id: Mapped[int | None]
    signer_name: Mapped[str] = mapped_column(String(200))
    signer_title: Mapped[str | None] = mapped_column(String(80))
    content_hash: Mapped[str] = mapped_column(String(64))
    cms: Mapped[bytes] = mapped_column(LargeBinary)
    signed_at: Mapped[datetime] = mapped_column(default=utcnow)
    tsa_token: Mapped[bytes | None] = mapped_column(LargeBinary)
    tsa_time: Mapped[datetime | None]

    version: Mapped[Version] = relationship(back_populates="signatures")
    certificate: Mapped[Certificate] = relationship()


class BreakGlass(Base):
    """An emergency opening of a record by someone outside its care team: allowed, flagged, reviewed."""

    __tablename__ = "ehr_break_glass"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    record_id: Mapped[int] = mapped_column(BigId, ForeignKey("ehr_records.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    user_name: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    reviewed_at: Mapped[datetime | None]
    reviewed_by: Mapped[int | None]


class AccessGrant(Base):
    """Access given to someone outside the care team (inspector, BHXH assessor, lawyer), for a purpose."""

    __tablename__ = "ehr_access_grants"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    record_id: Mapped[int] = mapped_column(BigId, ForeignKey("ehr_records.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    purpose: Mapped[str] = mapped_column(Text)
    can_copy: Mapped[bool] = mapped_column(Boolean, default=False)
    granted_by: Mapped[int | None]
    valid_from: Mapped[datetime]
    valid_to: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

"""Closing, archiving and, at the very end, destroying a record (TT 33/2025 annex group 01).

On closing a record gets its retention class: death 30 years (item 39); mental health, accidents and
transplants 20 years (items 40, 43); otherwise 10 years (item 44); a medical-incident file is kept
permanently (item 38). The period runs to 31/12 of the closing year + N (Luật Lưu trữ Đ15 k3), a class
only ever goes up (a file with mixed periods takes the longest, Đ15 k4). Destruction is an explicit,
audited admin action, refused before that date or under a legal hold; only metadata and hashes stay.
"""

from __future__ import annotations

from datetime import date

from flask_babel import lazy_gettext as _l
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from core import audit
from core.audit import Actor
from core.db import is_postgresql, utcnow
from ehr.models import Document, MedicalRecord, Version
from ehr.records import RecordError, authorise, signed_content
from his.models.encounters import Diagnosis

YEARS = {"standard": 10, "special": 20, "death": 30, "permanent": None}
RANK = ("standard", "special", "death", "permanent")
CLASS_LABELS = {"standard": _l("10 years"), "special": _l("20 years"), "death": _l("30 years"),
                "permanent": _l("Permanent")}
# ICD-10 chapters that make a record "special": mental and behavioural disorders (F), external causes
# of injury (V01–Y98: traffic and occupational accidents), transplanted organ status (Z94).
_SPECIAL_PREFIXES = ("F", "V", "W", "X", "Y", "Z94")


def _codes(session: Session, record: MedicalRecord) -> set[str]:
    codes = set(session.scalars(select(Diagnosis.icd10_code).where(Diagnosis.encounter_id == record.encounter_id,
                                                                   Diagnosis.cancelled_at.is_(None))))
    for doc in session.scalars(select(Document).where(Document.record_id == record.id, Document.status == "active")):
        version = session.scalar(select(Version).where(Version.document_id == doc.id,
                                                       Version.number == doc.current_version))
        codes |= {v for k, v in signed_content(version).items() if k.endswith("_icd") and isinstance(v, str)}
    return codes


def _died(session: Session, record: MedicalRecord) -> bool:
    for doc in session.scalars(select(Document).where(Document.record_id == record.id, Document.form_code == "GRV",
                                                      Document.status == "active")):
        version = session.scalar(select(Version).where(Version.document_id == doc.id,
                                                       Version.number == doc.current_version))
        if signed_content(version).get("result") == "died":
            return True
    return False


def classify(session: Session, record: MedicalRecord) -> str:
    if _died(session, record):
        found = "death"
    elif any(code.startswith(_SPECIAL_PREFIXES) for code in _codes(session, record)):
        found = "special"
    else:
        found = "standard"
    return max(found, record.retention_class or "standard", key=RANK.index)


def until(retention_class: str, closed_on: date) -> date | None:
    years = YEARS[retention_class]
    return None if years is None else date(closed_on.year + years, 12, 31)


def close(session: Session, actor: Actor, record: MedicalRecord, *, on: date, cfg=None) -> None:
    """Discharge-side closing: the record's main document must exist; retention starts."""
    authorise(session, actor, record, "edit", cfg)
    if record.status != "active":
        raise RecordError("not_active", _l("Only an active record can be closed."))
    if session.scalar(select(Document.id).where(Document.record_id == record.id,
                                                Document.form_code == record.form_code,
                                                Document.status == "active")) is None:
        raise RecordError("main_missing", _l("The record's main document (the bệnh án form) has not been filled in."))
    record.retention_class = classify(session, record)
    record.retention_until = until(record.retention_class, on)
    record.status, record.closed_at, record.closed_by = "closed", utcnow(), actor.id
    session.flush()
    audit.record(session, actor, "ehr.record.close", record,
                 {"patient_id": record.patient_id, "retention_class": record.retention_class,
                  "retention_until": record.retention_until})


def archive(session: Session, actor: Actor, record: MedicalRecord) -> None:
    if record.status != "closed":
        raise RecordError("not_closed", _l("Only a closed record can be archived."))
    record.status, record.archived_at = "archived", utcnow()
    session.flush()
    audit.record(session, actor, "ehr.record.archive", record, {"patient_id": record.patient_id})


def mark_permanent(session: Session, actor: Actor, record: MedicalRecord, reason: str) -> None:
    """A medical-incident file: kept permanently (TT 33/2025 item 38)."""
    record.retention_class, record.retention_until = "permanent", None
    session.flush()
    audit.record(session, actor, "ehr.record.retention", record, {"class": "permanent", "reason": reason})


def set_legal_hold(session: Session, actor: Actor, record: MedicalRecord, hold: bool, reason: str) -> None:
    record.legal_hold = hold
    session.flush()
    audit.record(session, actor, "ehr.record.legal_hold", record, {"hold": hold, "reason": reason})


def destroy(session: Session, actor: Actor, record: MedicalRecord, *, today: date, reason: str) -> int:
    """Erase the content of every version (metadata, hashes and signatures stay as the minutes);
    returns how many versions were erased."""
    if record.status != "archived":
        raise RecordError("not_archived", _l("Only an archived record can be destroyed."))
    if record.legal_hold:
        raise RecordError("legal_hold", _l("This record is under a legal hold and cannot be destroyed."))
    if record.retention_until is None or today <= record.retention_until:
        raise RecordError("retention", _l("This record must be kept until %(day)s; it cannot be destroyed before.",
                                          day=record.retention_until.strftime("%d/%m/%Y")
                                          if record.retention_until else str(CLASS_LABELS["permanent"])))
    if not (reason or "").strip():
        raise RecordError("reason_required", _l("Give the decision that approves the destruction."))
    if is_postgresql(session):
        session.execute(text("SET LOCAL vnhis.ehr_purge = 'on'"))
    versions = session.scalars(select(Version).join(Document).where(Document.record_id == record.id)).all()
    now = utcnow()
    for version in versions:
        version.content, version.canonical, version.purged_at = {}, b"", now
    record.status, record.destroyed_at, record.destroyed_by = "destroyed", now, actor.id
    record.destroy_reason = reason.strip()
    session.flush()
    if is_postgresql(session):
        session.execute(text("SET LOCAL vnhis.ehr_purge = 'off'"))
    audit.record(session, actor, "ehr.record.destroy", record,
                 {"patient_id": record.patient_id, "versions": len(versions), "reason": record.destroy_reason,
                  "retention_until": record.retention_until})
    return len(versions)

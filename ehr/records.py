"""Records and documents: open a record for an encounter, add a document from a form, edit it (a new
immutable version, optimistic locking), cancel and restore it with a reason. Every operation checks
access (ehr.access), writes its audit event and never commits.

What a version's signature covers is `canonical`: the JSON envelope of the content with the document's
identity, version number, author and times, serialised with sorted keys and fixed separators.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timedelta

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core.audit import Actor
from core.db import utcnow
from core.models import User
from ehr import access, forms
from ehr.form_defs import FORMS, RECORD_FORMS
from ehr.models import Document, MedicalRecord, Version
from his.models.encounters import Encounter
from his.models.org import Staff

FUTURE_SLACK = timedelta(minutes=5)  # clocks of workstations differ a little


class RecordError(ValueError):
    def __init__(self, code: str, message, field_errors: dict | None = None):
        super().__init__(code)
        self.code, self.message, self.field_errors = code, message, field_errors or {}

    def __str__(self) -> str:
        return str(self.message)


def canonical(envelope: dict) -> bytes:
    return json.dumps(envelope, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def signed_content(version: Version) -> dict:
    """The content as signed: from the canonical bytes, refused loudly if the stored column says otherwise
    (a rewrite behind the database's back must never reach a screen, a print or an export)."""
    if version.purged_at is not None:
        return {}
    content = json.loads(version.canonical)["content"]
    if content != version.content:
        raise RecordError("tampered", _l("Document version %(n)d does not match its signed bytes: it was altered "
                                         "outside the application. Report it to the administrator.",
                                         n=version.number))
    return content


def person(session: Session, actor: Actor) -> tuple[str, str | None]:
    """The name (and title) written on entries: the staff record's, else the account's."""
    if actor.id is None:
        return actor.name, None
    staff = session.scalar(select(Staff).where(Staff.user_id == actor.id))
    if staff is not None:
        return staff.full_name, staff.title
    user = session.get(User, actor.id)
    return (user.full_name if user else actor.name), None


def _user(session: Session, actor: Actor) -> User | None:
    return session.get(User, actor.id) if actor.id is not None else None


def authorise(session: Session, actor: Actor, record: MedicalRecord, action: str, cfg=None) -> str:
    """Check the actor may do `action` (system actors — event subscribers, import — may)."""
    user = _user(session, actor)
    if user is None:
        return "system"
    return access.check(session, user, record, action, cfg)


def of_encounter(session: Session, encounter_id: int) -> MedicalRecord | None:
    return session.scalar(select(MedicalRecord).where(MedicalRecord.encounter_id == encounter_id))


def default_form(encounter: Encounter) -> str:
    return "15/BV1" if encounter.kind == "outpatient" else "01/BV1"


def open_record(session: Session, actor: Actor, encounter: Encounter, form_code: str | None = None) -> MedicalRecord:
    form_code = form_code or default_form(encounter)
    if form_code not in RECORD_FORMS:
        raise RecordError("bad_form", _l("«%(code)s» is not a medical record form.", code=form_code))
    if encounter.status == "cancelled":
        raise RecordError("cancelled_encounter", _l("This encounter was cancelled."))
    if of_encounter(session, encounter.id) is not None:
        raise RecordError("exists", _l("This encounter already has a medical record."))
    if encounter.kind not in RECORD_FORMS[form_code].for_kinds:
        raise RecordError("form_not_for_kind", _l("«%(form)s» is not used for this kind of encounter.",
                                                  form=RECORD_FORMS[form_code].title))
    record = MedicalRecord(encounter_id=encounter.id, patient_id=encounter.patient_id, form_code=form_code,
                           status="active", opened_at=utcnow(), opened_by=actor.id, legal_hold=False)
    session.add(record)
    session.flush()
    authorise(session, actor, record, "create")  # only the encounter's care team starts its record
    audit.record(session, actor, "ehr.record.create", record,
                 {"encounter_id": encounter.id, "patient_id": encounter.patient_id, "form": form_code})
    return record


def ensure_record(session: Session, actor: Actor, encounter: Encounter) -> MedicalRecord:
    return of_encounter(session, encounter.id) or open_record(session, actor, encounter)


def _envelope(session: Session, document: Document, number: int, content: dict, author: str,
              recorded_at: datetime) -> dict:
    record = document.record
    encounter = session.get(Encounter, record.encounter_id)
    return {"record": {"encounter": encounter.code, "patient": encounter.patient.code, "form": record.form_code},
            "document": {"id": document.id, "form": document.form_code,
                         "clinical_time": document.clinical_time.isoformat()},
            "version": number, "author": author, "recorded_at": recorded_at.isoformat(), "content": content}


def _add_version(session: Session, actor: Actor, document: Document, content: dict,
                 reason: str | None) -> Version:
    """`actor` is the version's author (for a result from another system, the person who released it)."""
    number = document.current_version + 1
    author, _title = person(session, actor)
    recorded_at = utcnow()
    data = canonical(_envelope(session, document, number, content, author, recorded_at))
    version = Version(document_id=document.id, number=number, content=content, canonical=data,
                      content_hash=sha256(data), author_id=actor.id, author_name=author, recorded_at=recorded_at,
                      amend_reason=reason)
    session.add(version)
    document.current_version = number
    session.flush()
    return version


def _checked(session: Session, form_code: str, raw: dict, on: date) -> dict:
    try:
        return forms.check(session, FORMS[form_code], raw, on)
    except forms.FormErrors as exc:
        raise RecordError("invalid", _l("The form has errors: %(errors)s", errors=str(exc)), exc.by_field()) from None


def add_document(session: Session, actor: Actor, record: MedicalRecord, form_code: str, raw: dict, *,
                 clinical_time: datetime | None = None, on: date, cfg=None) -> Document:
    form = FORMS.get(form_code)
    if form is None or not form.entered:
        raise RecordError("bad_form", _l("«%(code)s» is not a form that is filled in here.", code=form_code))
    if form.kind == "record" and form_code != record.form_code:
        raise RecordError("bad_form", _l("This record is a «%(form)s»: its main document uses that form.",
                                         form=RECORD_FORMS[record.form_code].title))
    how = authorise(session, actor, record, "create", cfg)
    if form.kind == "record" and session.scalar(select(Document.id).where(
            Document.record_id == record.id, Document.form_code == form_code, Document.status == "active")):
        raise RecordError("main_exists", _l("The record's main document already exists: edit it instead."))
    if clinical_time is not None and clinical_time > utcnow() + FUTURE_SLACK:
        raise RecordError("future", _l("The time of the act cannot be in the future."),
                          {"clinical_time": str(_l("The time of the act cannot be in the future."))})
    content = _checked(session, form_code, raw, on)
    return create_document(session, actor, record, form_code, content, clinical_time=clinical_time, relation=how)


def create_document(session: Session, actor: Actor, record: MedicalRecord, form_code: str, content: dict, *,
                    clinical_time: datetime | None = None, source_ref: str | None = None,
                    relation: str = "system", author: Actor | None = None) -> Document:
    """A document with its first version from content already checked (or produced by another system).
    `author` is whom the document is by when `actor` writes it on their behalf: a lab report released in lis
    is by the releasing physician, though the system puts it in the record (and the audit says so)."""
    author = author or actor
    name, _title = person(session, author)
    document = Document(record_id=record.id, form_code=form_code, status="active", current_version=0,
                        author_id=author.id, author_name=name, clinical_time=clinical_time or utcnow(),
                        source_ref=source_ref)
    session.add(document)
    session.flush()
    version = _add_version(session, author, document, content, None)
    on_behalf = {"author_id": author.id, "author": name} if author is not actor else {}
    audit.record(session, actor, "ehr.document.create", document,
                 {"record_id": record.id, "patient_id": record.patient_id, "form": form_code,
                  "version": 1, "hash": version.content_hash} | on_behalf | access.flagged(relation))
    return document


def lock(session: Session, document_id: int) -> Document | None:
    return session.get(Document, document_id, with_for_update=True, populate_existing=True)


def current(session: Session, document: Document) -> Version:
    return session.scalar(select(Version).where(Version.document_id == document.id,
                                                Version.number == document.current_version))


def edit(session: Session, actor: Actor, document: Document, raw: dict, *, expected_version: int,
         reason: str | None = None, on: date, cfg=None) -> Version:
    """Version N+1 of the document. `expected_version` is the version the editor started from: if
    someone saved in between, nothing is written and the editor is told."""
    document = lock(session, document.id)
    record = document.record
    how = authorise(session, actor, record, "edit", cfg)
    form = FORMS[document.form_code]
    if not form.entered:
        raise RecordError("not_editable", _l("This document comes from another system and cannot be edited here."))
    if document.status == "cancelled":
        raise RecordError("cancelled", _l("This document was cancelled: restore it before editing."))
    if document.current_version != expected_version:
        raise RecordError("conflict", _l("Someone else saved this document in the meantime (now version %(now)d, "
                                         "you edited version %(yours)d). Reload it; nothing was saved.",
                                         now=document.current_version, yours=expected_version))
    reason = (reason or "").strip() or None
    if document.signed_version == document.current_version and reason is None:
        raise RecordError("reason_required", _l("Version %(n)d is signed and cannot change: give the reason for "
                                                "the amendment (a new version that must be signed again).",
                                                n=document.current_version))
    previous = current(session, document)
    content = _checked(session, document.form_code, raw, on)
    if content == previous.content:
        raise RecordError("unchanged", _l("Nothing was changed."))
    version = _add_version(session, actor, document, content, reason)
    audit.record(session, actor, "ehr.document.edit", document,
                 {"record_id": record.id, "patient_id": record.patient_id, "version": version.number,
                  "before": previous.content_hash, "after": version.content_hash, "reason": reason}
                 | access.flagged(how))
    return version


def _reason(reason: str | None, message) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise RecordError("reason_required", message)
    return reason


def cancel(session: Session, actor: Actor, document: Document, reason: str | None, cfg=None) -> None:
    document = lock(session, document.id)
    authorise(session, actor, document.record, "cancel", cfg)
    if document.status == "cancelled":
        raise RecordError("already_cancelled", _l("This document is already cancelled."))
    document.cancel_reason = _reason(reason, _l("Give the reason for cancelling the document."))
    document.status, document.cancelled_at, document.cancelled_by = "cancelled", utcnow(), actor.id
    session.flush()
    audit.record(session, actor, "ehr.document.cancel", document,
                 {"record_id": document.record_id, "patient_id": document.record.patient_id,
                  "reason": document.cancel_reason})


def restore(session: Session, actor: Actor, document: Document, reason: str | None, cfg=None) -> None:
    document = lock(session, document.id)
    authorise(session, actor, document.record, "restore", cfg)
    if document.status != "cancelled":
        raise RecordError("not_cancelled", _l("Only a cancelled document can be restored."))
    document.restore_reason = _reason(reason, _l("Give the reason for restoring the document."))
    document.status, document.restored_at, document.restored_by = "active", utcnow(), actor.id
    session.flush()
    audit.record(session, actor, "ehr.document.restore", document,
                 {"record_id": document.record_id, "patient_id": document.record.patient_id,
                  "reason": document.restore_reason})


def view(session: Session, actor: Actor, record: MedicalRecord, cfg=None, document: Document | None = None) -> str:
    """Check and audit a read of the record (or one document of it); returns the relation used."""
    how = authorise(session, actor, record, "view", cfg)
    detail = {"patient_id": record.patient_id} | access.flagged(how)
    if document is not None:
        audit.record(session, actor, "ehr.document.view", document, detail | {"record_id": record.id})
    else:
        audit.record(session, actor, "ehr.record.view", record, detail)
    return how

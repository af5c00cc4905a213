"""Export a record (HoSoBenhAn JSON/XML, FHIR Bundle, PDF), check every signature of an exported bundle,
and import a record transferred from another facility — refused, with nothing written, unless every
version's bytes match and every signature verifies against the CAs the importer trusts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core.audit import Actor
from core.db import utcnow
from ehr import cms, fhir, hosobenhan, pki, printing, signing
from ehr.form_defs import FORMS, RECORD_FORMS
from ehr.models import Certificate, Document, MedicalRecord, Signature, Version
from ehr.records import RecordError, authorise, of_encounter, sha256
from ehr.signing import Verdict, verify_bytes
from his.models.encounters import Encounter

FORMATS = {"fhir": "application/fhir+json", "json": "application/json", "xml": "application/xml",
           "pdf": "application/pdf"}


def facility(cfg) -> str:
    return (cfg.setting("VNHIS_EHR_FACILITY", "vnhis") if cfg is not None else "vnhis").strip()


def export(session: Session, actor: Actor, record: MedicalRecord, fmt: str, cfg=None) -> bytes:
    if fmt not in FORMATS:
        raise RecordError("bad_format", _l("Unknown export format «%(fmt)s».", fmt=fmt))
    how = authorise(session, actor, record, "print" if fmt == "pdf" else "export", cfg)
    if fmt == "fhir":
        body = json.dumps(fhir.build(session, record, facility(cfg)), ensure_ascii=False).encode("utf-8")
    elif fmt == "pdf":
        body = printing.record_pdf(session, record, printed_by=actor.name, facility=facility(cfg))
    else:
        data = hosobenhan.build(session, record)
        body = hosobenhan.to_json(data) if fmt == "json" else hosobenhan.to_xml(data)
    audit.record(session, actor, "ehr.record.print" if fmt == "pdf" else "ehr.record.export", record,
                 {"patient_id": record.patient_id, "format": fmt, "bytes": len(body), "relation": how}
                 | ({"flag": "break_glass"} if how == "break_glass" else {}))
    return body


@dataclass(frozen=True)
class Checked:
    document: str
    version: int
    signer: str
    verdict: Verdict


def verify_bundle(data: dict, cas) -> list[Checked]:
    """Every signature of an exported FHIR bundle, checked against `cas`."""
    _origin, versions = fhir.read(data)
    return [Checked(v.document, v.number, signer, verify_bytes(der, v.canonical, cas))
            for v in versions for der, signer, _when in v.signatures]


def _refuse(message) -> RecordError:
    return RecordError("bad_bundle", message)


def _signed_documents(versions) -> tuple[dict, dict[int, list]]:
    """The record and the documents as the signed envelopes say (never the bundle's unsigned labels):
    one record for all, each document's versions numbered 1..n."""
    try:
        envelopes = [json.loads(v.canonical) for v in versions]
        records_seen = {json.dumps(e["record"], sort_keys=True) for e in envelopes}
        by_document: dict[int, list] = {}
        for version, envelope in zip(versions, envelopes, strict=True):
            by_document.setdefault(envelope["document"]["id"], []).append((envelope, version))
    except (ValueError, KeyError, TypeError):
        raise _refuse(_l("Import refused: the bundle holds no readable record.")) from None
    if not envelopes:
        raise _refuse(_l("Import refused: the bundle holds no readable record."))
    if len(records_seen) > 1:
        raise _refuse(_l("Import refused: the bundle mixes signed versions of %(n)d different records. "
                         "Nothing was imported.", n=len(records_seen)))
    for document_id, entries in by_document.items():
        entries.sort(key=lambda pair: pair[0]["version"])
        numbers = [e["version"] for e, _v in entries]
        forms_seen = {e["document"]["form"] for e, _v in entries}
        if numbers != list(range(1, len(numbers) + 1)) or len(forms_seen) > 1:
            raise _refuse(_l("Import refused: document %(doc)s has the signed versions %(found)s instead of 1 to "
                             "%(n)d of one form. Nothing was imported.", doc=document_id,
                             found=", ".join(str(n) for n in numbers), n=len(numbers)))
    return envelopes[0]["record"], by_document


def _sender_cas(session: Session, versions, cas) -> None:
    """Keep the sending facility's CAs that issued these signatures, so they verify here from now on."""
    issuers = {cms.signer_certificate(der).issuer for v in versions for der, _signer, _when in v.signatures}
    for ca in cas:
        if ca.subject in issuers:
            pki.store_certificate(session, ca, "external_ca")


def import_record(session: Session, actor: Actor, data: dict, encounter: Encounter, cas) -> MedicalRecord:
    """The transferred record, attached to the encounter that received the patient here."""
    origin, versions = fhir.read(data)
    failed = [c for c in verify_bundle(data, cas) if not c.verdict.ok]
    if failed:
        first = failed[0]
        raise RecordError("signature_invalid", _l("Import refused: the signature of document %(doc)s version %(n)d "
                                                  "(%(signer)s) does not verify (%(why)s). Nothing was imported.",
                                                  doc=first.document, n=first.version, signer=first.signer,
                                                  why=first.verdict.label))
    sent, by_document = _signed_documents(versions)
    form_code = sent["form"]
    unknown = {e["document"]["form"] for entries in by_document.values() for e, _v in entries} - set(FORMS)
    if form_code not in RECORD_FORMS or unknown:
        raise _refuse(_l("Import refused: unknown form «%(code)s».", code=", ".join(sorted(unknown)) or form_code))
    if of_encounter(session, encounter.id) is not None:
        raise RecordError("exists", _l("This encounter already has a medical record."))
    record = MedicalRecord(encounter_id=encounter.id, patient_id=encounter.patient_id, form_code=form_code,
                           status="active", opened_at=utcnow(), opened_by=actor.id, legal_hold=False,
                           imported_from=origin[:200])
    session.add(record)
    session.flush()
    _sender_cas(session, versions, cas)
    for entries in by_document.values():
        first = entries[0][0]
        document = Document(record_id=record.id, form_code=first["document"]["form"], status="active",
                            current_version=0, author_id=None, author_name=first["author"],
                            clinical_time=datetime.fromisoformat(first["document"]["clinical_time"]),
                            created_at=datetime.fromisoformat(first["recorded_at"]))
        session.add(document)
        session.flush()
        for envelope, version in entries:
            if version.status == "entered-in-error":
                document.status, document.cancel_reason = "cancelled", version.description
            row = Version(document_id=document.id, number=envelope["version"], content=envelope["content"],
                          canonical=version.canonical, content_hash=sha256(version.canonical), author_id=None,
                          author_name=envelope["author"], recorded_at=datetime.fromisoformat(envelope["recorded_at"]),
                          amend_reason=None if version.status == "entered-in-error" else version.description)
            session.add(row)
            session.flush()
            document.current_version = row.number
            for der, signer, when in version.signatures:
                checked = verify_bytes(der, version.canonical, cas)
                cert = pki.store_certificate(session, cms.signer_certificate(der), "staff")
                session.add(Signature(version_id=row.id, certificate_id=cert.id, signer_id=None, signer_name=signer,
                                      content_hash=row.content_hash, cms=der,
                                      signed_at=checked.signing_time or datetime.fromisoformat(when)))
                document.signed_version = row.number
    session.flush()
    audit.record(session, actor, "ehr.record.import", record,
                 {"patient_id": record.patient_id, "origin": origin, "versions": len(versions),
                  "signatures": sum(len(v.signatures) for v in versions)})
    return record


def export_signatures(session: Session, actor: Actor, record: MedicalRecord, cfg=None):
    """[(name, signed bytes, detached CMS)] of every signature and the CAs' PEM, for `openssl cms -verify`."""
    authorise(session, actor, record, "export", cfg)
    rows = session.execute(select(Signature, Version, Document).join(Version, Signature.version_id == Version.id)
                           .join(Document, Version.document_id == Document.id)
                           .where(Document.record_id == record.id).order_by(Signature.id)).all()
    files = [(f"document-{d.id}-v{v.number}-sig{s.id}", v.canonical, s.cms) for s, v, d in rows]
    audit.record(session, actor, "ehr.record.export", record,
                 {"patient_id": record.patient_id, "format": "cms", "signatures": len(files)})
    return files, "".join(row.pem for row in session.scalars(select(Certificate)
                                                            .where(Certificate.kind.in_(pki.CA_KINDS))))


@dataclass(frozen=True)
class Integrity:
    versions: int
    signatures: int
    failures: list[str]


def check_all(session: Session) -> Integrity:
    """Every stored version against its hash and every signature against its bytes (after a restore, say)."""
    failures, versions, signatures = [], 0, 0
    for version in session.scalars(select(Version).order_by(Version.id)).yield_per(500):
        versions += 1
        if version.purged_at is not None:
            if version.canonical:
                failures.append(f"version {version.id}: destroyed but still holds content")
            continue
        if sha256(version.canonical) != version.content_hash:
            failures.append(f"version {version.id} (document {version.document_id} v{version.number}): "
                            "content does not match its hash")
        elif json.loads(version.canonical)["content"] != version.content:
            failures.append(f"version {version.id} (document {version.document_id} v{version.number}): "
                            "stored content differs from its signed bytes")
        for signature in version.signatures:
            signatures += 1
            verdict = signing.verify(session, signature)
            if not verdict.ok:
                failures.append(f"signature {signature.id} (document {version.document_id} v{version.number}, "
                                f"{signature.signer_name}): {verdict.status}: {verdict.detail}")
    return Integrity(versions, signatures, failures)

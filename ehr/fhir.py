"""The record as an HL7 FHIR R4 Bundle (checked with fhir.resources' R4B models, the R4-family release it
ships): the Patient, the Encounter, one DocumentReference per version carrying the exact signed bytes,
and one Provenance per signature carrying the detached CMS. Another vnhis imports it (ehr.exchange) and
every signature still verifies, because the bytes are never re-rendered.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field

from fhir.resources.R4B.bundle import Bundle
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from ehr.form_defs import FORMS
from ehr.models import Document, MedicalRecord, Signature, Version
from his.models.encounters import Encounter

DOC_SYSTEM = "urn:vnhis:ehr:document"
VERSION_SYSTEM = "urn:vnhis:ehr:version"
FORM_SYSTEM = "urn:vnhis:ehr:form"
RECORD_SYSTEM = "urn:vnhis:ehr:record"
CMS_FORMAT = "application/pkcs7-signature"
AUTHOR_SIGNATURE = {"system": "urn:iso-astm:E1762-95:2013", "code": "1.2.840.10065.1.12.1.1",
                    "display": "Author's Signature"}
ENCOUNTER_CLASS = {"outpatient": "AMB", "emergency": "EMER", "inpatient": "IMP", "day_treatment": "SS"}
_NS = uuid.UUID("6f1c2a57-1d0e-4e55-9a57-76e68a1e0009")


def _url(*parts) -> str:
    return f"urn:uuid:{uuid.uuid5(_NS, '/'.join(str(p) for p in parts))}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _doc_status(document: Document, version: Version) -> tuple[str, str]:
    if document.status == "cancelled":
        return "entered-in-error", "final"
    status = "current" if version.number == document.current_version else "superseded"
    signed = bool(version.signatures)
    return status, ("amended" if signed and version.number > 1 else "final") if signed else "preliminary"


def build(session: Session, record: MedicalRecord, facility: str) -> dict:
    encounter = session.get(Encounter, record.encounter_id)
    patient = encounter.patient
    key = (facility, encounter.code)
    patient_url, encounter_url = _url(*key, "patient"), _url(*key, "encounter")
    identifiers = [{"system": "urn:vnhis:patient-code", "value": patient.code}]
    if patient.national_id:
        identifiers.append({"system": "urn:vn:personal-id", "value": patient.national_id})
    entries = [
        {"fullUrl": patient_url, "resource": {
            "resourceType": "Patient", "identifier": identifiers, "name": [{"text": patient.full_name}],
            "gender": {"male": "male", "female": "female"}.get(patient.sex, "unknown"),
            **({"birthDate": patient.birth_date.isoformat()} if patient.birth_date else {})}},
        {"fullUrl": encounter_url, "resource": {
            "resourceType": "Encounter", "status": "finished" if encounter.ended_at else "in-progress",
            "identifier": [{"system": "urn:vnhis:encounter", "value": encounter.code}],
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                      "code": ENCOUNTER_CLASS.get(encounter.kind, "AMB")},
            "subject": {"reference": patient_url},
            "period": {"start": encounter.started_at.isoformat(),
                       **({"end": encounter.ended_at.isoformat()} if encounter.ended_at else {})}}},
    ]
    documents = session.scalars(select(Document).where(Document.record_id == record.id).order_by(Document.id)
                                .options(selectinload(Document.versions).selectinload(Version.signatures)
                                         .selectinload(Signature.certificate))).all()
    for document in documents:
        previous = None
        form = FORMS.get(document.form_code)
        for version in document.versions:
            url = _url(*key, "document", document.id, version.number)
            status, doc_status = _doc_status(document, version)
            resource = {
                "resourceType": "DocumentReference", "status": status, "docStatus": doc_status,
                "identifier": [{"system": DOC_SYSTEM, "value": str(document.id)},
                               {"system": VERSION_SYSTEM, "value": str(version.number)}],
                "type": {"coding": [{"system": FORM_SYSTEM, "code": document.form_code,
                                     "display": str(form.title) if form else document.form_code}]},
                "subject": {"reference": patient_url}, "date": version.recorded_at.isoformat(),
                "author": [{"display": version.author_name}],
                "content": [{"attachment": {"contentType": "application/json; charset=utf-8",
                                            "data": _b64(version.canonical),
                                            "creation": version.recorded_at.isoformat()}}],
                "context": {"encounter": [{"reference": encounter_url}]},
            }
            if document.status == "cancelled":
                resource["description"] = document.cancel_reason
            elif version.amend_reason:
                resource["description"] = version.amend_reason
            if previous:
                resource["relatesTo"] = [{"code": "replaces", "target": {"reference": previous}}]
            entries.append({"fullUrl": url, "resource": resource})
            for signature in version.signatures:
                entries.append({"fullUrl": _url(*key, "signature", signature.id), "resource": {
                    "resourceType": "Provenance", "target": [{"reference": url}],
                    "recorded": signature.signed_at.isoformat(),
                    "agent": [{"who": {"display": signature.signer_name}}],
                    "signature": [{"type": [AUTHOR_SIGNATURE], "when": signature.signed_at.isoformat(),
                                   "who": {"display": signature.signer_name}, "sigFormat": CMS_FORMAT,
                                   "data": _b64(signature.cms)}]}})
            previous = url
    data = {"resourceType": "Bundle", "type": "collection",
            "identifier": {"system": RECORD_SYSTEM, "value": f"{facility}/{encounter.code}"},
            "timestamp": max((e["resource"].get("date") for e in entries if e["resource"].get("date")),
                             default=encounter.started_at.isoformat()),
            "entry": entries}
    Bundle.model_validate(data)
    return data


@dataclass
class ExchangedVersion:
    document: str
    number: int
    form_code: str
    status: str
    description: str | None
    canonical: bytes
    signatures: list[tuple[bytes, str, str]] = field(default_factory=list)  # (cms, signer, when)


def read(data: dict) -> tuple[str, list[ExchangedVersion]]:
    """The origin ("facility/encounter") and the versions of a bundle made by `build`, in order."""
    Bundle.model_validate(data)
    by_url: dict[str, ExchangedVersion] = {}
    for entry in data.get("entry", []):
        resource = entry["resource"]
        if resource["resourceType"] == "DocumentReference":
            ids = {i["system"]: i["value"] for i in resource.get("identifier", [])}
            by_url[entry["fullUrl"]] = ExchangedVersion(
                ids[DOC_SYSTEM], int(ids[VERSION_SYSTEM]), resource["type"]["coding"][0]["code"], resource["status"],
                resource.get("description"), base64.b64decode(resource["content"][0]["attachment"]["data"]))
    for entry in data.get("entry", []):
        resource = entry["resource"]
        if resource["resourceType"] == "Provenance":
            target = by_url[resource["target"][0]["reference"]]
            for sig in resource.get("signature", []):
                if sig.get("sigFormat") == CMS_FORMAT:
                    target.signatures.append((base64.b64decode(sig["data"]), sig["who"].get("display", ""),
                                              sig["when"]))
    return data.get("identifier", {}).get("value", ""), list(by_url.values())

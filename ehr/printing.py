"""PDF of one document or of the whole record (weasyprint), drawn from the same form definitions as the
screens, showing who signed which version and when, with the conversion mark a paper copy of a data
message needs (Luật GDĐT Đ12 k2; NĐ 137/2024 Đ5): system, owner, lookup code, time, who printed it.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from flask import current_app, render_template
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload
from weasyprint import HTML

from core.db import utcnow
from ehr import forms
from ehr.form_defs import FORMS, RECORD_FORMS
from ehr.models import Document, MedicalRecord, Signature, Version
from ehr.records import signed_content
from ehr.signing import verify
from his.models.encounters import Encounter


def local(value, tz: str = "Asia/Ho_Chi_Minh") -> str:
    return value.astimezone(ZoneInfo(tz)).strftime("%H:%M %d/%m/%Y") if value else ""


def _tz() -> str:
    cfg = current_app.extensions.get("vnhis.config")
    return cfg.timezone if cfg is not None else "Asia/Ho_Chi_Minh"


def document_view(session: Session, document: Document, version: Version | None = None) -> dict:
    """What a screen or a print shows of one version: sections of (label, text), signatures with verdicts."""
    version = version or next(v for v in document.versions if v.number == document.current_version)
    form = FORMS[document.form_code]
    content = signed_content(version)
    sections = [(s.title, [(f.label, forms.as_text(f, content)) for f in s.fields
                           if forms.as_text(f, content)]) for s in form.sections]
    signatures = [(s, verify(session, s)) for s in version.signatures]
    return {"document": document, "version": version, "form": form, "sections": [s for s in sections if s[1]],
            "signatures": signatures}


def record_pdf(session: Session, record: MedicalRecord, *, printed_by: str, facility: str,
               document: Document | None = None) -> bytes:
    encounter = session.get(Encounter, record.encounter_id)
    query = (select(Document).where(Document.record_id == record.id).order_by(Document.clinical_time, Document.id)
             .options(selectinload(Document.versions).selectinload(Version.signatures)
                      .selectinload(Signature.certificate)))
    if document is not None:
        query = query.where(Document.id == document.id)
    views = [document_view(session, d) for d in session.scalars(query)]
    tz = _tz()
    html = render_template("ehr/print.html", record=record, encounter=encounter, patient=encounter.patient,
                           record_form=RECORD_FORMS[record.form_code], views=views, facility=facility,
                           printed_by=printed_by, printed_at=local(utcnow(), tz), local=lambda v: local(v, tz),
                           lookup=f"{facility}/{encounter.code}/{record.id}")
    return HTML(string=html).write_pdf()

"""Radiology reports: one per study, written as a draft, signed once, then released through
`pacs.report.signed` (ehr puts it in the record) and the imaging order completes."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit, events
from core.audit import Actor
from core.db import utcnow
from his import orders
from his.models.orders import Order
from pacs.models import Report, Study, WorklistItem

MAX_TEXT = 20000


class ReportError(ValueError):
    def __init__(self, code: str, field: str | None, message):
        super().__init__(str(message))
        self.code, self.field, self.message = code, field, message


def of_study(session: Session, study: Study) -> Report | None:
    return session.scalar(select(Report).where(Report.study_pk == study.id))


def _clean(value: str | None, field: str) -> str:
    text = (value or "").replace("\r\n", "\n").strip()
    if len(text) > MAX_TEXT:
        raise ReportError("too_long", field, _l("At most %(n)d characters.", n=MAX_TEXT))
    return text


def save(session: Session, actor: Actor, study: Study, findings: str | None, conclusion: str | None) -> Report:
    """Write or rewrite the draft report of `study`."""
    report = of_study(session, study)
    if report is not None and report.status == "signed":
        raise ReportError("already_signed", None, _l("This report is signed and can no longer be changed."))
    findings, conclusion = _clean(findings, "findings"), _clean(conclusion, "conclusion")
    if report is None:
        report = Report(study_pk=study.id, status="draft", written_by=actor.id)
        session.add(report)
    report.findings, report.conclusion, report.updated_at = findings, conclusion, utcnow()
    session.flush()
    audit.record(session, actor, "pacs.report.save", report,
                 {"study_uid": study.study_uid, "patient_id": study.patient_id})
    return report


def sign(session: Session, actor: Actor, study: Study, signer_name: str) -> Report:
    report = of_study(session, study)
    if report is None:
        raise ReportError("no_report", None, _l("Write the report before signing it."))
    if report.status == "signed":
        raise ReportError("already_signed", None, _l("This report is already signed."))
    if not report.conclusion:
        raise ReportError("conclusion_required", "conclusion", _l("A signed report needs a conclusion."))
    report.status, report.signed_by, report.signed_by_name, report.signed_at = "signed", actor.id, signer_name, utcnow()
    session.flush()
    order = session.get(Order, study.order_id) if study.order_id else None
    item = session.scalar(select(WorklistItem).where(WorklistItem.order_id == order.id)) if order else None
    if order is not None and order.status in ("placed", "in_progress"):
        orders.complete(session, actor, order)
    if item is not None and item.status in ("scheduled", "in_progress"):
        item.status = "completed"
    audit.record(session, actor, "pacs.report.sign", report,
                 {"study_uid": study.study_uid, "patient_id": study.patient_id, "order_id": study.order_id})
    events.emit(session, "pacs.report.signed", {
        "encounter_id": order.encounter_id if order else None, "patient_id": study.patient_id,
        "order_id": study.order_id, "report_id": report.id, "accession_number": study.accession_number,
        "study_uid": study.study_uid, "modality": "\\".join(study.modality_list),
        "procedure": (item.procedure_name if item else study.study_description),
        "findings": report.findings, "conclusion": report.conclusion, "signed_by": signer_name,
        "signed_by_id": actor.id, "signed_at": report.signed_at.isoformat()}, actor=actor)
    return report

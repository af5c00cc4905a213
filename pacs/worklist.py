"""The modality worklist from his imaging orders, and MPPS telling us what the modality did.

An imaging order placed in his becomes a scheduled procedure step (accession number and Study
Instance UID generated then, so the images join the right study); cancelling or reversing the order
discontinues it. MPPS N-CREATE (IN PROGRESS) starts the order through his; N-SET COMPLETED or
DISCONTINUED closes the step, and DISCONTINUED also reverses the started order. The order itself
completes when its report is signed (pacs.reports).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, time

import pydicom
from flask import current_app, has_app_context
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from core import audit, events
from core.audit import Actor
from core.config import ConfigError
from core.db import utcnow
from his import orders
from his.models.orders import Order
from his.models.patients import Patient
from his.text import fold
from pacs.models import PerformedStep, WorklistItem
from pacs.query import like_pattern
from pacs.settings import check_ae_title

# Which modality does a procedure need: the first keyword found in its folded name or code.
MODALITY_WORDS = (("cong huong tu", "MR"), ("mri", "MR"), ("cat lop", "CT"), ("ct ", "CT"), (".ct", "CT"),
                  ("x-quang", "DX"), ("x quang", "DX"), ("xq", "DX"), ("sieu am", "US"), ("nhu anh", "MG"),
                  ("chup vu", "MG"), ("noi soi", "ES"), ("mat do xuong", "BMD"))
OPEN_STATUSES = ("scheduled", "in_progress")
# DIMSE statuses for N-CREATE / N-SET (PS3.7 C, PS3.4 F.7).
INVALID_VALUE = 0x0106
DUPLICATE_INSTANCE = 0x0111
NO_SUCH_INSTANCE = 0x0112
MAY_NO_LONGER_BE_UPDATED = 0xA710


class MppsError(Exception):
    def __init__(self, status: int, comment: str):
        super().__init__(comment)
        self.status, self.comment = status, comment[:64]


def modality_of(name: str, code: str) -> str:
    text = f" {fold(name)} {code.lower()} "
    for word, modality in MODALITY_WORDS:
        if word in text:
            return modality
    return "OT"


def station_aes(text: str | None) -> dict[str, str]:
    """VNHIS_PACS_STATION_AES "CT=CT01,MR=MR01": the station AE title each modality's steps are scheduled on."""
    mapping = {}
    for pair in (text or "").split(","):
        if not pair.strip():
            continue
        modality, equals, title = (part.strip() for part in pair.partition("="))
        if not equals or not modality:
            raise ConfigError(f"VNHIS_PACS_STATION_AES must be MODALITY=AE pairs like CT=CT01,MR=MR01, got {pair!r}")
        mapping[modality.upper()] = check_ae_title(title, f"VNHIS_PACS_STATION_AES station of {modality}")
    return mapping


def _configured_station_aes() -> dict[str, str]:
    name = "VNHIS_PACS_STATION_AES"
    if has_app_context() and "vnhis.config" in current_app.extensions:
        return station_aes(current_app.extensions["vnhis.config"].setting(name))
    return station_aes(os.environ.get(name))  # CLI, jobs and the DICOM node: the same environment


def schedule(session: Session, actor: Actor, order: Order) -> WorklistItem:
    """The order's scheduled step, on its modality's station (VNHIS_PACS_STATION_AES); left empty, so that any
    station may take it, for a modality without one."""
    line = order.lines[0]
    modality = modality_of(line.item_name, line.item_code)
    stations = _configured_station_aes()
    item = WorklistItem(order_id=order.id, patient_id=order.patient_id, accession_number=f"ACC{order.id:010d}",
                        study_uid=generate_uid(), modality=modality, station_ae=stations.get(modality, ""),
                        procedure_code=line.item_code, procedure_name=line.item_name,
                        scheduled_at=order.ordered_at or utcnow(), status="scheduled")
    session.add(item)
    session.flush()
    audit.record(session, actor, "pacs.worklist.schedule", item,
                 {"order_id": order.id, "patient_id": order.patient_id, "accession_number": item.accession_number,
                  "station_ae": item.station_ae})
    return item


@events.subscribe("his.order.placed", inline=True)
def _on_order_placed(session: Session, payload: dict) -> None:
    if payload["kind"] != "imaging":
        return
    schedule(session, Actor.system("pacs"), session.get(Order, payload["order_id"]))


def _close_item(session: Session, payload: dict, status: str) -> None:
    item = session.scalar(select(WorklistItem).where(WorklistItem.order_id == payload["order_id"]))
    if item is not None and item.status in OPEN_STATUSES:
        item.status = status
        audit.record(session, Actor.system("pacs"), f"pacs.worklist.{status}", item, {"order_id": item.order_id})


@events.subscribe("his.order.cancelled", inline=True)
def _on_order_cancelled(session: Session, payload: dict) -> None:
    if payload["kind"] == "imaging":
        _close_item(session, payload, "discontinued")


@events.subscribe("his.order.reversed", inline=True)
def _on_order_reversed(session: Session, payload: dict) -> None:
    if payload["kind"] == "imaging":
        _close_item(session, payload, "discontinued")


def dicom_name(full_name: str) -> str:
    """Vietnamese names are written family name first: «Trần Thị Bình» → «Trần^Thị Bình»."""
    family, _, given = full_name.strip().partition(" ")
    return f"{family}^{given}" if given else family


def _local_date_bounds(value: str, tz) -> tuple[datetime | None, datetime | None]:
    low, dash, high = value.partition("-")
    if not dash:
        high = low

    def at(day: str, end: bool):
        if not day:
            return None
        moment = datetime.strptime(day, "%Y%m%d").replace(tzinfo=tz)
        return datetime.combine(moment.date(), time.max if end else time.min, tz)

    return at(low, False), at(high, True)


def _item(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def find(session: Session, actor: Actor, query: Dataset, tz) -> list[Dataset]:
    """Answer a Modality Worklist C-FIND: the open steps matching `query`, with the keys it asked for."""
    step_query = query.ScheduledProcedureStepSequence[0] if query.get("ScheduledProcedureStepSequence") else Dataset()
    stmt = (select(WorklistItem, Patient, Order).join(Patient, WorklistItem.patient_id == Patient.id)
            .join(Order, WorklistItem.order_id == Order.id).where(WorklistItem.status.in_(OPEN_STATUSES)))
    accession = _item(query, "AccessionNumber")
    if accession and accession != "*":
        stmt = stmt.where(WorklistItem.accession_number.like(like_pattern(accession), escape="\\"))
    patient_code = _item(query, "PatientID")
    if patient_code and patient_code != "*":
        stmt = stmt.where(Patient.code.like(like_pattern(patient_code), escape="\\"))
    name = _item(query, "PatientName").rstrip("^")
    if name and name != "*":
        stmt = stmt.where(Patient.name_folded.like(like_pattern(fold(name.replace("^", " "))), escape="\\"))
    modality = _item(step_query, "Modality")
    if modality and modality != "*":
        stmt = stmt.where(WorklistItem.modality.like(like_pattern(modality), escape="\\"))
    station = _item(step_query, "ScheduledStationAETitle")
    if station and station != "*":  # a step scheduled on no particular station is offered to every station
        stmt = stmt.where(or_(WorklistItem.station_ae == "",
                              WorklistItem.station_ae.like(like_pattern(station), escape="\\")))
    day = _item(step_query, "ScheduledProcedureStepStartDate")
    if day:
        low, high = _local_date_bounds(day, tz)
        stmt = stmt.where(*([WorklistItem.scheduled_at >= low] if low else []),
                          *([WorklistItem.scheduled_at <= high] if high else []))
    rows = session.execute(stmt.order_by(WorklistItem.scheduled_at, WorklistItem.id)).all()
    audit.record(session, actor, "pacs.worklist.query", None,
                 {"patients": sorted({p.id for _i, p, _o in rows}), "count": len(rows)})
    return [_response(query, step_query, item, patient, order, tz) for item, patient, order in rows]


def _response(query: Dataset, step_query: Dataset, item: WorklistItem, patient: Patient, order: Order, tz) -> Dataset:
    local = item.scheduled_at.astimezone(tz)
    step = Dataset()
    step.Modality = item.modality
    step.ScheduledStationAETitle = item.station_ae
    step.ScheduledProcedureStepStartDate = f"{local:%Y%m%d}"
    step.ScheduledProcedureStepStartTime = f"{local:%H%M%S}"
    step.ScheduledProcedureStepID = item.accession_number
    step.ScheduledProcedureStepDescription = item.procedure_name[:64]
    step.ScheduledPerformingPhysicianName = ""
    step.ScheduledProcedureStepStatus = "SCHEDULED" if item.status == "scheduled" else "STARTED"
    full = Dataset()
    full.SpecificCharacterSet = "ISO_IR 192"
    full.PatientName = dicom_name(patient.full_name)
    full.PatientID = patient.code
    full.PatientBirthDate = f"{patient.birth_date:%Y%m%d}" if patient.birth_date else ""
    full.PatientSex = {"male": "M", "female": "F"}.get(patient.sex, "O")
    full.AccessionNumber = item.accession_number
    full.RequestedProcedureID = item.accession_number
    full.RequestedProcedureDescription = item.procedure_name[:64]
    full.StudyInstanceUID = item.study_uid
    full.ReferringPhysicianName = dicom_name(order.orderer.full_name) if order.orderer else ""
    full.RequestedProcedurePriority = "ROUTINE"
    full.ScheduledProcedureStepSequence = Sequence([step])
    answer = Dataset()
    answer.SpecificCharacterSet = "ISO_IR 192"
    for elem in query:
        if elem.keyword == "ScheduledProcedureStepSequence":
            wanted = [e.keyword for e in step_query] or [e.keyword for e in step]
            reply = Dataset()
            for keyword in wanted:
                setattr(reply, keyword, step.get(keyword, ""))
            answer.ScheduledProcedureStepSequence = Sequence([reply])
        elif elem.keyword and elem.keyword != "SpecificCharacterSet":
            setattr(answer, elem.keyword, full.get(elem.keyword, "" if elem.VR != "SQ" else Sequence()))
    return answer


def _json(ds: Dataset) -> dict:
    return json.loads(ds.to_json(suppress_invalid_tags=True))


def mpps_create(session: Session, actor: Actor, sop_uid: str, attributes: Dataset, calling_ae: str) -> PerformedStep:
    if session.scalar(select(PerformedStep.id).where(PerformedStep.sop_instance_uid == sop_uid)):
        raise MppsError(DUPLICATE_INSTANCE, "MPPS instance already exists")
    status = _item(attributes, "PerformedProcedureStepStatus")
    if status != "IN PROGRESS":
        raise MppsError(INVALID_VALUE, "PerformedProcedureStepStatus must be IN PROGRESS")
    item = None
    for ref in attributes.get("ScheduledStepAttributesSequence", []):
        accession = _item(ref, "AccessionNumber")
        item = session.scalar(select(WorklistItem).where(WorklistItem.accession_number == accession)) \
            if accession else None
        if item is not None:
            break
    step = PerformedStep(sop_instance_uid=sop_uid, worklist_item_id=item.id if item else None, status=status,
                         calling_ae=calling_ae[:16], attributes=_json(attributes))
    session.add(step)
    session.flush()
    if item is not None and item.status == "scheduled":
        item.status = "in_progress"
        order = session.get(Order, item.order_id)
        if order.status == "placed":
            orders.start(session, actor, order, machine_code=calling_ae or None)
    audit.record(session, actor, "pacs.mpps.create", step,
                 {"status": status, "accession_number": item.accession_number if item else None,
                  "calling_ae": calling_ae})
    return step


def mpps_set(session: Session, actor: Actor, sop_uid: str, modifications: Dataset) -> PerformedStep:
    step = session.scalar(select(PerformedStep).where(PerformedStep.sop_instance_uid == sop_uid).with_for_update())
    if step is None:
        raise MppsError(NO_SUCH_INSTANCE, "no such MPPS instance")
    if step.status != "IN PROGRESS":
        raise MppsError(MAY_NO_LONGER_BE_UPDATED, f"MPPS is already {step.status}")
    status = _item(modifications, "PerformedProcedureStepStatus") or step.status
    if status not in ("IN PROGRESS", "COMPLETED", "DISCONTINUED"):
        raise MppsError(INVALID_VALUE, "bad PerformedProcedureStepStatus")
    merged = pydicom.Dataset.from_json(step.attributes)
    merged.update(modifications)
    step.attributes, step.status, step.updated_at = _json(merged), status, utcnow()
    order_action = None
    if step.worklist_item_id is not None and status != "IN PROGRESS":
        item = session.get(WorklistItem, step.worklist_item_id)
        if item.status in OPEN_STATUSES:
            item.status = "completed" if status == "COMPLETED" else "discontinued"
            if status == "DISCONTINUED":
                order_action = _withdraw_order(session, actor, session.get(Order, item.order_id), merged)
    session.flush()
    audit.record(session, actor, "pacs.mpps.set", step, {"status": status, "order_action": order_action})
    return step


def _withdraw_order(session: Session, actor: Actor, order: Order, performed: Dataset) -> str | None:
    """A discontinued step ends its started order: reversed (billing credits it) with the modality's
    discontinuation reason. N-CREATE started the order, so there is nothing to cancel."""
    reason = "MPPS DISCONTINUED"
    for code in performed.get("PerformedProcedureStepDiscontinuationReasonCodeSequence", []):
        meaning = _item(code, "CodeMeaning")
        if meaning:
            reason = f"{reason}: {meaning}"
            break
    if order.status == "in_progress":
        orders.reverse(session, actor, order, reason)
        return "reverse"
    return None

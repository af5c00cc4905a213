"""Encounters: open a visit or stay, move it through its statuses, record diagnoses, cancel with a reason."""

from __future__ import annotations

from datetime import date, datetime

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit, events
from core.audit import Actor
from core.db import utcnow
from his import catalog
from his.counters import next_value
from his.models.encounters import ENCOUNTER_KINDS, Diagnosis, Encounter
from his.models.org import Room, Staff
from his.models.patients import Patient
from his.patients import current_card, register_reference

# Which status may follow which (cancel is separate: any open encounter may be cancelled).
TRANSITIONS = {
    "registered": {"in_progress", "admitted"},
    "in_progress": {"finished", "admitted"},
    "admitted": {"discharged"},
}
OPEN_STATUSES = ("registered", "in_progress", "admitted")


class EncounterError(ValueError):
    def __init__(self, code: str, field_name: str | None, message):
        super().__init__(code)
        self.code, self.field, self.message = code, field_name, message

    def __str__(self) -> str:
        return str(self.message)


def _new_code(session: Session, day: date) -> str:
    """The episode link key (MA_LK): yymmdd + a 9-digit number (261201000000042); never reused."""
    return f"{day:%y%m%d}{next_value(session, 'encounter_code'):09d}"


def open_encounter(session: Session, actor: Actor, patient: Patient, *, kind: str, day: date,
                   room: Room | None = None, doctor: Staff | None = None, reason: str | None = None,
                   insured: bool = False, bhyt_route: str | None = None, referral_from: str | None = None,
                   referral_number: str | None = None) -> Encounter:
    if kind not in ENCOUNTER_KINDS:
        raise EncounterError("bad_kind", "kind", _l("Unknown encounter type."))
    if patient.merged_into_id is not None:
        raise EncounterError("merged_patient", "patient", _l("This record was merged into another patient: "
                                                             "open the visit on the surviving record."))
    card = current_card(session, patient) if insured else None
    if insured and card is None:
        raise EncounterError("no_card", "insured", _l("The patient has no BHYT card on record."))
    emergency = kind == "emergency"
    encounter = Encounter(code=_new_code(session, day), patient_id=patient.id, kind=kind,
                          status="admitted" if kind == "inpatient" else "registered",
                          department_id=room.department_id if room else None, room_id=room.id if room else None,
                          doctor_id=doctor.id if doctor else None, reason=reason, insured=insured,
                          bhyt_card_id=card.id if card else None,
                          bhyt_route=("emergency" if emergency else bhyt_route or "correct") if insured else None,
                          referral_from=referral_from, referral_number=referral_number, is_emergency=emergency,
                          created_by=actor.id)
    session.add(encounter)
    session.flush()
    audit.record(session, actor, "encounter.open", encounter,
                 {"code": encounter.code, "patient_id": patient.id, "kind": kind, "room": room.code if room else None})
    events.emit(session, "his.encounter.opened", {"encounter_id": encounter.id, "patient_id": patient.id,
                                                  "kind": kind, "insured": insured}, actor=actor)
    return encounter


def open_today(session: Session, patient: Patient, room: Room, since: datetime) -> Encounter | None:
    """The patient's open encounter in this room started since `since` (the start of the local day)."""
    return session.scalar(select(Encounter).where(Encounter.patient_id == patient.id, Encounter.room_id == room.id,
                                                  Encounter.status.in_(OPEN_STATUSES),
                                                  Encounter.started_at >= since)
                          .order_by(Encounter.id.desc()).limit(1))


def set_status(session: Session, actor: Actor, encounter: Encounter, status: str) -> None:
    if status not in TRANSITIONS.get(encounter.status, ()):
        raise EncounterError("bad_transition", "status",
                             _l("An encounter that is «%(now)s» cannot become «%(next)s».",
                                now=encounter.status, next=status))
    previous, encounter.status = encounter.status, status
    if status in ("finished", "discharged"):
        encounter.ended_at = utcnow()
    session.flush()
    audit.record(session, actor, "encounter.status", encounter, {"from": previous, "to": status})
    events.emit(session, f"his.encounter.{status}", {"encounter_id": encounter.id}, actor=actor)


def cancel(session: Session, actor: Actor, encounter: Encounter, reason: str) -> None:
    if encounter.status not in OPEN_STATUSES:
        raise EncounterError("not_open", "status", _l("Only an open encounter can be cancelled."))
    if not (reason or "").strip():
        raise EncounterError("reason_required", "reason", _l("Give the reason for the cancellation."))
    encounter.status, encounter.cancelled_at, encounter.cancelled_by = "cancelled", utcnow(), actor.id
    encounter.cancel_reason = reason.strip()
    session.flush()
    audit.record(session, actor, "encounter.cancel", encounter, {"reason": encounter.cancel_reason})
    events.emit(session, "his.encounter.cancelled", {"encounter_id": encounter.id}, actor=actor)


def add_diagnosis(session: Session, actor: Actor, encounter: Encounter, code: str, *, position: str,
                  text: str | None = None, on: date) -> tuple[Diagnosis, list]:
    """Record an ICD-10 diagnosis after checking it against the catalogue's rules for that position
    (catalog.CatalogError names what is wrong); returns it with the warnings that do not block.

    A new principal diagnosis replaces (cancels) the previous principal one.
    """
    entry = catalog.resolve_icd10(session, code, on=on, position=position)
    warnings = catalog.icd10_warnings(entry, position=position, sex=encounter.patient.sex)
    if encounter.status == "cancelled":
        raise EncounterError("cancelled", None, _l("This encounter was cancelled."))
    now = utcnow()
    if position == "principal":
        for old in session.scalars(select(Diagnosis).where(Diagnosis.encounter_id == encounter.id,
                                                           Diagnosis.position == "principal",
                                                           Diagnosis.cancelled_at.is_(None))):
            old.cancelled_at, old.cancelled_by = now, actor.id
    row = Diagnosis(encounter_id=encounter.id, position=position, icd10_code=entry.code,
                    text=text or entry.name_vi, recorded_by=actor.id)
    session.add(row)
    session.flush()
    audit.record(session, actor, "encounter.diagnosis_add", encounter,
                 {"code": entry.code, "position": position, "diagnosis_id": row.id})
    return row, warnings


def remove_diagnosis(session: Session, actor: Actor, diagnosis: Diagnosis) -> None:
    diagnosis.cancelled_at, diagnosis.cancelled_by = utcnow(), actor.id
    session.flush()
    audit.record(session, actor, "encounter.diagnosis_cancel", ("encounters", diagnosis.encounter_id),
                 {"code": diagnosis.icd10_code, "diagnosis_id": diagnosis.id})


register_reference(Encounter.patient_id)

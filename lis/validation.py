"""The result workflow: preliminary → technically validated (the technician checks the run) →
medically validated and released (a lab physician signs) → in the record.

Release makes a report (a snapshot of what was released) and tells the rest of the hospital
(`lis.report.released`); each critical value raises a notification to the ordering doctor, who
must acknowledge it (`lis.result.critical`). A correction after release makes a new version that
goes through the same steps and a new report.
"""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit, events
from core.audit import Actor
from core.db import utcnow
from core.models import User
from his import orders as his_orders
from his.models.orders import Order
from his.models.org import Staff
from his.patients import register_reference
from lis.models import CriticalAlert, Report, Result, Specimen
from lis.results import current_of
from lis.specimens import local_text


class ValidationError(ValueError):
    def __init__(self, code: str, message):
        super().__init__(code)
        self.code, self.message = code, message

    def __str__(self) -> str:
        return str(self.message)


def display_name(session: Session, actor: Actor) -> str:
    user = session.get(User, actor.id) if actor.id is not None else None
    return user.full_name if user is not None and user.full_name else actor.name


def validate_technical(session: Session, actor: Actor, specimen: Specimen,
                       result_ids: list[int] | None = None) -> list[Result]:
    """Confirm the analyser's final values (all waiting ones, or those chosen).

    The specimen row is locked first: a second click, or a new version arriving from the listener,
    waits for this transaction and then sees what it did."""
    specimen = lock(session, specimen)
    waiting = [r for r in current_of(session, specimen) if r.stage == "preliminary"
               and (result_ids is None or r.id in result_ids)]
    if not waiting:
        raise ValidationError("nothing_to_validate", _l("No result of this specimen is waiting for technical "
                                                        "validation."))
    unfinished = [r.test.code for r in waiting if r.result_status == "P"]
    if unfinished:
        raise ValidationError("preliminary", _l("The analyser sent only a preliminary value for %(codes)s: wait "
                                                "for the final result.", codes=", ".join(unfinished)))
    now = utcnow()
    for row in waiting:
        row.stage, row.technical_by, row.technical_at = "technically_validated", actor.name, now
    session.flush()
    audit.record(session, actor, "lis.result.validate_technical", specimen,
                 {"barcode": specimen.barcode, "patient_id": specimen.patient_id, "results": [r.id for r in waiting]})
    return waiting


def _released_at(session: Session, specimen: Specimen) -> str:
    last = session.scalar(select(Report.released_at).where(Report.specimen_id == specimen.id)
                          .order_by(Report.id.desc()).limit(1))
    return local_text(last)


def _event_row(row: Result) -> dict:
    return {"code": row.test.code, "name": row.test.name, "value": row.value, "unit": row.unit, "flag": row.flag,
            "reference_range": row.reference_range, "status": row.result_status}


def lock(session: Session, specimen: Specimen) -> Specimen:
    """The specimen row FOR UPDATE, reloaded: validations and releases of one specimen run one after the other."""
    return session.get(Specimen, specimen.id, with_for_update=True, populate_existing=True)


def release(session: Session, actor: Actor, specimen: Specimen) -> Report:
    """The lab physician's signature: every requested test has a final, technically validated result.

    The specimen is locked and its results read again after the lock, so two physicians (or a
    double click) release once, and a version the listener adds meanwhile is not released unseen."""
    specimen = lock(session, specimen)
    current = current_of(session, specimen)
    if not current:
        raise ValidationError("no_results", _l("This specimen has no result yet."))
    fresh = [r for r in current if r.stage == "technically_validated"]
    if not fresh and all(r.stage == "released" for r in current):
        raise ValidationError("already_released", _l("These results have already been released (report of "
                                                     "%(at)s).", at=_released_at(session, specimen)))
    pending = [r.test.code for r in current if r.stage == "preliminary"]
    if pending:
        raise ValidationError("not_validated", _l("Technical validation is missing for %(codes)s.",
                                                  codes=", ".join(pending)))
    resulted = {r.test_id for r in current if r.result_status != "P"}
    missing = [f"{r.test.name} ({r.test.code})" for r in specimen.requests if r.test_id not in resulted]
    if missing:
        raise ValidationError("incomplete", _l("These requested tests have no final result yet: %(tests)s. "
                                               "Release the report when every result is in.",
                                               tests=", ".join(missing)))
    now, name = utcnow(), display_name(session, actor)
    for row in fresh:
        row.stage, row.medical_by, row.medical_at = "medically_validated", actor.name, now
    session.flush()
    report = Report(specimen_id=specimen.id, encounter_id=specimen.encounter_id, released_at=now, released_by=name,
                    released_by_id=actor.id, content={"results": [_event_row(r) | {"result_id": r.id,
                                                                                   "critical": r.critical}
                                                                  for r in current]})
    session.add(report)
    session.flush()
    for row in fresh:
        row.stage, row.report_id = "released", report.id
    specimen.status = "released"
    session.flush()
    audit.record(session, actor, "lis.report.release", report,
                 {"barcode": specimen.barcode, "patient_id": specimen.patient_id, "results": [r.id for r in fresh]})
    order = session.get(Order, specimen.order_id)
    events.emit(session, "lis.report.released", {
        "encounter_id": specimen.encounter_id, "patient_id": specimen.patient_id, "order_id": specimen.order_id,
        "report_id": report.id, "specimen_barcode": specimen.barcode, "released_at": now.isoformat(),
        "released_by": name, "released_by_id": actor.id, "results": [_event_row(r) for r in current]}, actor=actor)
    for row in fresh:
        if row.critical:
            _raise_alert(session, actor, specimen, order, row)
    _complete_order(session, actor, order)
    return report


def _raise_alert(session: Session, actor: Actor, specimen: Specimen, order: Order, row: Result) -> None:
    doctor = session.get(Staff, order.orderer_id) if order.orderer_id else None
    alert = CriticalAlert(result_id=row.id, encounter_id=specimen.encounter_id, patient_id=specimen.patient_id,
                          doctor_user_id=doctor.user_id if doctor is not None else order.ordered_by)
    session.add(alert)
    session.flush()
    audit.record(session, actor, "lis.critical.raise", alert,
                 {"patient_id": specimen.patient_id, "result_id": row.id, "code": row.test.code, "value": row.value,
                  "doctor_user_id": alert.doctor_user_id})
    events.emit(session, "lis.result.critical", {
        "encounter_id": specimen.encounter_id, "patient_id": specimen.patient_id, "order_id": specimen.order_id,
        "result_id": row.id, "code": row.test.code, "name": row.test.name, "value": row.value, "unit": row.unit},
        actor=actor)


def _complete_order(session: Session, actor: Actor, order: Order) -> None:
    specimens = session.scalars(select(Specimen).where(Specimen.order_id == order.id)).all()
    if order.status in ("placed", "in_progress") and all(s.status in ("released", "rejected") for s in specimens) \
            and any(s.status == "released" for s in specimens):
        his_orders.complete(session, actor, order)


def acknowledge(session: Session, actor: Actor, alert: CriticalAlert, note: str | None = None) -> CriticalAlert:
    """The doctor confirms the critical value reached them. The alert row is locked, so a second
    acknowledgement (another doctor, a double click) finds it done and changes nothing. Anyone but the
    ordering doctor acknowledges on that doctor's behalf, and the audit says so."""
    alert = session.get(CriticalAlert, alert.id, with_for_update={"of": CriticalAlert}, populate_existing=True)
    if alert.acknowledged_at is not None:
        raise ValidationError("already_acknowledged", _l("This critical value was already acknowledged."))
    alert.acknowledged_at, alert.acknowledged_by, alert.acknowledged_by_id = utcnow(), actor.name, actor.id
    alert.note = (note or "").strip() or None
    session.flush()
    detail = {"patient_id": alert.patient_id, "result_id": alert.result_id, "note": alert.note}
    if alert.doctor_user_id is not None and actor.id != alert.doctor_user_id:
        detail["on_behalf_of_user_id"] = alert.doctor_user_id
    audit.record(session, actor, "lis.critical.acknowledge", alert, detail)
    return alert


def open_alerts(session: Session, *, user_id: int | None = None, encounter_id: int | None = None):
    stmt = select(CriticalAlert).where(CriticalAlert.acknowledged_at.is_(None))
    if user_id is not None:
        stmt = stmt.where(CriticalAlert.doctor_user_id == user_id)
    if encounter_id is not None:
        stmt = stmt.where(CriticalAlert.encounter_id == encounter_id)
    return list(session.scalars(stmt.order_by(CriticalAlert.created_at)))


def released_results(session: Session, encounter_id: int) -> list[tuple[Specimen, list[Result]]]:
    """What the encounter page shows: the last released value of each test of each specimen. A released
    value stays shown (its `superseded_at` set) while a correction of it waits for validation."""
    found = []
    for specimen in session.scalars(select(Specimen).where(Specimen.encounter_id == encounter_id)
                                    .order_by(Specimen.created_at, Specimen.id)):
        last_released: dict[int, Result] = {}
        for row in session.scalars(select(Result).where(Result.specimen_id == specimen.id,
                                                        Result.stage == "released").order_by(Result.version.desc())):
            last_released.setdefault(row.test_id, row)
        rows = [last_released[r.test_id] for r in current_of(session, specimen) if r.test_id in last_released]
        if rows:
            found.append((specimen, rows))
    return found


register_reference(CriticalAlert.patient_id)

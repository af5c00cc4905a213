"""Admission, transfer and discharge (ADT): who lies in which bed of which department since when.

Admitting an outpatient or emergency visit turns that same encounter into the inpatient stay
(set_status → "admitted", kind → "inpatient"): his.md §3 keeps one episode from reception to
discharge, and QĐ 130 XML1 carries one MA_LK with NGAY_VAO (the visit's start) and NGAY_VAO_NOI_TRU
(our admitted_at), so the exam and the stay are billed as one episode. The kind it had before is
kept in Admission.source. A patient admitted directly (no visit yet) gets a new inpatient encounter.

Every operation runs inside a savepoint: a refusal — including the database's own refusal when
two requests take the same bed at once — leaves nothing half-saved in the caller's session.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import audit, events
from core.audit import Actor
from core.db import utcnow
from his import catalog, encounters
from his.catalog import CatalogError
from his.encounters import EncounterError
from his.models.admission import DISCHARGE_TYPES, OUTCOMES, Admission, BedStay, DepartmentStay
from his.models.encounters import Encounter
from his.models.org import Bed, Department, Room
from his.models.patients import Patient

ADMITTABLE_KINDS = ("outpatient", "emergency", "day_treatment")
# A clock a few minutes fast on the ward PC should not block the nurse; an hour ahead is a typo.
FUTURE_TOLERANCE = timedelta(minutes=10)
# Which local day a death's ICD-10 list is taken from when the caller does not say (his.md: episode end date).
DEFAULT_TZ = ZoneInfo("Asia/Ho_Chi_Minh")


class AdmissionError(ValueError):
    def __init__(self, code: str, field_name: str | None, message):
        super().__init__(code)
        self.code, self.field, self.message = code, field_name, message

    def __str__(self) -> str:
        return str(self.message)


# --- reading ---------------------------------------------------------------------------------------

def admission_of(session: Session, encounter: Encounter, *, lock: bool = False) -> Admission | None:
    stmt = select(Admission).where(Admission.encounter_id == encounter.id)
    if lock:  # serialises transfers and discharges of one patient
        stmt = stmt.with_for_update(of=Admission).execution_options(populate_existing=True)
    return session.scalar(stmt)


def current_bed_stay(session: Session, encounter: Encounter) -> BedStay | None:
    return session.scalar(select(BedStay).where(BedStay.encounter_id == encounter.id, BedStay.ended_at.is_(None))
                          .execution_options(populate_existing=True))


def current_department_stay(session: Session, encounter: Encounter) -> DepartmentStay | None:
    return session.scalar(select(DepartmentStay).where(DepartmentStay.encounter_id == encounter.id,
                                                       DepartmentStay.ended_at.is_(None))
                          .execution_options(populate_existing=True))


def current_admission_of_patient(session: Session, patient: Patient) -> Admission | None:
    return session.scalar(select(Admission).join(Encounter, Encounter.id == Admission.encounter_id)
                          .where(Encounter.patient_id == patient.id, Admission.discharged_at.is_(None),
                                 Admission.cancelled_at.is_(None)).limit(1))


def history(session: Session, encounter: Encounter) -> tuple[list[DepartmentStay], list[BedStay]]:
    """The department list and the bed assignments of an episode, oldest first."""
    depts = session.scalars(select(DepartmentStay).where(DepartmentStay.encounter_id == encounter.id)
                            .order_by(DepartmentStay.started_at, DepartmentStay.id)).all()
    beds = session.scalars(select(BedStay).where(BedStay.encounter_id == encounter.id)
                           .order_by(BedStay.started_at, BedStay.id)).all()
    return list(depts), list(beds)


@dataclass
class BedView:
    bed: Bed
    stay: BedStay | None = None
    encounter: Encounter | None = None
    admission: Admission | None = None


@dataclass
class RoomView:
    room: Room
    beds: list[BedView] = field(default_factory=list)

    @property
    def free(self) -> int:
        return sum(1 for b in self.beds if b.stay is None and b.bed.active)


@dataclass
class Board:
    department: Department
    rooms: list[RoomView]
    # Admitted to the department but waiting for a bed (or between beds).
    unbedded: list[tuple[DepartmentStay, Encounter, Admission]]

    @property
    def occupied(self) -> int:
        return sum(1 for r in self.rooms for b in r.beds if b.stay is not None)

    @property
    def free(self) -> int:
        return sum(r.free for r in self.rooms)


def board(session: Session, actor: Actor, department: Department) -> Board:
    """The department's rooms × beds with the current occupants; the read of their names is audited."""
    beds = session.scalars(select(Bed).join(Room, Room.id == Bed.room_id)
                           .where(Room.department_id == department.id, Room.active)
                           .order_by(Room.code, Bed.code)).all()
    stays = {s.bed_id: s for s in session.scalars(
        select(BedStay).where(BedStay.bed_id.in_([b.id for b in beds]), BedStay.ended_at.is_(None)))}
    encounter_ids = [s.encounter_id for s in stays.values()]
    unbedded_stays = session.scalars(
        select(DepartmentStay).where(DepartmentStay.department_id == department.id, DepartmentStay.ended_at.is_(None),
                                     ~select(BedStay.id).where(BedStay.encounter_id == DepartmentStay.encounter_id,
                                                               BedStay.ended_at.is_(None)).exists())
        .order_by(DepartmentStay.started_at)).all()
    encounter_ids += [s.encounter_id for s in unbedded_stays]
    by_id = {e.id: e for e in session.scalars(select(Encounter).where(Encounter.id.in_(encounter_ids)))}
    admissions = {a.encounter_id: a for a in session.scalars(
        select(Admission).where(Admission.encounter_id.in_(encounter_ids)))}
    rooms: dict[int, RoomView] = {}
    for bed in beds:
        stay = stays.get(bed.id)
        rooms.setdefault(bed.room_id, RoomView(bed.room)).beds.append(
            BedView(bed, stay, by_id.get(stay.encounter_id) if stay else None,
                    admissions.get(stay.encounter_id) if stay else None))
    result = Board(department, list(rooms.values()),
                   [(s, by_id[s.encounter_id], admissions.get(s.encounter_id)) for s in unbedded_stays])
    audit.record(session, actor, "adt.board_view", department,
                 {"patients": sorted(e.patient_id for e in by_id.values())})
    return result


def free_beds(session: Session, department: Department | None = None) -> list[Bed]:
    stmt = (select(Bed).join(Room, Room.id == Bed.room_id)
            .where(Bed.active, Room.active,
                   ~select(BedStay.id).where(BedStay.bed_id == Bed.id, BedStay.ended_at.is_(None)).exists())
            .order_by(Room.code, Bed.code))
    if department is not None:
        stmt = stmt.where(Room.department_id == department.id)
    return list(session.scalars(stmt))


# --- checks ----------------------------------------------------------------------------------------

def _check_time(at: datetime, earliest: datetime | None, code: str, message) -> None:
    if at.tzinfo is None:
        raise ValueError("ADT times must be timezone-aware")
    if at > utcnow() + FUTURE_TOLERANCE:
        raise AdmissionError("time_in_future", "at", _l("The time lies in the future."))
    if earliest is not None and at < earliest:
        raise AdmissionError(code, "at", message)


def _check_department(department: Department) -> None:
    if not department.active:
        raise AdmissionError("department_inactive", "department",
                             _l("Department «%(name)s» is no longer in use.", name=department.name))


def _check_bed(session: Session, bed: Bed, department: Department | None, field_name: str) -> None:
    if not bed.active or not bed.room.active:
        raise AdmissionError("bed_inactive", field_name, _l("Bed %(bed)s is out of service.", bed=bed.code))
    if department is not None and bed.room.department_id != department.id:
        raise AdmissionError("bed_wrong_department", field_name,
                             _l("Bed %(bed)s belongs to another department (%(dept)s).", bed=bed.code,
                                dept=bed.room.department.name))
    _ensure_free(session, bed, field_name)


def _ensure_free(session: Session, bed: Bed, field_name: str) -> None:
    """The friendly early answer; the partial unique index decides when two requests race past it."""
    taken = session.scalar(select(BedStay.id).where(BedStay.bed_id == bed.id, BedStay.ended_at.is_(None)))
    if taken is not None:
        raise _bed_taken(bed, field_name)


def _bed_taken(bed: Bed, field_name: str) -> AdmissionError:
    return AdmissionError("bed_taken", field_name,
                          _l("Bed %(bed)s is already taken by another patient: choose a free bed.", bed=bed.code))


def _constraint_of(exc: IntegrityError) -> str:
    """The violated index's name (PostgreSQL), or SQLite's 'table.column' wording."""
    diag = getattr(exc.orig, "diag", None)
    return getattr(diag, "constraint_name", None) or str(exc.orig)


def _integrity(exc: IntegrityError, bed: Bed | None, field_name: str) -> AdmissionError:
    name = _constraint_of(exc)
    if bed is not None and ("uq_bed_stays_bed_current" in name or "bed_stays.bed_id" in name):
        return _bed_taken(bed, field_name)
    if "admissions" in name or "encounter" in name:
        # Another request admitted, moved or discharged this patient at the same moment.
        return AdmissionError("changed_meanwhile", None, _l("Someone else changed this patient's stay at the "
                                                            "same moment: reload the page and check."))
    raise exc


def _end(stay: BedStay | DepartmentStay | None, actor: Actor, at: datetime, reason: str) -> None:
    if stay is not None:
        stay.ended_at, stay.ended_by, stay.end_reason = at, actor.id, reason


def _bed_facts(bed: Bed | None) -> dict:
    if bed is None:
        return {"bed_id": None, "bed_code": None, "bed_bhyt_code": None, "room_id": None}
    return {"bed_id": bed.id, "bed_code": bed.code, "bed_bhyt_code": bed.bhyt_code, "room_id": bed.room_id}


def _dept_facts(department: Department) -> dict:
    return {"department_id": department.id, "department_code": department.code,
            "department_bhyt_code": department.bhyt_code}


# --- admit ------------------------------------------------------------------------------------------

def admit(session: Session, actor: Actor, subject: Patient | Encounter, *, department: Department,
          bed: Bed | None, reason: str, at: datetime, day: date | None = None, insured: bool = False) -> Admission:
    """Admit a patient to a department and (usually) a bed.

    subject: an open outpatient/emergency/day-treatment encounter (it becomes the inpatient stay), an
    inpatient encounter not yet placed, or a patient admitted directly (a new inpatient encounter is
    opened; `day` is the local day that numbers its code, `insured` whether it uses the BHYT card).
    bed None: admitted to the department, waiting for a bed (shown on the board).
    """
    try:
        with session.begin_nested():
            return _admit(session, actor, subject, department, bed, reason, at, day, insured)
    except IntegrityError as exc:
        raise _integrity(exc, bed, "bed") from None
    except EncounterError as exc:
        raise AdmissionError(exc.code, exc.field if exc.field != "status" else "encounter", exc.message) from None


def _admit(session, actor, subject, department, bed, reason, at, day, insured) -> Admission:
    reason = (reason or "").strip()
    if not reason:
        raise AdmissionError("reason_required", "reason", _l("Give the reason for admission."))
    _check_department(department)
    patient = subject.patient if isinstance(subject, Encounter) else subject
    # One admission per patient at a time: the patient row lock serialises two admissions of one person.
    session.execute(select(Patient.id).where(Patient.id == patient.id).with_for_update())
    if current_admission_of_patient(session, patient) is not None:
        raise AdmissionError("already_admitted", "patient",
                             _l("%(name)s is already admitted: transfer them instead.", name=patient.full_name))
    if isinstance(subject, Encounter):
        encounter = subject
        if encounter.status not in encounters.OPEN_STATUSES:
            raise AdmissionError("encounter_closed", "encounter",
                                 _l("This encounter is closed or cancelled: open a new one to admit the patient."))
        if admission_of(session, encounter) is not None:
            raise AdmissionError("encounter_closed", "encounter",
                                 _l("This encounter was already discharged: open a new one to admit the patient."))
        _check_time(at, encounter.started_at, "time_before_arrival",
                    _l("The admission time is before the patient arrived."))
        if bed is not None:
            _check_bed(session, bed, department, "bed")
        if encounter.kind in ADMITTABLE_KINDS:
            source = encounter.kind
            encounters.set_status(session, actor, encounter, "admitted")
            encounter.kind = "inpatient"
        elif encounter.kind == "inpatient" and encounter.status == "admitted":
            source = "direct"
        else:
            raise AdmissionError("encounter_closed", "encounter", _l("This encounter cannot be admitted."))
    else:
        _check_time(at, None, "", "")
        if bed is not None:
            _check_bed(session, bed, department, "bed")
        if day is None:
            raise ValueError("admitting a patient directly needs the local day that numbers the encounter")
        encounter = encounters.open_encounter(session, actor, patient, kind="inpatient", day=day,
                                              room=bed.room if bed else None, reason=reason, insured=insured)
        source = "direct"
    encounter.department, encounter.room = department, bed.room if bed else None
    admission = Admission(encounter_id=encounter.id, source=source, department_id=department.id, admitted_at=at,
                          admitted_by=actor.id, reason=reason)
    dept_stay = DepartmentStay(encounter_id=encounter.id, department_id=department.id, started_at=at,
                               started_by=actor.id)
    session.add_all([admission, dept_stay])
    bed_stay = None
    if bed is not None:
        bed_stay = BedStay(encounter_id=encounter.id, bed_id=bed.id, started_at=at, started_by=actor.id)
        session.add(bed_stay)
    session.flush()
    audit.record(session, actor, "adt.admit", encounter,
                 {"patient_id": patient.id, "admission_id": admission.id, "source": source,
                  "department": department.code, "bed": bed.code if bed else None, "at": at.isoformat()})
    events.emit(session, "his.patient.admitted", {
        "encounter_id": encounter.id, "encounter_code": encounter.code, "patient_id": patient.id,
        "admission_id": admission.id, "source": source, "at": at.isoformat(), "insured": encounter.insured,
        "bed_stay_id": bed_stay.id if bed_stay else None, **_dept_facts(department), **_bed_facts(bed)}, actor=actor)
    return admission


# --- transfer ---------------------------------------------------------------------------------------

def _current_or_error(session: Session, encounter: Encounter) -> Admission:
    admission = admission_of(session, encounter, lock=True)
    if admission is None or admission.cancelled_at is not None:
        raise AdmissionError("not_admitted", "encounter", _l("This patient is not admitted."))
    if admission.discharged_at is not None:
        raise AdmissionError("already_discharged", "encounter", _l("This patient was already discharged."))
    return admission


def transfer(session: Session, actor: Actor, encounter: Encounter, *, at: datetime, to_bed: Bed | None = None,
             to_department: Department | None = None, reason: str | None = None) -> tuple[DepartmentStay,
                                                                                          BedStay | None]:
    """Move an admitted patient to another bed (same or other department) or to another department.

    A bed in another department is a department transfer too; a department without a bed leaves the
    patient waiting for a bed there. Returns the current department stay and bed stay afterwards.
    """
    try:
        with session.begin_nested():
            return _transfer(session, actor, encounter, at, to_bed, to_department, reason)
    except IntegrityError as exc:
        raise _integrity(exc, to_bed, "to_bed") from None


def _transfer(session, actor, encounter, at, to_bed, to_department, reason):
    admission = _current_or_error(session, encounter)
    bed_stay, dept_stay = current_bed_stay(session, encounter), current_department_stay(session, encounter)
    if to_bed is None and to_department is None:
        raise AdmissionError("destination_required", "to_bed", _l("Choose the bed or the department to move to."))
    if to_bed is not None and bed_stay is not None and to_bed.id == bed_stay.bed_id:
        raise AdmissionError("same_bed", "to_bed", _l("The patient already lies in bed %(bed)s.", bed=to_bed.code))
    target = to_department or to_bed.room.department
    if to_bed is None and target.id == dept_stay.department_id:
        raise AdmissionError("same_department", "to_department",
                             _l("The patient is already in %(name)s.", name=target.name))
    _check_department(target)
    if to_bed is not None:
        _check_bed(session, to_bed, target, "to_bed")
    latest = max(s.started_at for s in (bed_stay, dept_stay) if s is not None)
    _check_time(at, latest, "time_before_stay", _l("The time is before the patient arrived in the current bed "
                                                   "or department."))
    from_facts = {**_dept_facts(dept_stay.department), **_bed_facts(bed_stay.bed if bed_stay else None),
                  "bed_stay_id": bed_stay.id if bed_stay else None}
    _end(bed_stay, actor, at, "transfer")
    if target.id != dept_stay.department_id:
        _end(dept_stay, actor, at, "transfer")
        session.flush()  # the old stays end before the new ones begin (the current-stay indexes)
        dept_stay = DepartmentStay(encounter_id=encounter.id, department_id=target.id, started_at=at,
                                   started_by=actor.id)
        session.add(dept_stay)
    session.flush()
    new_bed = None
    if to_bed is not None:
        new_bed = BedStay(encounter_id=encounter.id, bed_id=to_bed.id, started_at=at, started_by=actor.id)
        session.add(new_bed)
    encounter.department, encounter.room = target, to_bed.room if to_bed else None
    session.flush()
    audit.record(session, actor, "adt.transfer", encounter,
                 {"patient_id": encounter.patient_id, "admission_id": admission.id, "at": at.isoformat(),
                  "from_department": from_facts["department_code"], "from_bed": from_facts["bed_code"],
                  "to_department": target.code, "to_bed": to_bed.code if to_bed else None,
                  "reason": (reason or "").strip() or None})
    events.emit(session, "his.patient.transferred", {
        "encounter_id": encounter.id, "encounter_code": encounter.code, "patient_id": encounter.patient_id,
        "admission_id": admission.id, "at": at.isoformat(), "department_changed": target.id != from_facts[
            "department_id"], "from": from_facts,
        "to": {**_dept_facts(target), **_bed_facts(to_bed), "bed_stay_id": new_bed.id if new_bed else None}},
        actor=actor)
    return dept_stay, new_bed


# --- discharge --------------------------------------------------------------------------------------

def discharge(session: Session, actor: Actor, encounter: Encounter, *, discharge_type: str, outcome: str,
              at: datetime, cause_of_death: str | None = None, death_certificate_issued: bool | None = None,
              note: str | None = None, on: date | None = None) -> Admission:
    """End the stay: close the current bed and department stays and the encounter.

    A death needs its cause as an ICD-10 code valid as cause of death on `on` (the local date of
    discharge by default), and whether a death certificate was issued.
    """
    try:
        with session.begin_nested():
            return _discharge(session, actor, encounter, discharge_type, outcome, at, cause_of_death,
                              death_certificate_issued, note, on)
    except IntegrityError as exc:
        raise _integrity(exc, None, "encounter") from None
    except EncounterError as exc:
        raise AdmissionError(exc.code, "encounter", exc.message) from None


def _discharge(session, actor, encounter, discharge_type, outcome, at, cause_of_death, certificate, note, on):
    admission = _current_or_error(session, encounter)
    if discharge_type not in DISCHARGE_TYPES:
        raise AdmissionError("bad_discharge_type", "discharge_type", _l("Choose the type of discharge."))
    if outcome not in OUTCOMES:
        raise AdmissionError("bad_outcome", "outcome", _l("Choose the result of treatment."))
    code = None
    cause_of_death = (cause_of_death or "").strip()
    if outcome == "died":
        if not cause_of_death:
            raise AdmissionError("cause_of_death_required", "cause_of_death",
                                 _l("Give the cause of death as an ICD-10 code."))
        try:
            code = catalog.resolve_icd10(session, cause_of_death, position="cause_of_death",
                                         on=on or at.astimezone(DEFAULT_TZ).date()).code
        except CatalogError as exc:
            raise AdmissionError(exc.code, "cause_of_death", exc.message) from None
    elif cause_of_death:
        raise AdmissionError("cause_of_death_not_died", "cause_of_death",
                             _l("A cause of death is recorded only when the patient died."))
    bed_stay, dept_stay = current_bed_stay(session, encounter), current_department_stay(session, encounter)
    latest = max([admission.admitted_at] + [s.started_at for s in (bed_stay, dept_stay) if s is not None])
    _check_time(at, latest, "time_before_stay",
                _l("The time is before the patient arrived in the current bed or department."))
    _end(bed_stay, actor, at, "discharge")
    _end(dept_stay, actor, at, "discharge")
    admission.discharged_at, admission.discharged_by = at, actor.id
    admission.discharge_type, admission.outcome, admission.cause_of_death_code = discharge_type, outcome, code
    admission.death_certificate_issued = certificate if outcome == "died" else None
    admission.discharge_note = (note or "").strip() or None
    encounters.set_status(session, actor, encounter, "discharged")
    encounter.ended_at = at  # set_status stamps "now"; the ward records when the patient actually left
    session.flush()
    audit.record(session, actor, "adt.discharge", encounter,
                 {"patient_id": encounter.patient_id, "admission_id": admission.id, "at": at.isoformat(),
                  "discharge_type": discharge_type, "outcome": outcome, "cause_of_death": code})
    events.emit(session, "his.patient.discharged", {
        "encounter_id": encounter.id, "encounter_code": encounter.code, "patient_id": encounter.patient_id,
        "admission_id": admission.id, "at": at.isoformat(), "admitted_at": admission.admitted_at.isoformat(),
        "discharge_type": discharge_type, "outcome": outcome, "cause_of_death": code,
        "ended_bed_stay_id": bed_stay.id if bed_stay else None,
        **_dept_facts(dept_stay.department), **_bed_facts(bed_stay.bed if bed_stay else None)}, actor=actor)
    return admission


# --- an admitted encounter cancelled (admitted by mistake) -------------------------------------------

@events.subscribe("his.encounter.cancelled", inline=True)
def _end_stays_of_cancelled_encounter(session: Session, payload: dict) -> None:
    """Free the bed in the same transaction as the cancellation, so no cancelled stay holds a bed."""
    encounter = session.get(Encounter, payload["encounter_id"])
    admission = admission_of(session, encounter) if encounter is not None else None
    if admission is None or not admission.current:
        return
    now, system = utcnow(), Actor.system("adt")
    bed_stay, dept_stay = current_bed_stay(session, encounter), current_department_stay(session, encounter)
    for stay in (bed_stay, dept_stay):
        if stay is not None:
            _end(stay, system, max(now, stay.started_at), "cancelled")
    admission.cancelled_at = now
    session.flush()
    audit.record(session, system, "adt.cancelled_with_encounter", encounter,
                 {"admission_id": admission.id, "bed": bed_stay.bed.code if bed_stay else None})
    events.emit(session, "his.admission.cancelled", {"encounter_id": encounter.id, "admission_id": admission.id,
                                                     "ended_bed_stay_id": bed_stay.id if bed_stay else None})

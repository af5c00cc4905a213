"""The ward: a bed board per department (rooms × beds, who lies where since when, free beds), admit,
transfer and discharge; and the same as JSON under /api/v1."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from marshmallow import Schema, ValidationError, fields
from sqlalchemy import select

from core import audit
from core.db import utcnow
from core.web import NavEntry, add_nav, config, current_actor, db_session
from core.web.api import api_blueprint, register_operation
from core.web.security import require
from his import admission as adt
from his import encounters, patients
from his.admission import AdmissionError
from his.models.admission import DISCHARGE_TYPES, OUTCOMES
from his.models.encounters import Encounter
from his.models.org import Bed, Department, Room
from his.models.patients import Patient
from his.schemas import REQUIRED, PatientOutSchema, error_messages
from his.web._helpers import flag, today

bp = Blueprint("his_admission", __name__, template_folder="../templates")
api = api_blueprint("his_admission_api", __name__)

DISCHARGE_TYPE_LABELS = {"home": _l("Regular discharge"), "referred": _l("Referred to another facility (medical need)"),
                         "absconded": _l("Left without permission"), "at_request": _l("Discharged at own request"),
                         "referred_at_request": _l("Referred to another facility at own request")}
OUTCOME_LABELS = {"cured": _l("Cured"), "improved": _l("Improved"), "unchanged": _l("Unchanged"),
                  "worse": _l("Worse"), "died": _l("Died")}
SOURCE_LABELS = {"outpatient": _l("From the outpatient clinic"), "emergency": _l("From the emergency department"),
                 "day_treatment": _l("From day treatment"), "direct": _l("Direct admission")}
END_REASON_LABELS = {"transfer": _l("Moved on"), "discharge": _l("Discharged"), "cancelled": _l("Cancelled")}
PERMISSION_VIEW, PERMISSION_ACT = "his.encounter.read", "his.adt.manage"


@bp.app_context_processor
def _labels():
    return {"discharge_type_label": lambda c: DISCHARGE_TYPE_LABELS.get(c, c or "—"),
            "outcome_label": lambda c: OUTCOME_LABELS.get(c, c or "—"),
            "admission_source_label": lambda c: SOURCE_LABELS.get(c, c),
            "stay_end_label": lambda c: END_REASON_LABELS.get(c, c or "")}


# --- input --------------------------------------------------------------------------------------------

def parse_time(value: str | None, field_name: str = "at") -> datetime:
    """A time typed on the ward (local: '2026-12-01T08:30' from a datetime input or 'dd/mm/yyyy HH:mm'),
    an ISO time with its offset (the API), or now when blank."""
    text = (value or "").strip()
    if not text:
        return utcnow()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            moment = datetime.strptime(text, "%d/%m/%Y %H:%M")
        except ValueError:
            raise AdmissionError("bad_time", field_name, _l("Write the time as dd/mm/yyyy HH:mm.")) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=config().tz)
    return moment.astimezone(UTC)


def _wards() -> list[Department]:
    """Departments that have beds, for the selector."""
    with_beds = select(Room.department_id).join(Bed, Bed.room_id == Room.id).where(Room.active)
    return list(db_session().scalars(select(Department).where(Department.active, Department.id.in_(with_beds))
                                     .order_by(Department.name)))


def _department_or_404(code: str) -> Department:
    dept = db_session().scalar(select(Department).where(Department.code == code))
    if dept is None:
        abort(404)
    return dept


def _encounter_or_404(encounter_id: int) -> Encounter:
    encounter = db_session().get(Encounter, encounter_id)
    if encounter is None:
        abort(404)
    audit.record(db_session(), current_actor(), "encounter.read", encounter, {"patient_id": encounter.patient_id})
    return encounter


def _bed(bed_id) -> Bed | None:
    return db_session().get(Bed, bed_id) if bed_id else None


def _admittable_encounters(patient: Patient) -> list[Encounter]:
    """The patient's open visits that may become the inpatient stay (newest first)."""
    return list(db_session().scalars(
        select(Encounter).where(Encounter.patient_id == patient.id, Encounter.status.in_(encounters.OPEN_STATUSES),
                                Encounter.kind.in_(adt.ADMITTABLE_KINDS + ("inpatient",)))
        .order_by(Encounter.started_at.desc()).limit(10)))


# --- pages --------------------------------------------------------------------------------------------

@bp.get("/ward")
@require(PERMISSION_VIEW)
def wards():
    departments = _wards()
    if not departments:
        return render_template("his/admission/board.html", departments=[], board=None)
    return redirect(url_for(".board", code=departments[0].code))


@bp.get("/ward/<code>")
@require(PERMISSION_VIEW)
def board(code: str):
    dept = _department_or_404(code)
    view = adt.board(db_session(), current_actor(), dept)
    return render_template("his/admission/board.html", departments=_wards(), board=view)


def _admit_page(dept: Department, status: int = 200, errors: dict | None = None, form: dict | None = None):
    sess, actor = db_session(), current_actor()
    q = request.args.get("q", "").strip()
    results, more = patients.search(sess, actor, q) if q else ([], False)
    patient_id = request.values.get("patient_id", type=int)
    patient = patients.get(sess, actor, patient_id) if patient_id else None
    if patient is not None and patient.merged_into_id is not None:
        patient = None
    return render_template("his/admission/admit.html", department=dept, q=q, results=results, more=more,
                           patient=patient, visits=_admittable_encounters(patient) if patient else [],
                           free_beds=adt.free_beds(sess, dept), errors=errors or {},
                           form=form or {"bed_id": request.args.get("bed_id", type=int)}), status


@bp.get("/ward/<code>/admit")
@require(PERMISSION_ACT)
def admit_form(code: str):
    return _admit_page(_department_or_404(code))


@bp.post("/ward/<code>/admit")
@require(PERMISSION_ACT)
def admit(code: str):
    sess, actor = db_session(), current_actor()
    dept = _department_or_404(code)
    form = request.form
    patient = sess.get(Patient, form.get("patient_id", type=int) or 0)
    if patient is None or patient.merged_into_id is not None:
        abort(404)
    encounter = sess.get(Encounter, form.get("encounter_id", type=int) or 0)
    if encounter is not None and encounter.patient_id != patient.id:
        abort(404)
    try:
        record = adt.admit(sess, actor, encounter or patient, department=dept, bed=_bed(form.get("bed_id", type=int)),
                           reason=form.get("reason", ""), at=parse_time(form.get("at")), day=today(),
                           insured=flag(form, "insured"))
    except AdmissionError as exc:
        sess.rollback()
        return _admit_page(dept, 422, {exc.field or "patient_id": str(exc)}, dict(form))
    sess.commit()
    flash(_("%(name)s was admitted to %(dept)s.", name=patient.full_name, dept=dept.name), "success")
    return redirect(url_for(".board", code=dept.code, _anchor=f"encounter-{record.encounter_id}"))


def _stay_page(encounter: Encounter, status: int = 200, errors: dict | None = None, form: dict | None = None):
    sess = db_session()
    record = adt.admission_of(sess, encounter)
    dept_stays, bed_stays = adt.history(sess, encounter)
    return render_template("his/admission/stay.html", encounter=encounter, admission=record, dept_stays=dept_stays,
                           bed_stays=bed_stays, current_bed=adt.current_bed_stay(sess, encounter),
                           free_beds=adt.free_beds(sess), departments=_wards(), errors=errors or {},
                           form=form or {}, discharge_types=DISCHARGE_TYPES, outcomes=OUTCOMES), status


@bp.get("/ward/stays/<int:encounter_id>")
@require(PERMISSION_VIEW)
def stay(encounter_id: int):
    return _stay_page(_encounter_or_404(encounter_id))


@bp.post("/ward/stays/<int:encounter_id>/transfer")
@require(PERMISSION_ACT)
def transfer(encounter_id: int):
    sess, actor = db_session(), current_actor()
    encounter = _encounter_or_404(encounter_id)
    form = request.form
    to_department = sess.get(Department, form.get("to_department_id", type=int) or 0)
    try:
        _dept_stay, bed_stay = adt.transfer(sess, actor, encounter, at=parse_time(form.get("at")),
                                            to_bed=_bed(form.get("to_bed_id", type=int)), to_department=to_department,
                                            reason=form.get("reason"))
    except AdmissionError as exc:
        sess.rollback()
        return _stay_page(encounter, 422, {exc.field or "to_bed": str(exc)}, dict(form))
    sess.commit()
    flash(_("%(name)s was moved to %(where)s.", name=encounter.patient.full_name,
            where=bed_stay.bed.code if bed_stay else encounter.department.name), "success")
    return redirect(url_for(".board", code=encounter.department.code, _anchor=f"encounter-{encounter.id}"))


@bp.post("/ward/stays/<int:encounter_id>/discharge")
@require(PERMISSION_ACT)
def discharge(encounter_id: int):
    sess, actor = db_session(), current_actor()
    encounter = _encounter_or_404(encounter_id)
    form = request.form
    dept_code = encounter.department.code if encounter.department else None
    try:
        at = parse_time(form.get("at"))
        adt.discharge(sess, actor, encounter, discharge_type=form.get("discharge_type", ""),
                      outcome=form.get("outcome", ""), at=at, cause_of_death=form.get("cause_of_death"),
                      death_certificate_issued=flag(form, "death_certificate_issued"), note=form.get("note"),
                      on=at.astimezone(config().tz).date())
    except AdmissionError as exc:
        sess.rollback()
        return _stay_page(encounter, 422, {exc.field or "discharge_type": str(exc)}, dict(form))
    sess.commit()
    flash(_("%(name)s was discharged.", name=encounter.patient.full_name), "success")
    return redirect(url_for(".board", code=dept_code) if dept_code else url_for(".wards"))


@bp.record_once
def _nav(state) -> None:
    add_nav(state.app, NavEntry("his_admission.wards", _l("Bed board"), PERMISSION_VIEW, _l("Inpatient"), 250))


# --- JSON API ----------------------------------------------------------------------------------------

class BedStayOutSchema(Schema):
    id = fields.Integer()
    encounter_id = fields.Integer()
    bed = fields.Function(lambda s: s.bed.code)
    room = fields.Function(lambda s: s.bed.room.code)
    department = fields.Function(lambda s: s.bed.room.department.code)
    started_at = fields.DateTime()
    ended_at = fields.DateTime(allow_none=True)
    end_reason = fields.String(allow_none=True)


class DepartmentStayOutSchema(Schema):
    id = fields.Integer()
    department = fields.Function(lambda s: s.department.code)
    started_at = fields.DateTime()
    ended_at = fields.DateTime(allow_none=True)
    end_reason = fields.String(allow_none=True)


class AdmissionOutSchema(Schema):
    id = fields.Integer()
    encounter_id = fields.Integer()
    encounter_code = fields.Function(lambda a: a.encounter.code)
    patient = fields.Function(lambda a: PatientOutSchema().dump(a.encounter.patient))
    source = fields.String()
    department = fields.Function(lambda a: a.department.code)
    admitted_at = fields.DateTime()
    reason = fields.String()
    discharged_at = fields.DateTime(allow_none=True)
    discharge_type = fields.String(allow_none=True)
    outcome = fields.String(allow_none=True)
    cause_of_death_code = fields.String(allow_none=True)
    death_certificate_issued = fields.Boolean(allow_none=True)


class StayOutSchema(Schema):
    admission = fields.Nested(AdmissionOutSchema, allow_none=True)
    departments = fields.List(fields.Nested(DepartmentStayOutSchema))
    beds = fields.List(fields.Nested(BedStayOutSchema))


class BoardBedSchema(Schema):
    bed = fields.Function(lambda v: v.bed.code)
    active = fields.Function(lambda v: v.bed.active)
    free = fields.Function(lambda v: v.stay is None)
    encounter_id = fields.Function(lambda v: v.encounter.id if v.encounter else None)
    patient_code = fields.Function(lambda v: v.encounter.patient.code if v.encounter else None)
    patient_name = fields.Function(lambda v: v.encounter.patient.full_name if v.encounter else None)
    in_bed_since = fields.Function(lambda v: v.stay.started_at.isoformat() if v.stay else None)
    admitted_at = fields.Function(lambda v: v.admission.admitted_at.isoformat() if v.admission else None)


class BoardRoomSchema(Schema):
    room = fields.Function(lambda r: r.room.code)
    name = fields.Function(lambda r: r.room.name)
    free = fields.Integer()
    beds = fields.List(fields.Nested(BoardBedSchema))


class BoardOutSchema(Schema):
    department = fields.Function(lambda b: b.department.code)
    occupied = fields.Integer()
    free = fields.Integer()
    rooms = fields.List(fields.Nested(BoardRoomSchema))
    waiting_for_bed = fields.Function(lambda b: [{"encounter_id": e.id, "patient_code": e.patient.code,
                                                  "patient_name": e.patient.full_name,
                                                  "since": s.started_at.isoformat()} for s, e, _a in b.unbedded])


class AdmitInSchema(Schema):
    patient_id = fields.Integer(load_default=None)
    encounter_id = fields.Integer(load_default=None)
    department = fields.String(required=True, error_messages=REQUIRED)
    bed = fields.String(load_default=None)
    reason = fields.String(required=True, error_messages=REQUIRED)
    at = fields.String(load_default=None)
    insured = fields.Boolean(load_default=False)


class TransferInSchema(Schema):
    to_bed = fields.String(load_default=None)
    to_department = fields.String(load_default=None)
    at = fields.String(load_default=None)
    reason = fields.String(load_default=None)


class DischargeInSchema(Schema):
    discharge_type = fields.String(required=True, error_messages=REQUIRED)
    outcome = fields.String(required=True, error_messages=REQUIRED)
    at = fields.String(load_default=None)
    cause_of_death = fields.String(load_default=None)
    death_certificate_issued = fields.Boolean(load_default=None)
    note = fields.String(load_default=None)


def _path(name: str, kind: str = "integer") -> dict:
    return {"in": "path", "name": name, "required": True, "schema": {"type": kind}}


register_operation("/wards/{code}/board", "get", "A department's bed board: rooms × beds, occupants, free beds",
                   tag="admission", response=BoardOutSchema, permission=PERMISSION_VIEW,
                   parameters=[_path("code", "string")])
register_operation("/admissions", "post", "Admit a patient (patient_id) or turn an open visit (encounter_id) into "
                   "an inpatient stay, into a department and bed; 409 bed_taken when the bed is occupied",
                   tag="admission", response=AdmissionOutSchema, permission=PERMISSION_ACT)
register_operation("/encounters/{encounter_id}/stay", "get", "Admission, department list and bed history of an "
                   "encounter", tag="admission", response=StayOutSchema, permission=PERMISSION_VIEW,
                   parameters=[_path("encounter_id")])
register_operation("/encounters/{encounter_id}/transfer", "post", "Move an admitted patient to another bed and/or "
                   "department", tag="admission", response=StayOutSchema, permission=PERMISSION_ACT,
                   parameters=[_path("encounter_id")])
register_operation("/encounters/{encounter_id}/discharge", "post", "Discharge: type, outcome, time; cause of death "
                   "(ICD-10) when the patient died", tag="admission", response=AdmissionOutSchema,
                   permission=PERMISSION_ACT, parameters=[_path("encounter_id")])

CONFLICTS = ("bed_taken", "already_admitted", "already_discharged", "changed_meanwhile")


def _error(status: int, code: str, message, field_name: str | None = None):
    body = {"code": code, "message": str(message)}
    if field_name:
        body["fields"] = {field_name: str(message)}
    return jsonify(error=body), status


def _refused(exc: AdmissionError):
    db_session().rollback()
    return _error(409 if exc.code in CONFLICTS else 422, exc.code, exc.message, exc.field)


def _load(schema: Schema) -> dict:
    return schema.load(request.get_json(silent=True) or {})


def _invalid(exc: ValidationError):
    messages = error_messages(exc)
    name = next(iter(messages))
    return _error(422, "invalid", messages[name], name)


def _by_code(model, code: str | None, field_name: str):
    if not code:
        return None
    row = db_session().scalar(select(model).where(model.code == code))
    if row is None:
        raise AdmissionError("unknown_code", field_name, _l("Nothing has the code %(code)s.", code=code))
    return row


def _stay_json(encounter: Encounter):
    sess = db_session()
    depts, beds = adt.history(sess, encounter)
    return jsonify(StayOutSchema().dump({"admission": adt.admission_of(sess, encounter), "departments": depts,
                                         "beds": beds}))


@api.get("/wards/<code>/board")
@require(PERMISSION_VIEW)
def api_board(code: str):
    return jsonify(BoardOutSchema().dump(adt.board(db_session(), current_actor(), _department_or_404(code))))


@api.post("/admissions")
@require(PERMISSION_ACT)
def api_admit():
    sess, actor = db_session(), current_actor()
    try:
        data = _load(AdmitInSchema())
    except ValidationError as exc:
        return _invalid(exc)
    encounter = sess.get(Encounter, data["encounter_id"]) if data["encounter_id"] else None
    patient = sess.get(Patient, data["patient_id"]) if data["patient_id"] else None
    if encounter is None and patient is None:
        return _error(422, "patient_required", _("Give the patient or the visit to admit."), "patient_id")
    try:
        record = adt.admit(sess, actor, encounter or patient, department=_by_code(Department, data["department"],
                                                                                 "department"),
                           bed=_by_code(Bed, data["bed"], "bed"), reason=data["reason"], at=parse_time(data["at"]),
                           day=today(), insured=data["insured"])
    except AdmissionError as exc:
        return _refused(exc)
    sess.commit()
    return jsonify(AdmissionOutSchema().dump(record)), 201


@api.get("/encounters/<int:encounter_id>/stay")
@require(PERMISSION_VIEW)
def api_stay(encounter_id: int):
    return _stay_json(_encounter_or_404(encounter_id))


@api.post("/encounters/<int:encounter_id>/transfer")
@require(PERMISSION_ACT)
def api_transfer(encounter_id: int):
    sess, actor = db_session(), current_actor()
    encounter = _encounter_or_404(encounter_id)
    try:
        data = _load(TransferInSchema())
    except ValidationError as exc:
        return _invalid(exc)
    try:
        adt.transfer(sess, actor, encounter, at=parse_time(data["at"]), to_bed=_by_code(Bed, data["to_bed"], "to_bed"),
                     to_department=_by_code(Department, data["to_department"], "to_department"),
                     reason=data["reason"])
    except AdmissionError as exc:
        return _refused(exc)
    sess.commit()
    return _stay_json(encounter)


@api.post("/encounters/<int:encounter_id>/discharge")
@require(PERMISSION_ACT)
def api_discharge(encounter_id: int):
    sess, actor = db_session(), current_actor()
    encounter = _encounter_or_404(encounter_id)
    try:
        data = _load(DischargeInSchema())
    except ValidationError as exc:
        return _invalid(exc)
    try:
        at = parse_time(data["at"])
        record = adt.discharge(sess, actor, encounter, discharge_type=data["discharge_type"], outcome=data["outcome"],
                               at=at, cause_of_death=data["cause_of_death"],
                               death_certificate_issued=data["death_certificate_issued"], note=data["note"],
                               on=at.astimezone(config().tz).date())
    except AdmissionError as exc:
        return _refused(exc)
    sess.commit()
    return jsonify(AdmissionOutSchema().dump(record))


bp.register_blueprint(api)

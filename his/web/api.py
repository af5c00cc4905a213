"""The his JSON API under /api/v1: patients, reception, queues (documented in the OpenAPI spec)."""

from __future__ import annotations

from flask import abort, jsonify, request
from marshmallow import Schema, ValidationError, fields
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from core import audit
from core.web import current_actor, db_session
from core.web.api import api_blueprint, register_operation
from core.web.security import require
from his import encounters, patients, reception, tickets
from his.catalog import CatalogError
from his.encounters import EncounterError
from his.identity import IdentityError
from his.models.encounters import Encounter
from his.models.org import Room
from his.models.patients import Patient, PatientMerge
from his.models.tickets import Ticket
from his.patients import PatientError
from his.schemas import (
    CardSchema,
    PatientOutSchema,
    PatientSchema,
    ReceptionOutSchema,
    ScanInSchema,
    TicketOutSchema,
    error_messages,
)
from his.tickets import TicketError
from his.web._helpers import day_start, point_or_404, today

bp = api_blueprint("his_api", __name__)


def _error(status: int, code: str, message, fields: dict | None = None):
    body = {"code": code, "message": str(message)}
    if fields:
        body["fields"] = {k: str(v) for k, v in fields.items()}
    return jsonify(error=body), status


def _q(name: str, description: str) -> dict:
    return {"in": "query", "name": name, "schema": {"type": "string"}, "description": description}


register_operation("/patients", "get", "Search patients by folded name, CCCD, BHYT, phone or patient code",
                   tag="patients", response=PatientOutSchema, many=True, permission="his.patient.read",
                   parameters=[_q("q", "the query"), _q("page", "page from 1")])
register_operation("/patients", "post", "Register a patient (hard and soft duplicate checks)", tag="patients",
                   response=PatientOutSchema, permission="his.patient.write")
register_operation("/patients/{patient_id}", "get", "One patient (the read is audited)", tag="patients",
                   response=PatientOutSchema, permission="his.patient.read",
                   parameters=[{"in": "path", "name": "patient_id", "required": True, "schema": {"type": "integer"}}])
register_operation("/patients/{patient_id}/cards", "post", "Record the BHYT card a patient shows (history kept)",
                   tag="patients", permission="his.patient.write",
                   parameters=[{"in": "path", "name": "patient_id", "required": True, "schema": {"type": "integer"}}])
register_operation("/reception/scan", "post", "CCCD QR at the desk: find or register, open the visit, give a ticket",
                   tag="reception", response=ReceptionOutSchema, permission="his.patient.write")
register_operation("/queue/{code}/board", "get", "What a service point's board shows", tag="queue",
                   response=TicketOutSchema, many=True, permission="his.queue.manage",
                   parameters=[{"in": "path", "name": "code", "required": True, "schema": {"type": "string"}}])
register_operation("/queue/{code}/call-next", "post", "Call the next ticket by the priority rules", tag="queue",
                   response=TicketOutSchema, permission="his.queue.manage",
                   parameters=[{"in": "path", "name": "code", "required": True, "schema": {"type": "string"}}])


@bp.get("/patients")
@require("his.patient.read")
def patient_search():
    page = max(1, request.args.get("page", 1, type=int) or 1)
    rows, more = patients.search(db_session(), current_actor(), request.args.get("q", ""), page=page)
    return jsonify(items=PatientOutSchema(many=True).dump(rows), page=page, more=more)


@bp.post("/patients")
@require("his.patient.write")
def patient_create():
    body = request.get_json(silent=True) or {}
    try:
        data = PatientSchema().load({k: v for k, v in body.items() if k in PatientSchema().fields})
        registration = patients.register(db_session(), current_actor(), data, today=today(),
                                         confirm_possible_duplicate=bool(body.get("confirm_possible_duplicate")))
    except ValidationError as exc:
        return _error(422, "invalid", error_messages(exc).get(next(iter(exc.messages))), error_messages(exc))
    except IdentityError as exc:
        return _error(422, exc.code, exc.message, {exc.field: exc.message})
    except PatientError as exc:
        db_session().rollback()
        status = 409 if exc.code in ("duplicate_cccd", "duplicate_bhyt", "possible_duplicate") else 422
        return _error(status, exc.code, exc.message, {exc.field: exc.message} if exc.field else None)
    db_session().commit()
    return jsonify(PatientOutSchema().dump(registration.patient) | {
        "warnings": [str(w) for w in registration.warnings]}), 201


@bp.get("/patients/<int:patient_id>")
@require("his.patient.read")
def patient_get(patient_id: int):
    record = patients.get(db_session(), current_actor(), patient_id)
    if record is None:
        abort(404)
    return jsonify(PatientOutSchema().dump(record))


@bp.post("/patients/<int:patient_id>/cards")
@require("his.patient.write")
def card_add(patient_id: int):
    record = db_session().get(Patient, patient_id)
    if record is None:
        abort(404)
    try:
        data = CardSchema().load(request.get_json(silent=True) or {})
        warnings = patients.add_card(db_session(), current_actor(), record, data, today=today())
    except ValidationError as exc:
        return _error(422, "invalid", next(iter(error_messages(exc).values())), error_messages(exc))
    except (IdentityError, PatientError) as exc:
        db_session().rollback()
        return _error(409 if exc.code == "duplicate_bhyt" else 422, exc.code, exc.message,
                      {exc.field or "bhyt_number": exc.message})
    db_session().commit()
    card = patients.current_card(db_session(), record)
    return jsonify(number=card.number, valid_from=card.valid_from and card.valid_from.isoformat(),
                   valid_to=card.valid_to and card.valid_to.isoformat(), warnings=[str(w) for w in warnings]), 201


@bp.post("/reception/scan")
@require("his.patient.write", "his.queue.manage")
def scan():
    try:
        data = ScanInSchema().load(request.get_json(silent=True) or {})
    except ValidationError as exc:
        return _error(422, "invalid", next(iter(error_messages(exc).values())), error_messages(exc))
    point = point_or_404(data.pop("service_point"))
    day = today()
    try:
        arrival = reception.scan(db_session(), current_actor(), data.pop("qr"), point, day=day,
                                 day_start=day_start(day), **data)
    except (IdentityError, PatientError, TicketError) as exc:
        db_session().rollback()
        return _error(422, exc.code, exc.message, {getattr(exc, "field", None) or "qr": exc.message})
    db_session().commit()
    return jsonify(ReceptionOutSchema().dump({
        "patient": arrival.patient, "created": arrival.patient_created, "ticket": arrival.ticket,
        "encounter_code": arrival.encounter.code if arrival.encounter else None,
        "warnings": [str(w) for w in arrival.warnings]})), 201 if not arrival.already_queued else 200


@bp.get("/queue/<code>/board")
@require("his.queue.manage")
def board(code: str):
    view = tickets.board(db_session(), point_or_404(code), today())
    schema = TicketOutSchema(many=True)
    return jsonify(version=view.version, called=schema.dump(view.called), waiting=schema.dump(view.waiting),
                   waiting_count=view.waiting_count)


@bp.post("/queue/<code>/call-next")
@require("his.queue.manage")
def call_next(code: str):
    ticket = tickets.call_next(db_session(), current_actor(), point_or_404(code), day=today())
    db_session().commit()
    if ticket is None:
        return jsonify(ticket=None), 200
    return jsonify(ticket=TicketOutSchema().dump(ticket))


# --- encounters, worklist, ticket actions, merges ----------------------------------------------

class EncounterOutSchema(Schema):
    id = fields.Integer()
    code = fields.String()
    patient_id = fields.Integer()
    kind = fields.String()
    status = fields.String()
    room = fields.Function(lambda e: e.room.code if e.room else None)
    started_at = fields.DateTime()
    ended_at = fields.DateTime(allow_none=True)
    insured = fields.Boolean()
    diagnoses = fields.Function(lambda e: [{"id": d.id, "position": d.position, "icd10_code": d.icd10_code,
                                            "text": d.text} for d in e.diagnoses])


def _path(name: str, kind: str = "integer") -> dict:
    return {"in": "path", "name": name, "required": True, "schema": {"type": kind}}


register_operation("/worklist", "get", "Today's encounters of an exam room, in ticket order", tag="encounters",
                   response=EncounterOutSchema, many=True, permission="his.encounter.read",
                   parameters=[_q("room", "room code")])
register_operation("/encounters/{encounter_id}", "get", "One encounter with its diagnoses (audited)",
                   tag="encounters", response=EncounterOutSchema, permission="his.encounter.read",
                   parameters=[_path("encounter_id")])
register_operation("/encounters/{encounter_id}/diagnoses", "post", "Add an ICD-10 diagnosis {icd10, position}",
                   tag="encounters", response=EncounterOutSchema, permission="his.encounter.write",
                   parameters=[_path("encounter_id")])
register_operation("/encounters/{encounter_id}/status", "post", "Move an encounter: {status} or cancel {reason}",
                   tag="encounters", response=EncounterOutSchema, permission="his.encounter.write",
                   parameters=[_path("encounter_id")])
register_operation("/queue/{code}/tickets/{ticket_id}/{action}", "post",
                   "recall, skip, serve, done, call (out of turn, {reason}) or transfer ({to})", tag="queue",
                   response=TicketOutSchema, permission="his.queue.manage",
                   parameters=[_path("code", "string"), _path("ticket_id"), _path("action", "string")])
register_operation("/patients/{patient_id}/merge", "post", "Merge {duplicate_code} into this patient ({reason})",
                   tag="patients", permission="his.patient.merge", parameters=[_path("patient_id")])
register_operation("/patient-merges/{merge_id}/undo", "post", "Undo a merge ({reason})", tag="patients",
                   permission="his.patient.merge", parameters=[_path("merge_id")])


def _encounter(encounter_id: int) -> Encounter:
    record = db_session().get(Encounter, encounter_id, with_for_update=request.method == "POST",
                              populate_existing=True)
    if record is None:
        abort(404)
    audit.record(db_session(), current_actor(), "encounter.read", record, {"patient_id": record.patient_id})
    return record


@bp.get("/worklist")
@require("his.encounter.read")
def worklist():
    sess = db_session()
    room = sess.scalar(select(Room).where(Room.code == request.args.get("room", "")))
    if room is None:
        abort(404)
    rows = sess.scalars(select(Encounter).outerjoin(Ticket, Ticket.encounter_id == Encounter.id)
                        .options(selectinload(Encounter.room), selectinload(Encounter.diagnoses))
                        .where(Encounter.room_id == room.id, Encounter.started_at >= day_start(today()),
                               Encounter.status != "cancelled")
                        .order_by(Ticket.number.nulls_last(), Encounter.id)).all()
    audit.record(sess, current_actor(), "worklist.view", room, {"patients": [e.patient_id for e in rows]})
    return jsonify(items=EncounterOutSchema(many=True).dump(rows))


@bp.get("/encounters/<int:encounter_id>")
@require("his.encounter.read")
def encounter_get(encounter_id: int):
    return jsonify(EncounterOutSchema().dump(_encounter(encounter_id)))


@bp.post("/encounters/<int:encounter_id>/diagnoses")
@require("his.encounter.write")
def diagnosis_add(encounter_id: int):
    record, body = _encounter(encounter_id), request.get_json(silent=True) or {}
    position = "principal" if body.get("position") == "principal" else "secondary"
    try:
        _row, warnings = encounters.add_diagnosis(db_session(), current_actor(), record, str(body.get("icd10", "")),
                                                  position=position, on=today())
    except (CatalogError, EncounterError) as exc:
        db_session().rollback()
        return _error(422, exc.code, exc.message, {"icd10": exc.message})
    db_session().commit()
    db_session().refresh(record)
    return jsonify(EncounterOutSchema().dump(record) | {"warnings": [str(w) for w in warnings]}), 201


@bp.post("/encounters/<int:encounter_id>/status")
@require("his.encounter.write")
def encounter_status(encounter_id: int):
    record, body = _encounter(encounter_id), request.get_json(silent=True) or {}
    try:
        if body.get("status") == "cancelled":
            encounters.cancel(db_session(), current_actor(), record, body.get("reason", ""))
        else:
            encounters.set_status(db_session(), current_actor(), record, str(body.get("status", "")))
    except EncounterError as exc:
        db_session().rollback()
        return _error(409 if exc.code in ("bad_transition", "not_open") else 422, exc.code, exc.message,
                      {exc.field: exc.message} if exc.field else None)
    db_session().commit()
    return jsonify(EncounterOutSchema().dump(record))


@bp.post("/queue/<code>/tickets/<int:ticket_id>/<action>")
@require("his.queue.manage")
def ticket_action(code: str, ticket_id: int, action: str):
    sess, actor, body = db_session(), current_actor(), request.get_json(silent=True) or {}
    ticket = sess.get(Ticket, ticket_id, with_for_update=True, populate_existing=True)
    if ticket is None or ticket.service_point.code != code:
        abort(404)
    simple = {"recall": tickets.recall, "skip": tickets.skip, "serve": tickets.serve, "done": tickets.done}
    try:
        if action in simple:
            simple[action](sess, actor, ticket)
        elif action == "call":
            tickets.call(sess, actor, ticket, body.get("reason", ""))
        elif action == "transfer":
            ticket = tickets.transfer(sess, actor, ticket, point_or_404(str(body.get("to", ""))), day=today())
        else:
            abort(404)
    except TicketError as exc:
        sess.rollback()
        return _error(409, exc.code, exc.message)
    sess.commit()
    return jsonify(TicketOutSchema().dump(ticket))


@bp.post("/patients/<int:patient_id>/merge")
@require("his.patient.merge")
def patient_merge(patient_id: int):
    sess, body = db_session(), request.get_json(silent=True) or {}
    survivor = sess.get(Patient, patient_id)
    duplicate = sess.scalar(select(Patient).where(Patient.code == str(body.get("duplicate_code", "")).strip()))
    if survivor is None or duplicate is None:
        abort(404)
    try:
        record = patients.merge(sess, current_actor(), survivor, duplicate, body.get("reason", ""))
    except PatientError as exc:
        sess.rollback()
        return _error(422, exc.code, exc.message)
    sess.commit()
    return jsonify(merge_id=record.id, survivor_id=survivor.id, duplicate_id=duplicate.id), 201


@bp.post("/patient-merges/<int:merge_id>/undo")
@require("his.patient.merge")
def merge_undo(merge_id: int):
    sess, body = db_session(), request.get_json(silent=True) or {}
    record = sess.get(PatientMerge, merge_id)
    if record is None:
        abort(404)
    try:
        patients.unmerge(sess, current_actor(), record, body.get("reason", ""))
    except PatientError as exc:
        sess.rollback()
        return _error(409 if exc.code in ("already_undone", "merged_again") else 422, exc.code, exc.message)
    sess.commit()
    return jsonify(merge_id=record.id, undone=True)

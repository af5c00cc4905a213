"""The his JSON API under /api/v1: patients, reception, queues (documented in the OpenAPI spec)."""

from __future__ import annotations

from flask import abort, jsonify, request
from marshmallow import ValidationError

from core.web import current_actor, db_session
from core.web.api import api_blueprint, register_operation
from core.web.security import require
from his import patients, reception, tickets
from his.identity import IdentityError
from his.models.patients import Patient
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

"""The orders JSON API under /api/v1: an encounter's orders, placing one, and moving it along
(cancel, start, complete, reverse). Errors answer {"error": {"code", "field", "message"}}."""

from __future__ import annotations

from flask import abort, jsonify, request
from marshmallow import Schema, fields

from core.web import current_actor, db_session
from core.web.api import api_blueprint, register_operation
from core.web.security import require
from his import orders
from his.models.encounters import Encounter
from his.models.orders import Order
from his.orders import OrderError
from his.web._helpers import today

bp = api_blueprint("his_orders_api", __name__)

# Refusals about the order's state (409) rather than about what was typed (422).
STATE_ERRORS = {"bad_transition", "already_executed", "not_executed", "encounter_closed", "encounter_cancelled",
                "merged_patient"}


class OrderLineOutSchema(Schema):
    id = fields.Integer()
    position = fields.Integer()
    item_code = fields.String()
    item_name = fields.String()
    bhyt_code = fields.Function(lambda line: (line.service or line.drug).bhyt_code)
    quantity = fields.Decimal(as_string=True)
    unit = fields.String()
    unit_price = fields.Decimal(as_string=True, metadata={"description": "price in force on the order day"})
    payer = fields.String(metadata={"description": "bhyt, fee or on_demand: which price list unit_price is from"})
    dose = fields.Decimal(as_string=True, allow_none=True)
    frequency = fields.Integer(allow_none=True, metadata={"description": "intakes a day"})
    days = fields.Integer(allow_none=True)
    route = fields.String(allow_none=True)
    quantity_entered = fields.Boolean(metadata={"description": "false when computed as dose × frequency × days"})
    instructions = fields.String(allow_none=True)


class OrderOutSchema(Schema):
    id = fields.Integer()
    encounter_id = fields.Integer()
    patient_id = fields.Integer()
    kind = fields.String(metadata={"description": "lab, imaging, procedure or prescription"})
    status = fields.String(metadata={"description": "placed, in_progress, completed, cancelled or reversed"})
    department_id = fields.Integer(allow_none=True)
    orderer_id = fields.Integer(allow_none=True, metadata={"description": "staff id of the ordering practitioner"})
    diagnosis_id = fields.Integer(allow_none=True)
    note = fields.String(allow_none=True)
    chronic = fields.Boolean()
    weight_kg = fields.Decimal(as_string=True, allow_none=True)
    guardian_name = fields.String(allow_none=True)
    ordered_at = fields.DateTime()
    executed_at = fields.DateTime(allow_none=True)
    result_at = fields.DateTime(allow_none=True)
    performer_id = fields.Integer(allow_none=True)
    cancel_reason = fields.String(allow_none=True)
    reverse_reason = fields.String(allow_none=True)
    lines = fields.List(fields.Nested(OrderLineOutSchema))


def _path(name: str) -> dict:
    return {"in": "path", "name": name, "required": True, "schema": {"type": "integer"}}


register_operation("/encounters/{encounter_id}/orders", "get", "The orders of an encounter, newest first (the read "
                   "is audited)", tag="orders", response=OrderOutSchema, many=True, permission="his.encounter.read",
                   parameters=[_path("encounter_id")])
register_operation("/encounters/{encounter_id}/orders", "post", "Place an order. Body: kind (lab, imaging, procedure, "
                   "prescription), items [{code, quantity, payer} or, for drugs, {code, dose, frequency, days, "
                   "quantity?, route?, instructions?}], diagnosis_id?, note?, chronic?, weight_kg?, guardian_name?. "
                   "Emits his.order.placed", tag="orders", response=OrderOutSchema, permission="his.order.create",
                   parameters=[_path("encounter_id")])
register_operation("/orders/{order_id}/cancel", "post", "Cancel an order not yet carried out. Body: {reason}. "
                   "Emits his.order.cancelled", tag="orders", response=OrderOutSchema,
                   permission="his.order.create", parameters=[_path("order_id")])
register_operation("/orders/{order_id}/reverse", "post", "Reverse an order that was carried out. Body: {reason}. "
                   "Emits his.order.reversed", tag="orders", response=OrderOutSchema,
                   permission="his.order.create", parameters=[_path("order_id")])
register_operation("/orders/{order_id}/start", "post", "Record that the order is being carried out (NGAY_TH_YL). "
                   "Body: {machine_code?}. Emits his.order.started", tag="orders", response=OrderOutSchema,
                   permission=orders.PERFORM, parameters=[_path("order_id")])
register_operation("/orders/{order_id}/complete", "post", "Record the order as done (result time). Body: "
                   "{machine_code?}. Emits his.order.completed", tag="orders", response=OrderOutSchema,
                   permission=orders.PERFORM, parameters=[_path("order_id")])


def _error(exc: OrderError):
    db_session().rollback()
    status = 409 if exc.code in STATE_ERRORS else 422
    return jsonify(error={"code": exc.code, "field": exc.field, "message": str(exc.message)}), status


def _body() -> dict:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


@bp.get("/encounters/<int:encounter_id>/orders")
@require("his.encounter.read")
def list_orders(encounter_id: int):
    encounter = db_session().get(Encounter, encounter_id)
    if encounter is None:
        abort(404)
    rows = orders.of_encounter(db_session(), current_actor(), encounter)
    return jsonify(items=OrderOutSchema(many=True).dump(rows))


@bp.post("/encounters/<int:encounter_id>/orders")
@require("his.order.create")
def place(encounter_id: int):
    sess = db_session()
    encounter = sess.get(Encounter, encounter_id)
    if encounter is None:
        abort(404)
    body = _body()
    items = body.get("items")
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        items = []
    try:
        order = orders.place_order(sess, current_actor(), encounter, str(body.get("kind") or ""), items, on=today(),
                                   diagnosis_id=body.get("diagnosis_id"), note=body.get("note"),
                                   chronic=body.get("chronic") is True, weight_kg=body.get("weight_kg"),
                                   guardian_name=body.get("guardian_name"))
    except OrderError as exc:
        return _error(exc)
    sess.commit()
    return jsonify(OrderOutSchema().dump(order)), 201


def _change(order_id: int, action):
    sess = db_session()
    order = sess.get(Order, order_id, with_for_update={"of": Order}, populate_existing=True)  # one change at a time
    if order is None:
        abort(404)
    try:
        action(sess, current_actor(), order, _body())
    except OrderError as exc:
        return _error(exc)
    sess.commit()
    return jsonify(OrderOutSchema().dump(order))


@bp.post("/orders/<int:order_id>/cancel")
@require("his.order.create")
def cancel(order_id: int):
    return _change(order_id, lambda s, a, o, body: orders.cancel(s, a, o, body.get("reason")))


@bp.post("/orders/<int:order_id>/reverse")
@require("his.order.create")
def reverse(order_id: int):
    return _change(order_id, lambda s, a, o, body: orders.reverse(s, a, o, body.get("reason")))


@bp.post("/orders/<int:order_id>/start")
@require(orders.PERFORM)
def start(order_id: int):
    return _change(order_id, lambda s, a, o, body: orders.start(s, a, o, machine_code=body.get("machine_code")))


@bp.post("/orders/<int:order_id>/complete")
@require(orders.PERFORM)
def complete(order_id: int):
    return _change(order_id, lambda s, a, o, body: orders.complete(s, a, o, machine_code=body.get("machine_code")))

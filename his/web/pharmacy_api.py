"""The pharmacy JSON API under /api/v1/pharmacy (documented in the OpenAPI spec).

Errors answer 422 with {"error": {"code", "message", "field", "params"}}; the message is Vietnamese
and names the drug, the quantities and the warehouse where that matters.
"""

from __future__ import annotations

from flask import abort, jsonify, request
from marshmallow import Schema, ValidationError, fields, validate

from core.web import current_actor, db_session
from core.web.api import api_blueprint, register_operation
from core.web.security import require
from his import stock
from his.models.pharmacy import StockMovement
from his.schemas import VnDate, error_messages
from his.stock import ReceiptLine, StockError
from his.web._helpers import today

PERMISSION = "his.pharmacy.dispense"
bp = api_blueprint("his_pharmacy_api", __name__, "/api/v1/pharmacy")


# --- shapes -------------------------------------------------------------------------------------

class WarehouseSchema(Schema):
    id = fields.Integer()
    code = fields.String()
    name = fields.String()
    kind = fields.String(metadata={"description": "main_store, dispensing or ward_cabinet"})
    department_id = fields.Integer(allow_none=True)


class LotStockSchema(Schema):
    lot_id = fields.Integer(attribute="lot.id")
    lot_number = fields.String(attribute="lot.lot_number")
    expiry_date = fields.Date(attribute="lot.expiry_date")
    unit_cost = fields.Decimal(as_string=True, attribute="lot.unit_cost")
    on_hand = fields.Decimal(as_string=True)


class DrugStockSchema(Schema):
    drug_code = fields.String(attribute="drug.code")
    drug_name = fields.String(attribute="drug.name")
    unit = fields.String(attribute="drug.unit")
    on_hand = fields.Decimal(as_string=True, metadata={"description": "all lots, expired included"})
    usable = fields.Decimal(as_string=True, metadata={"description": "lots not yet expired"})
    expired = fields.Decimal(as_string=True)
    next_expiry = fields.Date(allow_none=True)
    lots = fields.List(fields.Nested(LotStockSchema), metadata={"description": "first expiry first"})


class MovementSchema(Schema):
    id = fields.Integer()
    kind = fields.String()
    warehouse_code = fields.String(attribute="warehouse.code")
    drug_code = fields.String(attribute="lot.drug.code")
    lot_number = fields.String(attribute="lot.lot_number")
    expiry_date = fields.Date(attribute="lot.expiry_date")
    quantity = fields.Decimal(as_string=True, metadata={"description": "signed: negative when stock goes out"})
    on_hand_after = fields.Decimal(as_string=True)
    reference_type = fields.String(allow_none=True)
    reference_id = fields.Integer(allow_none=True)
    occurred_at = fields.DateTime()
    actor_name = fields.String()


class DispenseInSchema(Schema):
    warehouse = fields.String(required=True, metadata={"description": "warehouse code"})
    drug = fields.String(required=True, metadata={"description": "facility drug code"})
    quantity = fields.Decimal(required=True, as_string=True)
    reference_type = fields.String(load_default=None, validate=validate.Length(max=40),
                                   metadata={"description": "e.g. prescription_line"})
    reference_id = fields.Integer(load_default=None, strict=True)


class DispenseOutSchema(Schema):
    quantity = fields.Decimal(as_string=True)
    movements = fields.List(fields.Nested(MovementSchema))
    warnings = fields.List(fields.String(), metadata={"description": "near-expiry lots used (not blocking)"})


class ReceiptLineInSchema(Schema):
    drug = fields.String(required=True)
    lot_number = fields.String(required=True)
    expiry_date = VnDate(required=True)
    quantity = fields.Decimal(required=True, as_string=True)
    unit_cost = fields.Decimal(required=True, as_string=True)


class ReceiptInSchema(Schema):
    warehouse = fields.String(required=True)
    supplier = fields.String(required=True)
    invoice_number = fields.String(required=True)
    invoice_date = VnDate(load_default=None)
    note = fields.String(load_default=None)
    lines = fields.List(fields.Nested(ReceiptLineInSchema), required=True)


class ReceiptOutSchema(Schema):
    id = fields.Integer()
    warehouse_code = fields.String(attribute="warehouse.code")
    supplier = fields.String()
    invoice_number = fields.String()
    invoice_date = fields.Date(allow_none=True)
    total_cost = fields.Decimal(as_string=True)
    received_at = fields.DateTime()


class ReturnInSchema(Schema):
    quantity = fields.Decimal(required=True, as_string=True)
    reason = fields.String(load_default=None)


class TransferInSchema(Schema):
    source = fields.String(required=True)
    destination = fields.String(required=True)
    drug = fields.String(required=True)
    quantity = fields.Decimal(required=True, as_string=True)
    reason = fields.String(load_default=None)


class ExpiryRowSchema(Schema):
    warehouse_code = fields.String(attribute="stock.warehouse.code")
    drug_code = fields.String(attribute="stock.lot.drug.code")
    drug_name = fields.String(attribute="stock.lot.drug.name")
    lot_number = fields.String(attribute="stock.lot.lot_number")
    expiry_date = fields.Date(attribute="stock.lot.expiry_date")
    on_hand = fields.Decimal(as_string=True, attribute="stock.on_hand")
    days_left = fields.Integer(metadata={"description": "negative: expired that many days ago"})
    expired = fields.Boolean()


def _param(name: str, description: str, where: str = "query", kind: str = "string") -> dict:
    return {"in": where, "name": name, "required": where == "path", "schema": {"type": kind},
            "description": description}


register_operation("/pharmacy/warehouses", "get", "Active warehouses (main store, pharmacies, ward cabinets)",
                   tag="pharmacy", response=WarehouseSchema, many=True, permission=PERMISSION)
register_operation("/pharmacy/warehouses/{code}/stock", "get", "Stock on hand of a warehouse, per drug and lot",
                   tag="pharmacy", response=DrugStockSchema, many=True, permission=PERMISSION,
                   parameters=[_param("code", "warehouse code", "path"),
                               _param("q", "drug code prefix or part of the name")])
register_operation("/pharmacy/dispense", "post", "Dispense a drug first-expiry-first-out (422 insufficient_stock "
                   "names the drug, requested and usable quantities; nothing is changed)", tag="pharmacy",
                   response=DispenseOutSchema, permission=PERMISSION)
register_operation("/pharmacy/receipts", "post", "Record a goods receipt with its lots", tag="pharmacy",
                   response=ReceiptOutSchema, permission=PERMISSION)
register_operation("/pharmacy/movements/{movement_id}/return", "post", "Return (part of) a dispense to its lot",
                   tag="pharmacy", response=MovementSchema, permission=PERMISSION,
                   parameters=[_param("movement_id", "id of the dispense movement", "path", "integer")])
register_operation("/pharmacy/transfer", "post", "Transfer a drug between warehouses, first expiry first",
                   tag="pharmacy", response=MovementSchema, many=True, permission=PERMISSION)
register_operation("/pharmacy/expiry", "get", "Lots with stock expired or expiring within `days`", tag="pharmacy",
                   response=ExpiryRowSchema, many=True, permission=PERMISSION,
                   parameters=[_param("days", f"horizon in days (default {stock.NEAR_EXPIRY_DAYS})", kind="integer"),
                               _param("warehouse", "warehouse code (default: all)")])
register_operation("/pharmacy/movements", "get", "Stock movements, newest first", tag="pharmacy",
                   response=MovementSchema, many=True, permission=PERMISSION,
                   parameters=[_param("warehouse", "warehouse code"), _param("kind", "movement kind"),
                               _param("reference_type", "e.g. prescription_line"),
                               _param("reference_id", "id of the reference", kind="integer")])


# --- helpers ------------------------------------------------------------------------------------

def _stock_error(exc: StockError):
    db_session().rollback()
    return jsonify(error={"code": exc.code, "message": str(exc.message), "field": exc.field,
                          "params": exc.params or None}), 422


def _invalid(exc: ValidationError):
    messages = error_messages(exc)
    name = next(iter(messages), None)
    return jsonify(error={"code": "invalid", "message": messages.get(name, ""), "field": name,
                          "fields": messages}), 422


def _load(schema: Schema) -> dict:
    return schema.load(request.get_json(silent=True) or {})


def _warehouse_or_404(code: str):
    warehouse = stock.warehouse_by_code(db_session(), code)
    if warehouse is None:
        abort(404)
    return warehouse


# --- endpoints ----------------------------------------------------------------------------------

@bp.get("/warehouses")
@require(PERMISSION)
def warehouses():
    return jsonify(WarehouseSchema(many=True).dump(stock.warehouses(db_session())))


@bp.get("/warehouses/<code>/stock")
@require(PERMISSION)
def warehouse_stock(code: str):
    rows = stock.stock_on_hand(db_session(), _warehouse_or_404(code), today=today(), query=request.args.get("q"))
    return jsonify(DrugStockSchema(many=True).dump(rows))


@bp.post("/dispense")
@require(PERMISSION)
def dispense():
    sess = db_session()
    try:
        data = _load(DispenseInSchema())
        result = stock.dispense(sess, current_actor(), stock.warehouse_by_code(sess, data["warehouse"]),
                                stock.drug_by_code(sess, data["drug"]), data["quantity"], today=today(),
                                reference_type=data["reference_type"], reference_id=data["reference_id"])
    except ValidationError as exc:
        return _invalid(exc)
    except StockError as exc:
        return _stock_error(exc)
    sess.commit()
    return jsonify(DispenseOutSchema().dump({"quantity": result.quantity, "movements": result.movements,
                                             "warnings": [str(w) for w in result.warnings]}))


@bp.post("/receipts")
@require(PERMISSION)
def receipt():
    sess = db_session()
    try:
        data = _load(ReceiptInSchema())
        lines = [ReceiptLine(stock.drug_by_code(sess, line["drug"]), line["lot_number"], line["expiry_date"],
                             line["quantity"], line["unit_cost"]) for line in data["lines"]]
        receipt = stock.receive(sess, current_actor(), stock.warehouse_by_code(sess, data["warehouse"]), lines,
                                supplier=data["supplier"], invoice_number=data["invoice_number"],
                                invoice_date=data["invoice_date"], note=data["note"], today=today())
    except ValidationError as exc:
        return _invalid(exc)
    except StockError as exc:
        return _stock_error(exc)
    sess.commit()
    return jsonify(ReceiptOutSchema().dump(receipt)), 201


@bp.post("/movements/<int:movement_id>/return")
@require(PERMISSION)
def return_movement(movement_id: int):
    sess = db_session()
    movement = sess.get(StockMovement, movement_id)
    if movement is None:
        abort(404)
    try:
        data = _load(ReturnInSchema())
        back = stock.return_dispensed(sess, current_actor(), movement, data["quantity"], reason=data["reason"])
    except ValidationError as exc:
        return _invalid(exc)
    except StockError as exc:
        return _stock_error(exc)
    sess.commit()
    return jsonify(MovementSchema().dump(back))


@bp.post("/transfer")
@require(PERMISSION)
def transfer():
    sess = db_session()
    try:
        data = _load(TransferInSchema())
        pairs = stock.transfer(sess, current_actor(), stock.warehouse_by_code(sess, data["source"]),
                               stock.warehouse_by_code(sess, data["destination"]),
                               stock.drug_by_code(sess, data["drug"]), data["quantity"], today=today(),
                               reason=data["reason"])
    except ValidationError as exc:
        return _invalid(exc)
    except StockError as exc:
        return _stock_error(exc)
    sess.commit()
    return jsonify(MovementSchema(many=True).dump([m for pair in pairs for m in pair]))


@bp.get("/expiry")
@require(PERMISSION)
def expiry():
    days = request.args.get("days", stock.NEAR_EXPIRY_DAYS, type=int)
    code = request.args.get("warehouse")
    warehouse = _warehouse_or_404(code) if code else None
    rows = stock.expiry_report(db_session(), today=today(), within_days=days, warehouse=warehouse)
    return jsonify(ExpiryRowSchema(many=True).dump(rows))


@bp.get("/movements")
@require(PERMISSION)
def movements():
    code = request.args.get("warehouse")
    rows = stock.movements(db_session(), warehouse=_warehouse_or_404(code) if code else None,
                           kind=request.args.get("kind") or None,
                           reference_type=request.args.get("reference_type") or None,
                           reference_id=request.args.get("reference_id", type=int), limit=200)
    return jsonify(MovementSchema(many=True).dump(rows))

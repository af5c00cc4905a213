"""Catalogue screens (read-only search of services, drugs, supplies, ICD-10) and their JSON API.

Changes come through the importers (`vnhis his catalog …`), which validate every row.
"""

from __future__ import annotations

from datetime import date, datetime

from flask import Blueprint, jsonify, render_template, request
from flask_babel import lazy_gettext as _l
from marshmallow import Schema, fields

from core.web import NavEntry, add_nav, db_session
from core.web.api import api_blueprint, register_operation
from core.web.security import require
from his import catalog
from his.web._helpers import today

PERMISSION = "his.catalog.read"
bp = Blueprint("catalog", __name__, template_folder="../templates")
api = api_blueprint("catalog_api", __name__, "/api/v1/catalog")


def _on() -> date | None:
    """`on` as dd/mm/yyyy or yyyy-mm-dd; today when absent; None when unreadable."""
    raw = (request.args.get("on") or "").strip()
    if not raw:
        return today()
    for fmt in ("%d/%m/%Y", "%Y-%m-%d"):
        try:
            return datetime.strptime(raw, fmt).date()
        except ValueError:
            continue
    return None


def _paging(default: int = 50) -> tuple[int, int]:
    page = max(1, request.args.get("page", 1, type=int) or 1)
    per_page = min(200, max(1, request.args.get("per_page", default, type=int) or default))
    return page, per_page


SEARCHES = {"services": catalog.search_services, "drugs": catalog.search_drugs,
            "supplies": catalog.search_supplies, "icd10": catalog.search_icd10}


def _find(kind: str, on: date):
    page, per_page = _paging()
    rows, total = SEARCHES[kind](db_session(), request.args.get("q"), on=on, page=page, per_page=per_page)
    prices = catalog.prices_in_force(db_session(), rows, on) if kind != "icd10" else {}
    return rows, total, page, per_page, prices


# --- screens ------------------------------------------------------------------------------------

TITLES = {"services": _l("Services"), "drugs": _l("Drugs"), "supplies": _l("Medical supplies"),
          "icd10": _l("ICD-10")}


def _screen(kind: str):
    on = _on()
    bad_date = on is None
    on = on or today()
    rows, total, page, per_page, prices = _find(kind, on)
    return render_template(f"his/catalog/{kind}.html", kind=kind, titles=TITLES, rows=rows, total=total, page=page,
                           per_page=per_page, prices=prices, on=on, bad_date=bad_date, args=request.args)


@bp.get("/catalog/services")
@require(PERMISSION)
def services():
    return _screen("services")


@bp.get("/catalog/drugs")
@require(PERMISSION)
def drugs():
    return _screen("drugs")


@bp.get("/catalog/supplies")
@require(PERMISSION)
def supplies():
    return _screen("supplies")


@bp.get("/catalog/icd10")
@require(PERMISSION)
def icd10():
    return _screen("icd10")


@bp.record_once
def _nav(state) -> None:
    add_nav(state.app, NavEntry("catalog.services", _l("Catalogues"), PERMISSION, _l("Catalogues"), 700))


# --- JSON ---------------------------------------------------------------------------------------

class _ItemSchema(Schema):
    code = fields.String()
    bhyt_code = fields.String(allow_none=True)
    name = fields.String()
    unit = fields.String()
    valid_from = fields.Date(allow_none=True)
    valid_to = fields.Date(allow_none=True)


class ServiceSchema(_ItemSchema):
    group = fields.String(allow_none=True)
    prices = fields.Dict(keys=fields.String(), values=fields.Decimal(as_string=True),
                         metadata={"description": "price in force on `on` per payer: bhyt, fee, on_demand"})


class DrugSchema(_ItemSchema):
    active_ingredient = fields.String()
    strength = fields.String(allow_none=True)
    dosage_form = fields.String(allow_none=True)
    route = fields.String(allow_none=True)
    registration_number = fields.String(allow_none=True)
    manufacturer = fields.String(allow_none=True)
    country = fields.String(allow_none=True)
    is_narcotic = fields.Boolean()
    is_psychotropic = fields.Boolean()
    is_prescription_only = fields.Boolean()
    price = fields.Decimal(as_string=True, allow_none=True, metadata={"description": "unit price in force on `on`"})


class SupplySchema(_ItemSchema):
    price = fields.Decimal(as_string=True, allow_none=True, metadata={"description": "unit price in force on `on`"})


class Icd10Schema(Schema):
    code = fields.String(metadata={"description": "with its dot, e.g. B18.00"})
    version = fields.String()
    name_vi = fields.String(allow_none=True)
    name_en = fields.String(allow_none=True)
    chapter = fields.String(allow_none=True)
    block = fields.String(allow_none=True)
    not_principal = fields.Boolean()
    discouraged_principal = fields.Boolean()
    not_for_use = fields.Boolean()
    cause_of_death_only = fields.Boolean()
    sex = fields.String(allow_none=True)
    valid_from = fields.Date()
    valid_to = fields.Date(allow_none=True)


class Icd10CheckSchema(Icd10Schema):
    warnings = fields.List(fields.String())


SCHEMAS = {"services": ServiceSchema, "drugs": DrugSchema, "supplies": SupplySchema, "icd10": Icd10Schema}


def _query(name: str, description: str, where: str = "query", required: bool = False) -> dict:
    return {"in": where, "name": name, "required": required, "schema": {"type": "string"}, "description": description}


_Q = _query("q", "code prefix (facility or BHYT) or part of the name; accents and case are ignored")
_ON = _query("on", "date the prices and validity apply to, yyyy-mm-dd (default: today)")
for _kind, _summary in (("services", "Search technical services (DVKT) with their prices"),
                        ("drugs", "Search drugs with their unit price"),
                        ("supplies", "Search medical supplies with their unit price"),
                        ("icd10", "Search ICD-10 codes by code or name")):
    register_operation(f"/catalog/{_kind}", "get", _summary, tag="catalog", response=SCHEMAS[_kind], many=True,
                       paged=True, permission=PERMISSION, parameters=[_Q, _ON])
register_operation("/catalog/icd10/{code}", "get", "Check an ICD-10 code for a diagnosis position (422 with the "
                   "rule it breaks)", tag="catalog", response=Icd10CheckSchema, permission=PERMISSION,
                   parameters=[_query("code", "ICD-10 code, with or without the dot", "path", True), _ON,
                               _query("position", "principal (default), secondary or cause_of_death"),
                               _query("sex", "female or male: adds a warning on a sex-specific code")])


def _bad_date():
    return jsonify(error={"code": "invalid_date", "message": str(_l("Invalid value")), "field": "on"}), 422


def _dump(kind: str, rows, prices) -> list[dict]:
    out = SCHEMAS[kind]().dump(rows, many=True)
    for data, row in zip(out, rows, strict=True):
        found = prices.get(row.id, {})
        if kind == "services":
            data["prices"] = {payer: str(price) for payer, price in found.items()}
        elif kind in ("drugs", "supplies"):
            data["price"] = None if None not in found else str(found[None])
    return out


def _api_search(kind: str):
    on = _on()
    if on is None:
        return _bad_date()
    rows, total, page, per_page, prices = _find(kind, on)
    return jsonify(items=_dump(kind, rows, prices), total=total, page=page, per_page=per_page)


@api.get("/services")
@require(PERMISSION)
def api_services():
    return _api_search("services")


@api.get("/drugs")
@require(PERMISSION)
def api_drugs():
    return _api_search("drugs")


@api.get("/supplies")
@require(PERMISSION)
def api_supplies():
    return _api_search("supplies")


@api.get("/icd10")
@require(PERMISSION)
def api_icd10():
    return _api_search("icd10")


@api.get("/icd10/<code>")
@require(PERMISSION)
def api_icd10_check(code: str):
    on = _on()
    if on is None:
        return _bad_date()
    position = request.args.get("position", "principal")
    if position not in catalog.POSITIONS:
        return jsonify(error={"code": "invalid_position", "message": str(_l("Invalid value")),
                              "field": "position"}), 422
    try:
        row = catalog.resolve_icd10(db_session(), code, on=on, position=position)
    except catalog.CatalogError as exc:
        status = 404 if exc.code == "icd10_unknown" else 422
        return jsonify(error={"code": exc.code, "message": str(exc.message), "field": "code"}), status
    data = Icd10CheckSchema().dump(row)
    data["warnings"] = [str(w) for w in catalog.icd10_warnings(row, position=position, sex=request.args.get("sex"))]
    return jsonify(data)


bp.register_blueprint(api)

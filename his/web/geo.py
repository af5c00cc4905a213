"""JSON for address pickers: provinces, and a province's wards (optionally filtered by folded name)."""

from __future__ import annotations

from flask import jsonify, request
from marshmallow import Schema, fields

from core.web.api import api_blueprint, register_operation
from core.web.security import require
from his import geo
from his.text import fold

# The API's rules (api.access, CSRF on changes, JSON errors) apply; only GETs here.
bp = api_blueprint("geo", __name__, "/api/v1/geo")
PERMISSION = "his.patient.read"


class UnitSchema(Schema):
    code = fields.String()
    name = fields.String(metadata={"description": "full official name, e.g. 'Phường Ba Đình'"})
    short_name = fields.String()
    type = fields.String(metadata={"description": "Tỉnh, Thành phố, Quận, Huyện, Thị xã, Phường, Xã, Thị trấn, "
                                                  "Đặc khu"})
    province_code = fields.String(allow_none=True)
    district_code = fields.String(allow_none=True, metadata={"description": "pre2025 wards only"})


def _param(name: str, description: str, where: str = "query", required: bool = False) -> dict:
    return {"in": where, "name": name, "required": required, "schema": {"type": "string"}, "description": description}


_SCHEME = _param("scheme", "post2025 (34 provinces, default) or pre2025 (63 provinces, with districts)")
register_operation("/geo/provinces", "get", "Provinces and centrally-run cities of one address scheme", tag="geo",
                   response=UnitSchema, many=True, permission=PERMISSION, parameters=[_SCHEME])
register_operation("/geo/provinces/{code}/wards", "get", "Wards/communes of a province, optionally searched by name",
                   tag="geo", response=UnitSchema, many=True, permission=PERMISSION,
                   parameters=[_param("code", "province code", "path", True), _SCHEME,
                               _param("q", "part of the name; accents and case are ignored"),
                               _param("district", "pre2025 only: the wards of one district")])


def _error(status: int, code: str, message) -> tuple:
    return jsonify(error={"code": code, "message": str(message)}), status


@bp.errorhandler(geo.AddressError)
def _address_error(exc: geo.AddressError):
    # An unknown scheme is a bad request; an unknown province or district is a missing resource.
    return _error(400 if exc.field == "scheme" else 404, "invalid_" + exc.field, exc.message)


@bp.get("/provinces")
@require(PERMISSION)
def provinces():
    units = geo.provinces(request.args.get("scheme", "post2025"))
    return jsonify(UnitSchema(many=True).dump(units))


@bp.get("/provinces/<code>/wards")
@require(PERMISSION)
def wards(code: str):
    scheme = request.args.get("scheme", "post2025")
    units = geo.wards(code, scheme, district_code=request.args.get("district") or None)
    needle = fold(request.args.get("q", ""))
    return jsonify(UnitSchema(many=True).dump([u for u in units if needle in u.folded]))

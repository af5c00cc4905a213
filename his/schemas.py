"""Shapes of his input and output (marshmallow); error messages in Vietnamese through i18n."""

from __future__ import annotations

from datetime import date, datetime

from flask_babel import lazy_gettext as _l
from marshmallow import Schema, ValidationError, fields, pre_load, validate, validates_schema

from his import geo
from his.models.patients import SEXES

REQUIRED = {"required": _l("Required field"), "null": _l("Required field")}
PHONE_RE = r"^0\d{9,10}$"


class VnDate(fields.Date):
    """A date typed as dd/mm/yyyy (what the desk types) or yyyy-mm-dd (what a date input sends)."""

    default_error_messages = {"invalid": _l("Write the date as dd/mm/yyyy.")}

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, date):
            return value
        text = str(value).strip()
        for fmt in ("%d/%m/%Y", "%Y-%m-%d", "%d-%m-%Y"):
            try:
                return datetime.strptime(text, fmt).date()
            except ValueError:
                continue
        raise self.make_error("invalid")


def _blank_to_none(data: dict, names) -> dict:
    return {k: (None if k in names and isinstance(v, str) and not v.strip() else v) for k, v in data.items()}


class PatientSchema(Schema):
    full_name = fields.String(required=True, error_messages=REQUIRED,
                              validate=validate.Length(min=2, max=200, error=_l("Between 2 and 200 characters.")))
    birth_date = VnDate(load_default=None)
    birth_year = fields.Integer(load_default=None, error_messages={"invalid": _l("A year such as 1980.")},
                                validate=validate.Range(min=1900, max=2100, error=_l("A year such as 1980.")))
    sex = fields.String(required=True, error_messages=REQUIRED,
                        validate=validate.OneOf(SEXES, error=_l("Choose male or female.")))
    national_id = fields.String(load_default=None, validate=validate.Regexp(
        r"^\d{12}$", error=_l("The CCCD number must have exactly 12 digits.")))
    phone = fields.String(load_default=None, validate=validate.Regexp(
        PHONE_RE, error=_l("A phone number has 10 or 11 digits and starts with 0.")))
    passport_number = fields.String(load_default=None, validate=validate.Length(max=20))
    ethnicity_code = fields.String(load_default=None, validate=validate.Length(max=4))
    occupation_code = fields.String(load_default=None, validate=validate.Length(max=10))
    nationality = fields.String(load_default="VN", validate=validate.Regexp(
        r"^[A-Z]{2}$", error=_l("A two-letter country code such as VN.")))
    address_scheme = fields.String(load_default=None, validate=validate.OneOf(
        ("post2025", "pre2025"), error=_l("Choose one from the list.")))
    province_code = fields.String(load_default=None, validate=validate.Length(max=10))
    district_code = fields.String(load_default=None, validate=validate.Length(max=10))
    ward_code = fields.String(load_default=None, validate=validate.Length(max=10))
    street = fields.String(load_default=None, validate=validate.Length(max=300))
    address_text = fields.String(load_default=None, validate=validate.Length(max=500))
    current_address_text = fields.String(load_default=None, validate=validate.Length(max=500))
    bhyt_number = fields.String(load_default=None)  # checked by his.identity for a precise message
    bhyt_valid_from = VnDate(load_default=None)
    bhyt_valid_to = VnDate(load_default=None)
    bhyt_registered_facility = fields.String(load_default=None, validate=validate.Regexp(
        r"^\d{5}$", error=_l("The registered facility code has 5 digits.")))

    OPTIONAL = ("birth_date", "birth_year", "national_id", "phone", "passport_number", "ethnicity_code",
                "occupation_code", "address_scheme", "province_code", "district_code", "ward_code", "street",
                "address_text", "current_address_text", "bhyt_number", "bhyt_valid_from",
                "bhyt_valid_to", "bhyt_registered_facility")

    @pre_load
    def _clean(self, data, **_kwargs):
        data = _blank_to_none(dict(data), self.OPTIONAL + ("nationality",))
        for name in ("national_id", "phone", "bhyt_number"):
            if isinstance(data.get(name), str):
                data[name] = data[name].replace(" ", "").replace(".", "")
        if data.get("nationality") is None:
            data.pop("nationality", None)
        return data

    @validates_schema
    def _birth(self, data, **_kwargs):
        if data.get("birth_date") is None and data.get("birth_year") is None:
            raise ValidationError([_l("Give the date of birth, or at least the year.")], "birth_date")
        born = data.get("birth_date")  # "not in the future" is checked against the hospital's local day in register
        if born is not None and data.get("birth_year") not in (None, born.year):
            raise ValidationError([_l("The year does not match the date of birth.")], "birth_year")
        if data.get("province_code") or data.get("ward_code"):
            # An address on the administrative units: the ward must lie in the province (and district).
            try:
                geo.validate_address(data.get("address_scheme") or "post2025", data.get("province_code"),
                                     data.get("ward_code"), data.get("district_code"))
            except geo.AddressError as exc:
                raise ValidationError([exc.message], exc.field) from None
        start, end = data.get("bhyt_valid_from"), data.get("bhyt_valid_to")
        if start and end and end < start:
            raise ValidationError([_l("The card's end date is before its start date.")], "bhyt_valid_to")


class CardSchema(Schema):
    bhyt_number = fields.String(required=True, error_messages=REQUIRED)
    bhyt_valid_from = VnDate(load_default=None)
    bhyt_valid_to = VnDate(load_default=None)
    bhyt_registered_facility = fields.String(load_default=None, validate=validate.Regexp(
        r"^\d{5}$", error=_l("The registered facility code has 5 digits.")))

    @pre_load
    def _clean(self, data, **_kwargs):
        return _blank_to_none(dict(data), ("bhyt_valid_from", "bhyt_valid_to", "bhyt_registered_facility"))

    @validates_schema
    def _dates(self, data, **_kwargs):
        start, end = data.get("bhyt_valid_from"), data.get("bhyt_valid_to")
        if start and end and end < start:
            raise ValidationError([_l("The card's end date is before its start date.")], "bhyt_valid_to")


class PatientOutSchema(Schema):
    id = fields.Integer()
    code = fields.String()
    full_name = fields.String()
    birth_date = fields.Date(allow_none=True)
    birth_year = fields.Integer()
    sex = fields.String()
    national_id = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    address_text = fields.String(allow_none=True)
    merged_into_id = fields.Integer(allow_none=True)


class TicketOutSchema(Schema):
    id = fields.Integer()
    number = fields.Integer()
    display_number = fields.String()
    service_point = fields.Function(lambda t: t.service_point.code)
    day = fields.Date()
    priority_group = fields.String(allow_none=True)
    status = fields.String()
    patient_id = fields.Integer(allow_none=True)
    encounter_id = fields.Integer(allow_none=True)


class ScanInSchema(Schema):
    qr = fields.String(required=True, error_messages=REQUIRED)
    service_point = fields.String(required=True, error_messages=REQUIRED)
    pregnant = fields.Boolean(load_default=False)
    disabled = fields.Boolean(load_default=False)
    merit = fields.Boolean(load_default=False)
    emergency = fields.Boolean(load_default=False)


class ReceptionOutSchema(Schema):
    patient = fields.Nested(PatientOutSchema)
    created = fields.Boolean()
    ticket = fields.Nested(TicketOutSchema)
    encounter_code = fields.String()
    warnings = fields.List(fields.String())


def error_messages(exc: ValidationError) -> dict[str, str]:
    """{field: first message} for a form."""
    return {name: (msgs[0] if isinstance(msgs, list) else str(msgs)) for name, msgs in exc.messages.items()}

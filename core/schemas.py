"""Shapes of the platform's input and output (marshmallow), with messages through i18n."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from core.auth import MIN_PASSWORD_LENGTH, USERNAME_RE
from core.permissions import ROLES

REQUIRED = {"required": _l("Required field"), "null": _l("Required field"), "invalid": _l("Invalid value")}


class UserCreateSchema(Schema):
    username = fields.String(required=True, error_messages=REQUIRED, validate=validate.Regexp(
        USERNAME_RE, error=_l("3–80 characters: lower-case letters, digits, '.', '_' or '-'.")))
    full_name = fields.String(required=True, error_messages=REQUIRED,
                              validate=validate.Length(min=1, max=200, error=_l("Required field")))
    password = fields.String(load_default=None, validate=validate.Length(
        min=MIN_PASSWORD_LENGTH, error=_l("At least %(min)d characters.", min=MIN_PASSWORD_LENGTH)))
    roles = fields.List(fields.String(validate=validate.OneOf(list(ROLES), error=_l("Unknown role."))),
                        required=True, error_messages=REQUIRED,
                        validate=validate.Length(min=1, error=_l("Choose at least one role.")))
    is_machine = fields.Boolean(load_default=False)

    @validates_schema
    def _password_for_people(self, data, **_kwargs):
        # A person logs in with a password; a machine account has only API tokens.
        if not data.get("is_machine") and not data.get("password"):
            raise ValidationError([_l("Required field")], "password")


class UserSchema(Schema):
    id = fields.Integer()
    username = fields.String()
    full_name = fields.String()
    is_active = fields.Boolean()
    is_machine = fields.Boolean()
    roles = fields.Method("_roles")
    locked_until = fields.DateTime(allow_none=True)
    last_login_at = fields.DateTime(allow_none=True)

    def _roles(self, user):
        return sorted(user.role_codes)


class MeSchema(UserSchema):
    permissions = fields.List(fields.String())


class AuditEventSchema(Schema):
    id = fields.Integer()
    seq = fields.Integer()
    occurred_at = fields.DateTime()
    actor_id = fields.Integer(allow_none=True)
    actor_name = fields.String()
    action = fields.String()
    target_type = fields.String(allow_none=True)
    target_id = fields.String(allow_none=True)
    detail = fields.Dict()
    ip = fields.String(allow_none=True)
    hash = fields.String()


class JobSchema(Schema):
    id = fields.Integer()
    queue = fields.String()
    name = fields.String()
    status = fields.String()
    attempts = fields.Integer()
    max_attempts = fields.Integer()
    run_after = fields.DateTime()
    last_error = fields.String(allow_none=True)
    result = fields.Dict(allow_none=True)
    created_at = fields.DateTime()
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)


class ErrorSchema(Schema):
    error = fields.Dict(metadata={"description": "{code, message[, fields]}"})


class PageSchema(Schema):
    total = fields.Integer()
    page = fields.Integer()
    per_page = fields.Integer()

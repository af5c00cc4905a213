"""The JSON API under /api/v1, its OpenAPI document and browsable docs.

Callers authenticate with `Authorization: Bearer <token>` (machine accounts, integrations) or the
browser session; a cookie-authenticated call that changes something must carry the CSRF token in
the X-CSRFToken header. Each endpoint documents itself with `@operation(...)`; modules add theirs
to the same blueprint-independent registry through `register_operation`.
"""

from __future__ import annotations

from pathlib import Path

import swagger_ui_bundle
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, abort, current_app, g, jsonify, render_template, request, send_from_directory
from marshmallow import Schema

from core import audit, queue
from core.models import Job
from core.permissions import has_permission, permissions_of
from core.schemas import AuditEventSchema, ErrorSchema, JobSchema, MeSchema
from core.web import current_actor, db_session
from core.web.errors import render_error
from core.web.security import csrf, deny, public, require

API_VERSION = "1.0.0"
_OPERATIONS: list[dict] = []


def _api_guard():
    # Cookie-authenticated changes need the CSRF header; token calls cannot be forged by a page.
    if request.method not in ("GET", "HEAD", "OPTIONS") and not g.get("token_auth"):
        csrf.protect()
    if g.get("user") is not None and not has_permission(g.user, "api.access"):
        deny("api.access")


def api_blueprint(name: str, import_name: str, url_prefix: str = "/api/v1") -> Blueprint:
    """A blueprint of the JSON API: same authentication, CSRF rule, permission and JSON errors.

    Domain modules make theirs with this (e.g. `api_blueprint("his_api", __name__, "/api/v1")`).
    """
    blueprint = Blueprint(name, import_name, url_prefix=url_prefix)
    blueprint.before_request(_api_guard)
    blueprint.register_error_handler(404, lambda _exc: render_error(404))
    csrf.exempt(blueprint)  # replaced by _api_guard's own check
    return blueprint


bp = api_blueprint("api", __name__)


def register_operation(path: str, method: str, summary: str, *, tag: str, response: type[Schema] | None = None,
                       many: bool = False, paged: bool = False, parameters: list | None = None,
                       permission: str | None = None) -> None:
    _OPERATIONS.append({"path": path, "method": method.lower(), "summary": summary, "tag": tag,
                        "response": response, "many": many, "paged": paged, "parameters": parameters or [],
                        "permission": permission})


def operation(path: str, method: str, summary: str, **kwargs):
    """Document an endpoint of this blueprint (path in OpenAPI form, relative to /api/v1)."""
    register_operation(path, method, summary, **kwargs)
    return lambda view: view


def _query(name: str, description: str, kind: str = "string") -> dict:
    return {"in": "query", "name": name, "schema": {"type": kind}, "description": description}


PAGING = [_query("page", "page number, from 1", "integer"), _query("per_page", "rows per page (≤ 200)", "integer")]


def build_spec() -> dict:
    spec = APISpec(title="vnhis API", version=API_VERSION, openapi_version="3.0.3",
                   plugins=[MarshmallowPlugin()],
                   info={"description": "Hospital information system API. Authenticate with a Bearer "
                                        "token (machine accounts) or the browser session."},
                   servers=[{"url": "/api/v1"}])
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.schema("Error", schema=ErrorSchema)
    for op in _OPERATIONS:
        content = {}
        if op["response"] is not None:
            schema: dict = {"$ref": f"#/components/schemas/{_schema_name(spec, op['response'])}"}
            if op["many"]:
                schema = {"type": "array", "items": schema}
            if op["paged"]:
                schema = {"type": "object", "properties": {"items": schema, "total": {"type": "integer"},
                                                            "page": {"type": "integer"},
                                                            "per_page": {"type": "integer"}}}
            content = {"application/json": {"schema": schema}}
        error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        responses = {"200": {"description": "OK", **({"content": content} if content else {})},
                     "401": {"description": "not authenticated", **error}}
        if op["permission"]:
            responses["403"] = {"description": f"needs permission {op['permission']}", **error}
        spec.path(path=op["path"], operations={op["method"]: {
            "summary": op["summary"], "tags": [op["tag"]], "security": [{"bearer": []}],
            "parameters": op["parameters"] + (PAGING if op["paged"] else []),
            "responses": responses}})
    return spec.to_dict()


def _schema_name(spec: APISpec, schema_cls: type[Schema]) -> str:
    name = schema_cls.__name__.removesuffix("Schema")
    if name not in spec.components.schemas:
        spec.components.schema(name, schema=schema_cls)
    return name


def _paging() -> tuple[int, int]:
    page = max(1, request.args.get("page", 1, type=int) or 1)
    per_page = min(200, max(1, request.args.get("per_page", 50, type=int) or 50))
    return page, per_page


def paged(items, total: int, page: int, per_page: int, schema: Schema):
    return jsonify(items=schema.dump(items, many=True), total=total, page=page, per_page=per_page)


@bp.get("/me")
@operation("/me", "get", "The authenticated user, roles and permissions", tag="auth", response=MeSchema)
def me():
    user = g.user
    data = MeSchema().dump(user)
    data["permissions"] = sorted(permissions_of(user.role_codes))
    return jsonify(data)


@bp.get("/audit/events")
@require("admin.audit")
@operation("/audit/events", "get", "Search the audit trail (newest first)", tag="audit",
           response=AuditEventSchema, many=True, paged=True, permission="admin.audit",
           parameters=[_query("action", "exact action, or a prefix ending in '.'"),
                       _query("actor", "username"), _query("target_type", "table or kind"),
                       _query("target_id", "id of the target")])
def audit_events():
    page, per_page = _paging()
    filters = {k: request.args.get(k) or None for k in ("action", "actor", "target_type", "target_id")}
    rows, total = audit.search(db_session(), **filters, page=page, per_page=per_page)
    audit.record(db_session(), current_actor(), "audit.view", None, {"api": True, **filters})
    return paged(rows, total, page, per_page, AuditEventSchema())


@bp.get("/jobs")
@require("admin.jobs")
@operation("/jobs", "get", "Background jobs (newest first)", tag="jobs", response=JobSchema, many=True,
           paged=True, permission="admin.jobs",
           parameters=[_query("status", "pending, queued, running, done or dead"), _query("name", "job name")])
def jobs():
    page, per_page = _paging()
    rows, total = queue.list_jobs(db_session(), status=request.args.get("status") or None,
                                  name=request.args.get("name") or None, page=page, per_page=per_page)
    return paged(rows, total, page, per_page, JobSchema())


@bp.get("/jobs/<int:job_id>")
@require("admin.jobs")
@operation("/jobs/{job_id}", "get", "One background job", tag="jobs", response=JobSchema,
           permission="admin.jobs",
           parameters=[{"in": "path", "name": "job_id", "required": True, "schema": {"type": "integer"}}])
def job(job_id: int):
    record = db_session().get(Job, job_id)
    if record is None:
        abort(404)
    return jsonify(JobSchema().dump(record))


@bp.get("/openapi.json")
@public
def openapi():
    return jsonify(build_spec())


SWAGGER_DIR = Path(swagger_ui_bundle.swagger_ui_path)


@bp.get("/docs")
@public
def docs():
    return render_template("core/api_docs.html")


@bp.get("/docs/assets/<path:filename>")
@public
def docs_assets(filename: str):
    # Swagger UI ships inside the swagger-ui-bundle package: no CDN, works offline.
    return send_from_directory(SWAGGER_DIR, filename, max_age=current_app.get_send_file_max_age(filename))

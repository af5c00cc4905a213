"""Who is asking, and may they: session cookies, API tokens, CSRF, the `require` decorator.

Every endpoint needs a logged-in user unless it is marked `@public`; `@require("perm")` adds a
permission check whose denials are audited.
"""

from __future__ import annotations

from functools import wraps

from flask import abort, current_app, flash, g, jsonify, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError, CSRFProtect

from core import audit, auth
from core.permissions import has_permission
from core.web import config, current_actor, current_user, db_session

csrf = CSRFProtect()
_PUBLIC = "_vnhis_public"


def public(view):
    setattr(view, _PUBLIC, True)
    return view


def _is_public(endpoint: str | None) -> bool:
    if endpoint is None or endpoint == "static" or endpoint.endswith(".static"):
        return True  # stylesheets and scripts, the app's and each blueprint's
    view = current_app.view_functions.get(endpoint)
    return bool(view and getattr(view, _PUBLIC, False))


JSON_TYPES = ("application/json", "application/dicom+json")


def add_api_prefix(app, prefix: str) -> None:
    """Paths under `prefix` are machine APIs: refusals are 401/403 JSON, never a login redirect."""
    app.extensions.setdefault("vnhis.api_prefixes", ["/api/"]).append(prefix)


def wants_json() -> bool:
    prefixes = tuple(current_app.extensions.get("vnhis.api_prefixes", ["/api/"]))
    return request.path.startswith(prefixes) or request.accept_mimetypes.best in JSON_TYPES


def _load_user() -> None:
    g.user, g.user_session = None, None
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        token = header[7:].strip()
        g.user = auth.authenticate_token(db_session(), token)
        g.token_auth = g.user is not None
        if g.user is None:
            # Unknown, revoked or a disabled account's token: only its prefix goes to the trail.
            audit.record(db_session(), current_actor(), "auth.token_failed", None,
                         {"prefix": token[:12], "path": request.path})
            db_session().commit()
        return
    sid = session.get("sid")
    if not sid:
        return
    cfg = config()
    record, why = auth.check_session(db_session(), sid, cfg.session_idle_minutes, cfg.session_max_hours)
    if record is None:
        session.clear()
        if why == "expired":
            db_session().commit()  # keep the audit event of the expiry
            g.session_expired = True
        return
    g.user, g.user_session = record.user, record


def allow_preflight(app, blueprint_name: str) -> None:
    """Let CORS preflights (OPTIONS, sent without credentials by design) through to `blueprint_name`, which
    answers them itself."""
    app.extensions.setdefault("vnhis.cors_blueprints", set()).add(blueprint_name)


def _is_preflight() -> bool:
    return (request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
            and request.blueprint in current_app.extensions.get("vnhis.cors_blueprints", ()))


def _login_gate():
    _load_user()
    if g.user is not None or _is_public(request.endpoint) or _is_preflight():
        return None
    if wants_json():
        return jsonify(error={"code": "unauthenticated",
                              "message": _("Authentication required: log in or send an API token.")}), 401
    if g.get("session_expired"):
        flash(_("Your session has expired. Please log in again."), "warning")
    return redirect(url_for("auth.login", next=request.full_path if request.query_string else request.path))


def _commit_on_success(response):
    """Successful requests commit what the handler left (audit of reads, last-seen times)."""
    session = g.get("db_session")
    if session is not None and response.status_code < 400:
        session.commit()
    return response


def deny(permission: str):
    """Audit a refusal and answer 403."""
    sess = db_session()
    sess.rollback()
    audit.record(sess, current_actor(), "permission.denied", None,
                 {"permission": permission, "path": request.path, "method": request.method})
    sess.commit()
    abort(403)


def require(*permissions: str):
    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            for perm in permissions:
                if not has_permission(g.get("user"), perm):
                    deny(perm)
            return view(*args, **kwargs)

        wrapped.permissions = permissions
        return wrapped

    return decorator


def _csrf_failed(error: CSRFError):
    sess = db_session()
    sess.rollback()
    audit.record(sess, current_actor(), "security.csrf_failed", None,
                 {"path": request.path, "reason": error.description})
    sess.commit()
    message = _("The form has expired or is invalid (missing security token). Reload the page and try again.")
    if wants_json():
        return jsonify(error={"code": "csrf_failed", "message": message}), 400
    return render_template("errors/error.html", code=400, title=_("Invalid request"), message=message), 400


def init_app(app) -> None:
    app.before_request(_login_gate)  # before CSRF, so a refusal is audited with the user's name
    csrf.init_app(app)
    app.after_request(_commit_on_success)
    app.register_error_handler(CSRFError, _csrf_failed)

    @app.context_processor
    def _inject():
        user = current_user()

        def can(perm: str) -> bool:
            return has_permission(user, perm)

        nav = [e for e in app.extensions.get("vnhis.nav", []) if e.permission is None or can(e.permission)]
        return {"current_user": user, "can": can, "nav_entries": sorted(nav, key=lambda e: e.order)}

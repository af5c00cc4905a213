"""Dashboard, language switch and the health probe."""

from __future__ import annotations

import redis
from flask import Blueprint, current_app, jsonify, redirect, render_template, request, session, url_for
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from core import queue
from core.i18n import LANGUAGES
from core.permissions import has_permission
from core.web import current_user, db_session, safe_next
from core.web.security import public

bp = Blueprint("main", __name__)


@bp.get("/")
def dashboard():
    user = current_user()
    job_counts = queue.counts_by_status(db_session()) if has_permission(user, "admin.jobs") else None
    return render_template("core/dashboard.html", job_counts=job_counts)


@bp.get("/lang/<code>")
@public
def set_language(code: str):
    if code in LANGUAGES:
        session["lang"] = code
    return redirect(safe_next(request.referrer, url_for("main.dashboard")))


@bp.get("/healthz")
@public
def healthz():
    """Database and Redis state for load balancers and monitoring; 503 when the database is down."""
    body = {"status": "ok", "database": {"ok": True}, "redis": {"configured": False, "ok": None}}
    try:
        db_session().execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        body["database"] = {"ok": False, "error": type(getattr(exc, "orig", exc)).__name__}
        body["status"] = "error"
    client = current_app.extensions.get("vnhis.redis")
    if client is not None:
        body["redis"]["configured"] = True
        try:
            client.ping()
            body["redis"]["ok"] = True
        except redis.RedisError as exc:
            # Jobs wait in the outbox while Redis is down: degraded, not down.
            body["redis"].update(ok=False, error=type(exc).__name__)
            if body["status"] == "ok":
                body["status"] = "degraded"
    return jsonify(body), 503 if body["status"] == "error" else 200

"""Error pages in the user's language (and JSON errors for the API)."""

from __future__ import annotations

import logging

from flask import jsonify, render_template
from flask_babel import gettext as _
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from core.web.security import wants_json

log = logging.getLogger("vnhis.web")


def _texts(code: int) -> tuple[str, str]:
    return {
        400: (_("Invalid request"), _("The request could not be understood. Check what you entered.")),
        403: (_("Not allowed"), _("You do not have permission to open this page or do this action. "
                                  "The refusal has been recorded.")),
        404: (_("Page not found"), _("The page you asked for does not exist or has moved.")),
        405: (_("Invalid request"), _("This action is not available here.")),
        413: (_("File too large"), _("The file you sent is larger than the system accepts.")),
        422: (_("Invalid value"), _("Some fields are not valid. Check them and try again.")),
        500: (_("System error"), _("Something went wrong on our side. Nothing was saved. "
                                   "Try again, and tell the IT team if it keeps happening.")),
        503: (_("Service unavailable"), _("The database cannot be reached right now. Try again in a moment.")),
    }.get(code, (_("Error"), _("Something went wrong.")))


def render_error(code: int, message: str | None = None):
    title, default = _texts(code)
    if wants_json():
        return jsonify(error={"code": code, "message": message or default}), code
    return render_template("errors/error.html", code=code, title=title, message=message or default), code


def init_app(app) -> None:
    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        return render_error(exc.code or 500)

    @app.errorhandler(OperationalError)
    def _db_down(exc: OperationalError):
        log.error("database unavailable: %s", str(exc.orig).splitlines()[0] if exc.orig else exc)
        return render_error(503)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return render_error(500)

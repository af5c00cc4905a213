"""The web edge of the platform: request session, current user, navigation registry.

Domain blueprints use these helpers; they parse input, call an operation, commit, render.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, g, request
from sqlalchemy.orm import Session

from core.audit import Actor


def db_session() -> Session:
    """The request's session (opened on first use, closed — rolled back if uncommitted — at teardown)."""
    if "db_session" not in g:
        g.db_session = current_app.extensions["vnhis.session_factory"]()
    return g.db_session


def client_ip() -> str | None:
    # Behind a reverse proxy, VNHIS_PROXY_HOPS makes remote_addr the client's (werkzeug ProxyFix).
    return request.remote_addr


def current_user():
    return g.get("user")


def current_actor() -> Actor:
    user = current_user()
    if user is None:
        return Actor(id=None, name="anonymous", ip=client_ip())
    return Actor.of(user, client_ip())


def config():
    return current_app.extensions["vnhis.config"]


@dataclass(frozen=True)
class NavEntry:
    endpoint: str
    label: object  # lazy string
    permission: str | None
    section: object
    order: int = 100


def add_nav(app, entry: NavEntry) -> None:
    app.extensions.setdefault("vnhis.nav", []).append(entry)


def safe_next(target: str | None, default: str) -> str:
    """Only same-site paths are followed after login or a language switch (no open redirect)."""
    from urllib.parse import urlsplit

    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        if parts.netloc != request.host:
            return default
        target = parts.path + (f"?{parts.query}" if parts.query else "")
    if not target.startswith("/") or target.startswith("//"):
        return default
    return target


def init_templating(app) -> None:
    """Helpers every template may use."""
    from urllib.parse import urlencode

    from flask_babel import lazy_gettext as _l

    from core.db import utcnow
    from core.permissions import ROLES

    job_status_labels = {"pending": _l("Waiting"), "queued": _l("Queued"), "running": _l("Running"),
                         "done": _l("Done"), "dead": _l("Failed")}

    def query_with(args, **changes) -> str:
        merged = {k: v for k, v in args.items() if v} | changes
        return urlencode(merged)

    app.jinja_env.globals.update(now=utcnow, query_with=query_with, roles_label=lambda c: ROLES.get(c, c),
                                 job_status_labels=lambda: job_status_labels)

"""The Flask application factory: `gunicorn 'core.app:create_app()'`."""

from __future__ import annotations

import os
import sys

import redis
from flask import Flask, g
from werkzeug.middleware.proxy_fix import ProxyFix

from core import audit, i18n, modules, queue
from core import config as config_mod
from core import db as db_mod
from core.web import admin, api, auth_views, errors, init_templating, main, security


def create_app(config: config_mod.Config | None = None, *, session_factory=None,
               check_database: bool = True) -> Flask:
    """Build the application.

    config: defaults to the environment; then a bad setting or an unreachable database prints one
        line and exits with status 3, which makes gunicorn stop instead of restarting workers.
    session_factory: tests hand in one bound to their rolled-back transaction.
    """
    if config is None:
        try:
            return _build(config_mod.load(), session_factory, check_database)
        except config_mod.ConfigError as exc:
            print(f"vnhis: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(3) from None
    return _build(config, session_factory, check_database)


def _build(cfg: config_mod.Config, session_factory, check_database: bool) -> Flask:
    app = Flask(__name__, template_folder="templates", static_folder="static")
    app.config.update(
        SECRET_KEY=cfg.secret_key,
        SESSION_COOKIE_NAME="vnhis_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=cfg.is_production,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the login session
        MAX_CONTENT_LENGTH=64 * 1024 * 1024,
        TESTING=cfg.env == "test",
    )
    app.extensions["vnhis.config"] = cfg
    if cfg.proxy_hops:
        # Behind nginx: the client's address and https come from the proxy's headers.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=cfg.proxy_hops, x_proto=cfg.proxy_hops)
    try:
        cfg.storage_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise config_mod.ConfigError(f"VNHIS_STORAGE_DIR {cfg.storage_dir} cannot be created: "
                                     f"{exc.strerror}") from None
    if not os.access(cfg.storage_dir, os.W_OK | os.X_OK):
        raise config_mod.ConfigError(f"VNHIS_STORAGE_DIR {cfg.storage_dir} is not writable by this user")

    if session_factory is None:
        engine = db_mod.make_engine(cfg.database_url)
        if check_database:
            db_mod.check_connection(engine)
        session_factory = db_mod.make_session_factory(engine)
        if cfg.env != "test":
            audit.start_sealer(engine)  # chain audit events just after the requests' commits
    app.extensions["vnhis.session_factory"] = session_factory
    app.extensions["vnhis.redis"] = redis.Redis.from_url(
        cfg.redis_url, socket_connect_timeout=1, socket_timeout=2) if cfg.redis_url else None
    _wire_queue(app, cfg, session_factory)

    i18n.init_app(app)
    init_templating(app)
    security.init_app(app)
    errors.init_app(app)
    for blueprint in (auth_views.bp, main.bp, admin.bp, api.bp):
        app.register_blueprint(blueprint)
    for module in modules.load(cfg.modules):
        init = getattr(module, "init_app", None)
        if init is not None:
            init(app)

    @app.teardown_appcontext
    def _close_session(exc):
        session = g.pop("db_session", None)
        if session is not None:
            session.close()  # rolls back whatever the handler did not commit

    return app


def _wire_queue(app: Flask, cfg, session_factory) -> None:
    """After a commit, new jobs go to Redis at once; without Redis an in-process runner runs them."""
    if cfg.redis_url:
        dispatcher = queue.RedisDispatcher(session_factory, app.extensions["vnhis.redis"])
    else:
        runner = queue.InProcessRunner(session_factory)
        app.extensions["vnhis.runner"] = runner
        dispatcher = queue.LocalDispatcher(runner)
        if cfg.env != "test":
            runner.start()
    session_factory.configure(info={**(session_factory.kw.get("info") or {}),
                                    "vnhis.queue.dispatcher": dispatcher})

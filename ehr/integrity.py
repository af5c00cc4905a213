"""What `vnhis restore` and `vnhis ehr check` re-check: every stored version against its hash, every
signature against its bytes and certificate."""

from __future__ import annotations

from pathlib import Path


def app_context(cfg):
    """An application context in which forms, templates and messages render in Vietnamese, as on screen."""
    from flask import Flask
    from flask_babel import Babel

    from core import i18n

    app = Flask("vnhis.ehr.cli", template_folder=str(Path(__file__).parent / "templates"))
    app.extensions["vnhis.config"] = cfg
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = i18n.translation_dirs(app)
    Babel(app, default_locale=i18n.DEFAULT_LOCALE)
    return app.app_context()


def check(session, cfg) -> tuple[str, list[str]]:
    from ehr import exchange

    with app_context(cfg):
        result = exchange.check_all(session)
    return f"{result.versions} record version(s) and {result.signatures} signature(s) verified", result.failures

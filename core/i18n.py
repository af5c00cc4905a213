"""Vietnamese first, English available: Flask-Babel set-up and the display formats of
shared/reference/glossary-vi.md (dd/mm/yyyy, HH:mm, 1.250.000 ₫)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from flask import current_app, g, session
from flask_babel import Babel

LANGUAGES = {"vi": "Tiếng Việt", "en": "English"}
DEFAULT_LOCALE = "vi"


def select_locale() -> str:
    lang = session.get("lang")
    if lang in LANGUAGES:
        return lang
    user = g.get("user")
    if user is not None and user.locale in LANGUAGES:
        return user.locale
    return DEFAULT_LOCALE


def select_timezone() -> str:
    return current_app.extensions["vnhis.config"].timezone


def format_datetime(value: datetime | None, with_seconds: bool = False) -> str:
    if value is None:
        return ""
    local = value.astimezone(current_app.extensions["vnhis.config"].tz)
    return local.strftime("%d/%m/%Y %H:%M:%S" if with_seconds else "%d/%m/%Y %H:%M")


def format_date(value: date | None) -> str:
    return "" if value is None else value.strftime("%d/%m/%Y")


def format_money(value: Decimal | int | None) -> str:
    """VND: dot for thousands, no decimals, '₫' after a non-breaking space."""
    if value is None:
        return ""
    whole = int(Decimal(value).quantize(Decimal(1)))
    sign = "-" if whole < 0 else ""
    return f"{sign}{abs(whole):,}".replace(",", ".") + "\u00a0₫"


def translation_dirs(app) -> str:
    """The platform's catalogue plus one per installed module that ships its own."""
    dirs = [str(Path(__file__).parent / "translations")]
    for name in app.extensions["vnhis.config"].modules:
        module_dir = Path(__file__).parent.parent / name / "translations"
        if module_dir.is_dir():
            dirs.append(str(module_dir))
    return ";".join(dirs)


def init_app(app) -> None:
    app.config["BABEL_DEFAULT_LOCALE"] = DEFAULT_LOCALE
    app.config["BABEL_DEFAULT_TIMEZONE"] = "UTC"
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = translation_dirs(app)
    # A Babel per app: Flask-Babel caches the merged catalogue on the Babel object, so apps of one process
    # with other modules (tests, tools) would otherwise share the first app's translations.
    Babel(app, locale_selector=select_locale, timezone_selector=select_timezone)
    app.jinja_env.filters.update(dt=format_datetime, date=format_date, money=format_money)
    app.jinja_env.globals.update(LANGUAGES=LANGUAGES, current_locale=select_locale)


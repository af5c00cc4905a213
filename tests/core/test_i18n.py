"""Every UI string has its Vietnamese translation, the shipped .mo matches the .po, formats are Vietnamese."""

import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from core.i18n import format_date, format_datetime, format_money

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["core", "his", "ehr", "lis", "pacs", "billing"]  # each keeps its own catalogue


def _catalogue(package: str) -> Path:
    return ROOT / package / "translations" / "vi" / "LC_MESSAGES"


def _messages(catalog) -> dict:
    """msgid -> translation; plural entries keyed by their singular, with all their forms."""
    def plain(value):
        return value if isinstance(value, str) else tuple(value)

    return {(m.id if isinstance(m.id, str) else m.id[0]): plain(m.string) for m in catalog if m.id}


@pytest.mark.parametrize("package", PACKAGES)
def test_every_ui_string_is_translated(tmp_path, package):
    pot = tmp_path / "messages.pot"
    pybabel = Path(sys.executable).parent / "pybabel"
    subprocess.run([str(pybabel), "extract", "-F", "babel.cfg", "-k", "_l", "-k", "lazy_gettext", "-o", str(pot),
                    package], cwd=ROOT, check=True, capture_output=True)
    with pot.open("rb") as f:
        wanted = set(_messages(read_po(f)))
    if not wanted:
        return
    with (_catalogue(package) / "messages.po").open("rb") as f:
        have = _messages(read_po(f))
    missing = sorted(m for m in wanted if not all(have.get(m) or ("",)))
    assert missing == [], (f"untranslated in {package} (run scripts/i18n.sh {package}, then translate): "
                           + "; ".join(missing[:10]))


@pytest.mark.parametrize("package", [p for p in PACKAGES if (_catalogue(p) / "messages.po").exists()])
def test_compiled_catalogue_is_up_to_date(package):
    with (_catalogue(package) / "messages.po").open("rb") as f:
        source = _messages(read_po(f))
    with (_catalogue(package) / "messages.mo").open("rb") as f:
        compiled = _messages(read_mo(f))
    assert compiled == source, f"{package}/translations: messages.mo is stale: run scripts/i18n.sh {package}"


def test_vietnamese_display_formats(app):
    with app.app_context():
        # 03:05 UTC is 10:05 in Hanoi.
        assert format_datetime(datetime(2026, 1, 2, 3, 5, tzinfo=UTC)) == "02/01/2026 10:05"
        assert format_date(datetime(2026, 12, 31).date()) == "31/12/2026"
        assert format_money(Decimal("1250000")) == "1.250.000\u00a0₫"
        assert format_money(-45000) == "-45.000\u00a0₫"

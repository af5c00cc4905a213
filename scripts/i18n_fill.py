"""Fill empty entries of a package's Vietnamese catalogue from a Python file defining T = {msgid: msgstr}.

    .venv/bin/python scripts/i18n_fill.py PACKAGE FILE.py     (then run scripts/i18n.sh PACKAGE to compile)
Existing translations are never overwritten; prints what is still missing.
"""

import runpy
import sys
from pathlib import Path

from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parents[1]


def main(package: str, source: str) -> None:
    catalogue = ROOT / package / "translations/vi/LC_MESSAGES/messages.po"
    table = runpy.run_path(source)["T"]
    with catalogue.open("rb") as f:
        catalog = read_po(f)
    filled, missing = 0, []
    for message in catalog:
        if not message.id:
            continue
        key = message.id if isinstance(message.id, str) else message.id[0]
        empty = not message.string if isinstance(message.string, str) else not all(message.string)
        if empty and key in table:
            message.string = table[key] if isinstance(message.id, str) else (table[key],)
            filled += 1
        elif empty:
            missing.append(key)
    with catalogue.open("wb") as f:
        write_po(f, catalog, width=120)
    print(f"filled {filled}; still missing {len(missing)}")
    for key in missing:
        print("  ", repr(key))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

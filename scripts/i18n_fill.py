"""Fill empty entries of the Vietnamese catalogue from a Python file defining T = {msgid: msgstr}.

    .venv/bin/python scripts/i18n_fill.py FILE.py     (then run scripts/i18n.sh to compile)
Existing translations are never overwritten; prints what is still missing.
"""

import runpy
import sys
from pathlib import Path

from babel.messages.pofile import read_po, write_po

CATALOGUE = Path(__file__).resolve().parents[1] / "core/translations/vi/LC_MESSAGES/messages.po"


def main(source: str) -> None:
    table = runpy.run_path(source)["T"]
    with CATALOGUE.open("rb") as f:
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
    with CATALOGUE.open("wb") as f:
        write_po(f, catalog, width=120)
    print(f"filled {filled}; still missing {len(missing)}")
    for key in missing:
        print("  ", repr(key))


if __name__ == "__main__":
    main(sys.argv[1])

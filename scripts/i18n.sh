#!/usr/bin/env bash
# Refresh the Vietnamese catalogue: re-extract UI strings, merge them into core/translations/vi (no fuzzy
# guesses) and compile the .mo. After adding strings: run this, translate the empty msgstr entries, run it again.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYBABEL="$ROOT/.venv/bin/pybabel"
POT="$(mktemp --suffix=.pot)"
trap 'rm -f "$POT"' EXIT
cd "$ROOT"

"$PYBABEL" extract -F babel.cfg -k _l -k lazy_gettext \
    --project=vnhis --version=0.1.0 --copyright-holder="vnhis contributors" \
    -o "$POT" core his ehr lis pacs billing
"$PYBABEL" update -i "$POT" -d core/translations -l vi --no-fuzzy-matching --ignore-obsolete
"$PYBABEL" compile -d core/translations -l vi --statistics

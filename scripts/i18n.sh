#!/usr/bin/env bash
# Refresh the Vietnamese catalogues, one per package (core/translations, his/translations, lis/translations…):
# re-extract the package's UI strings, merge them into its catalogue (no fuzzy guesses) and compile the .mo.
#   bash scripts/i18n.sh [PACKAGE ...]      (default: every package)
# After adding strings: run this, translate the empty msgstr entries (scripts/i18n_fill.py), run it again.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYBABEL="$ROOT/.venv/bin/pybabel"
POT="$(mktemp --suffix=.pot)"
trap 'rm -f "$POT"' EXIT
cd "$ROOT"

for pkg in "${@:-core his ehr lis pacs billing}"; do
  for p in $pkg; do
    "$PYBABEL" -q extract -F babel.cfg -k _l -k lazy_gettext \
        --project=vnhis --version=0.1.0 --copyright-holder="vnhis contributors" -o "$POT" "$p"
    if ! grep -q '^msgid "[^"]' "$POT"; then continue; fi  # no UI strings in this package
    if [ ! -f "$p/translations/vi/LC_MESSAGES/messages.po" ]; then
        "$PYBABEL" -q init -i "$POT" -d "$p/translations" -l vi
        sed -i '0,/^#, fuzzy$/{/^#, fuzzy$/d}' "$p/translations/vi/LC_MESSAGES/messages.po"  # header only
    fi
    "$PYBABEL" -q update -i "$POT" -d "$p/translations" -l vi --no-fuzzy-matching --ignore-obsolete
    "$PYBABEL" compile -d "$p/translations" -l vi --statistics
  done
done

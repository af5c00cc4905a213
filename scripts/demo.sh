#!/usr/bin/env bash
# Install vnhis into ./.venv and start the embedded demo on http://127.0.0.1:8000
# (SQLite under ./var, in-process job queue; no PostgreSQL or Redis needed).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_venv
cd "$VNHIS_ROOT"
exec "$VENV/bin/vnhis" demo "$@"

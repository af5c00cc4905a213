#!/usr/bin/env bash
# Install vnhis into ./.venv and start the embedded demo on http://127.0.0.1:8000
# (SQLite under ./var, in-process job queue; no PostgreSQL or Redis needed), with the BHYT gateway
# simulator on http://127.0.0.1:8090 standing in for the insurer's portal (switch it to slow or down
# with: curl -X POST -H 'Content-Type: application/json' -d '{"mode": "down"}' http://127.0.0.1:8090/admin/settings).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_venv
cd "$VNHIS_ROOT"
SIM_PORT="${VNHIS_GATEWAY_SIM_PORT:-8090}"
export VNHIS_BHYT_GATEWAY_URL="http://127.0.0.1:$SIM_PORT"
export VNHIS_BHYT_GATEWAY_USER="${VNHIS_BHYT_GATEWAY_USER:-demo.bhyt}"
export VNHIS_BHYT_GATEWAY_PASSWORD="${VNHIS_BHYT_GATEWAY_PASSWORD:-demo-cong-bhyt}"
export VNHIS_BHYT_GATEWAY_TIMEOUT="${VNHIS_BHYT_GATEWAY_TIMEOUT:-3}"
"$VENV/bin/vnhis" gateway-sim --port "$SIM_PORT" &
SIM_PID=$!
trap 'kill "$SIM_PID" 2>/dev/null || true' EXIT
say "BHYT gateway simulator on $VNHIS_BHYT_GATEWAY_URL (pid $SIM_PID)"
"$VENV/bin/vnhis" demo "$@"

#!/usr/bin/env bash
# Run the whole test suite against real PostgreSQL and Redis (installed with apt and started when
# absent, as root), with headless Chromium for the browser tests. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_venv test
ensure_postgres
ensure_redis
ensure_chromium
ensure_tools
cd "$VNHIS_ROOT"
export VNHIS_TEST_REDIS_URL="${VNHIS_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"
exec "$VENV/bin/python" -m pytest "$@"

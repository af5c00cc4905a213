# Shared by scripts/demo.sh, scripts/test.sh and .ci/run: set up what vnhis needs on Debian.
# Sourced, not run. Installs system packages only when missing and only as root.

VNHIS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$VNHIS_ROOT/.venv"

say() { printf '[vnhis] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
is_root() { [ "$(id -u)" = 0 ]; }

APT_UPDATED=0
apt_install() {
    is_root || die "$* missing and not root: install it with: sudo apt-get install $*"
    if [ "$APT_UPDATED" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || die "apt-get update failed"
        APT_UPDATED=1
    fi
    say "installing $* (apt)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
        || die "apt-get install $* failed"
}

python_bin() {
    for py in python3.13 python3.12 python3.11 python3; do
        if command -v "$py" >/dev/null && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$py"; return
        fi
    done
    die "Python 3.11 or newer is needed"
}

# ensure_venv [extras]: .venv with vnhis installed (editable); reinstalls only when pyproject.toml changes.
ensure_venv() {
    local extras="${1:-}" py stamp want
    py="$(python_bin)"
    if [ ! -x "$VENV/bin/python" ]; then
        if ! "$py" -m venv "$VENV" 2>/dev/null; then
            rm -rf "$VENV"
            # Debian ships venv/ensurepip separately.
            apt_install python3-venv
            "$py" -m venv "$VENV" || die "cannot create $VENV"
        fi
        "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
    fi
    stamp="$VENV/.vnhis-installed"
    want="$(sha256sum "$VNHIS_ROOT/pyproject.toml" | cut -d' ' -f1) ${extras}"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        say "installing Python packages into .venv${extras:+ (with $extras)}"
        "$VENV/bin/python" -m pip install -q -e "$VNHIS_ROOT${extras:+[$extras]}" || die "pip install failed"
        echo "$want" > "$stamp"
    fi
}

# ensure_postgres: a PostgreSQL server answering on 127.0.0.1:5432; exports VNHIS_TEST_DATABASE_URL.
ensure_postgres() {
    if ! command -v pg_ctlcluster >/dev/null && ! command -v pg_isready >/dev/null; then
        apt_install postgresql
    fi
    if ! pg_isready -q -h 127.0.0.1 -p 5432; then
        local version
        version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)"
        [ -n "$version" ] || apt_install postgresql
        version="$(ls /etc/postgresql | sort -V | tail -n1)"
        say "starting PostgreSQL $version"
        pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null \
            || pg_ctlcluster "$version" main start || die "cannot start PostgreSQL $version"
        for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
        pg_isready -q -h 127.0.0.1 -p 5432 || die "PostgreSQL does not answer on 127.0.0.1:5432"
    fi
    if [ -z "${VNHIS_TEST_DATABASE_URL:-}" ]; then
        if psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
            export VNHIS_TEST_DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:5432/vnhis_test"
        elif is_root && command -v runuser >/dev/null; then
            # A stock Debian cluster wants a password on TCP: give the superuser a local test password.
            runuser -u postgres -- psql -qc "ALTER USER postgres PASSWORD 'vnhis-test'" >/dev/null \
                || die "cannot set a password for the postgres user"
            export VNHIS_TEST_DATABASE_URL="postgresql+psycopg://postgres:vnhis-test@127.0.0.1:5432/vnhis_test"
        else
            die "cannot log in to PostgreSQL as postgres on 127.0.0.1; set VNHIS_TEST_DATABASE_URL"
        fi
    fi
}

# ensure_redis: a Redis server answering on 127.0.0.1:6379.
redis_up() { "$VENV/bin/python" -c 'import redis; redis.Redis(socket_connect_timeout=1).ping()' 2>/dev/null; }
ensure_redis() {
    redis_up && return
    command -v redis-server >/dev/null || apt_install redis-server
    say "starting Redis"
    mkdir -p /tmp/vnhis-redis
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
        --dir /tmp/vnhis-redis --logfile /tmp/vnhis-redis/redis.log >/dev/null || die "cannot start Redis"
    for _ in $(seq 1 20); do redis_up && return; sleep 0.5; done
    die "Redis does not answer on 127.0.0.1:6379"
}

ensure_chromium() {
    [ -x /usr/bin/chromium ] || apt_install chromium fonts-dejavu-core
}

# ensure_tools: the real peers the protocol tests talk to and the native libraries PDF output needs.
#   dcmtk (storescu, findscu, movescu, getscu, storescp), xmlsec1 (claim signatures), openssl (CMS
#   signatures), pango (weasyprint), DejaVu fonts (Vietnamese glyphs in PDFs).
ensure_tools() {
    local missing=() cmd pkg
    for pair in storescu:dcmtk xmlsec1:xmlsec1 openssl:openssl; do
        cmd="${pair%%:*}"; pkg="${pair#*:}"
        command -v "$cmd" >/dev/null || missing+=("$pkg")
    done
    ldconfig -p 2>/dev/null | grep -q libpangoft2-1.0 || missing+=(libpangoft2-1.0-0)
    [ -d /usr/share/fonts/truetype/dejavu ] || missing+=(fonts-dejavu-core)
    [ "${#missing[@]}" = 0 ] || apt_install "${missing[@]}"
}

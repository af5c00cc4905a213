"""The reception flow over HTTP: gunicorn (`vnhis serve`) on PostgreSQL, driven by wrk.

    .venv/bin/python scripts/bench/reception_http.py [--url postgresql+psycopg://postgres@127.0.0.1/vnhis_bench_rx]
        [--workers 2] [--threads 8] [--connections 16] [--seconds 30]

Each request is POST /api/v1/reception/scan with a CCCD QR (about 70 % new patients, 30 % repeats):
find-or-register, open the visit, give a ticket — the real operation with its audit events, on a
fresh database (re-created). Needs Debian's wrk. Prints wrk's figures: requests/s and p50/p95/p99.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from sqlalchemy.engine import make_url

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from core import auth  # noqa: E402
from core.audit import Actor  # noqa: E402
from core.db import make_engine, make_session_factory  # noqa: E402
from core.modules import import_models  # noqa: E402
from scripts.bench.patients_generate import recreate  # noqa: E402


def seed(url: str) -> str:
    import_models()
    from his.models.org import Department, Room, ServicePoint

    engine = make_engine(url)
    with make_session_factory(engine)() as session:
        dept = Department(code="KKB", name="Khoa Khám bệnh", is_clinical=True, active=True)
        session.add(dept)
        session.flush()
        for n in range(1, 5):
            room = Room(department_id=dept.id, code=f"P{n}", name=f"Phòng khám {n}", kind="exam", active=True)
            session.add(room)
            session.flush()
            session.add(ServicePoint(code=f"PK{n}", name=room.name, kind="exam_room", room_id=room.id,
                                     normal_per_priority=2, active=True))
        user = auth.create_user(session, Actor.system("bench"), username="bench-desk", full_name="Bench",
                                password=None, roles=["receptionist"], is_machine=True)
        token, _ = auth.create_token(session, Actor.system("bench"), user, "bench")
        session.commit()
    engine.dispose()
    return token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/vnhis_bench_rx")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args()

    recreate(args.url)
    token = seed(args.url)
    var = Path(tempfile.mkdtemp(prefix="vnhis-bench-"))
    env = {**os.environ, "VNHIS_DATABASE_URL": make_url(args.url).render_as_string(False),
           "VNHIS_SECRET_KEY": "bench-" + "k" * 40, "VNHIS_ENV": "production", "VNHIS_LOG_LEVEL": "WARNING",
           "VNHIS_VAR_DIR": str(var), "VNHIS_STORAGE_DIR": str(var / "storage")}
    server = subprocess.Popen([sys.executable, "-m", "core", "serve", "--port", str(args.port),
                               "--workers", str(args.workers), "--threads", str(args.threads)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{args.port}"
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1)  # noqa: S310 (local URL)
                break
            except OSError:
                time.sleep(0.1)
        result = subprocess.run(["wrk", "-t", str(min(2, args.connections)), "-c", str(args.connections),
                                 "-d", f"{args.seconds}s", "--timeout", "10s", "-s", str(HERE / "reception.lua"), base],
                                env={**os.environ, "VNHIS_BENCH_TOKEN": token}, capture_output=True, text=True)
        print(result.stdout, result.stderr)
        line = next(x for x in result.stdout.splitlines() if x.startswith("RESULT"))
        fields = dict(kv.split("=") for kv in line.split()[1:])
        rps = int(fields["requests"]) / (int(fields["duration_us"]) / 1e6)
        print(f"{args.workers} workers × {args.threads} threads, {args.connections} connections: {rps:.0f} requests/s, "
              f"p50 {fields['p50_ms']} ms, p95 {fields['p95_ms']} ms, p99 {fields['p99_ms']} ms, "
              f"non-2xx {fields['non2xx']}, errors {fields['errors']}")
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:  # workers still holding keep-alive connections
            server.kill()
            subprocess.run(["pkill", "-9", "-f", f"core serve --port {args.port}"], check=False)


if __name__ == "__main__":
    main()

"""How many audited commits per second the hash chain allows, with N concurrent writers.

Every commit that carries audit events locks the single chain-head row, so commits are serialised
there; this measures what that costs on PostgreSQL. Creates and drops its own database.

    .venv/bin/python scripts/bench/audit_chain.py [--url postgresql+psycopg://postgres@127.0.0.1/postgres]
                                                  [--writers 1,4,16] [--seconds 10]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from sqlalchemy import text
from sqlalchemy.engine import make_url

from core import audit, migrate
from core.audit import Actor
from core.db import make_engine, make_session_factory

DB_NAME = "vnhis_bench_audit"


def run(factory, writers: int, seconds: float) -> tuple[int, list[float]]:
    stop = time.monotonic() + seconds
    latencies: list[float] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        session = factory()
        actor = Actor(id=n, name=f"bench{n}", ip="127.0.0.1")
        mine = []
        i = 0
        while time.monotonic() < stop:
            started = time.perf_counter()
            audit.record(session, actor, "patient.read", ("patient", i), {"fields": ["name", "dob"]})
            session.commit()
            mine.append(time.perf_counter() - started)
            i += 1
        session.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(latencies), latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--writers", default="1,4,16")
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()

    admin = make_engine(args.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{DB_NAME}"'))
    engine = make_engine(make_url(args.url).set(database=DB_NAME).render_as_string(False), pool_size=32)
    try:
        migrate.upgrade(engine)
        audit.start_sealer(engine)  # as in a web process: chained just after each commit
        factory = make_session_factory(engine)
        print("writers  commits/s  p50 ms  p95 ms")
        for writers in (int(w) for w in args.writers.split(",")):
            count, lat = run(factory, writers, args.seconds)
            lat.sort()
            p95 = lat[int(len(lat) * 0.95) - 1] * 1000
            print(f"{writers:>7}  {count / args.seconds:>9.0f}  {statistics.median(lat) * 1000:>6.2f}  {p95:>6.2f}")
        audit.seal(engine)
        with factory() as session:
            result = audit.verify(session)
        print(f"chain after the run: {'intact' if result.ok else result.problem}, {result.checked} events")
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()

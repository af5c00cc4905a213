"""Where the HL7 listener's time goes: CPU seconds per message of the listener's Python and of the
PostgreSQL backends, measured in-process (no sockets, no load generator), so the figures hold on a
loaded machine where throughput does not.

    .venv/bin/python scripts/bench/hl7_profile.py [--url postgresql+psycopg://postgres@127.0.0.1/vnhis_bench_hlprof]
        [--messages 2000] [--batch 1 8] [--tubes 200] [--cprofile 25]

Each round hands the writer `--batch` messages at a time, as the listener's writer thread gets them
from waiting connections (1: one analyser; 8: eight analysers at once), commits, and waits for the audit
sealer. Prints, per batch size, the CPU of this process (parsing, SQLAlchemy, psycopg, the audit sealer
thread) and of the database's backends per message; --cprofile N prints the N costliest functions.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import time

from hl7_common import prepare
from sqlalchemy import text

from core import audit
from core.db import make_engine, make_session_factory
from lis import catalog, listener
from tests.lis.messages import cbc_oru

TICK = os.sysconf("SC_CLK_TCK")


def backend_cpu(engine, database: str) -> dict[int, float]:
    """CPU seconds so far of each backend connected to the database."""
    with engine.connect() as conn:
        pids = conn.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = :db AND pid <> pg_backend_pid()"),
                            {"db": database}).scalars().all()
        out = {}
        for pid in pids:
            try:
                stat = open(f"/proc/{pid}/stat").read()  # noqa: SIM115 (read at once)
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / TICK
        return out


def rounds(writer: listener.GroupWriter, payloads: list[bytes], batch: int) -> None:
    for start in range(0, len(payloads), batch):
        jobs = [listener._Job(p, "bench") for p in payloads[start:start + batch]]
        writer.apply(jobs)
        for job in jobs:
            assert job.error is None and b"|AA|" in job.answers[0], job.answers or job.error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/vnhis_bench_hlprof")
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--tubes", type=int, default=200)
    parser.add_argument("--sql", help="run this on the fresh database first (to measure a schema change)")
    parser.add_argument("--seal-inline", action="store_true",
                        help="no sealer thread: each commit seals at once, so cProfile sees the sealing")
    parser.add_argument("--backends", action="store_true", help="CPU per message of each backend")
    parser.add_argument("--cprofile", type=int, default=0, help="print the N costliest functions")
    args = parser.parse_args()

    barcodes = prepare(args.url, args.tubes)
    engine = make_engine(args.url)
    if args.sql:
        with engine.begin() as conn:
            conn.exec_driver_sql(args.sql)
    database = engine.url.database
    sealer = make_engine(args.url)  # its own connection, so that its backend's CPU is told apart
    if not args.seal_inline:
        audit.start_sealer(sealer)
    monitor = make_engine(args.url)
    catalog.trust_seconds = 1.0
    factory = make_session_factory(engine)
    writer = listener.GroupWriter(factory, writers=0)
    rounds(writer, [cbc_oru(barcodes[k % len(barcodes)], f"warm-{k}") for k in range(200)], 8)
    with engine.connect() as conn:  # statistics as autovacuum keeps them: the plans a running system gets
        conn.exec_driver_sql("ANALYZE")
    for batch in args.batch:
        payloads = [cbc_oru(barcodes[k % len(barcodes)], f"b{batch}-{k}") for k in range(args.messages)]
        audit.seal(sealer)
        before_pg, before_cpu, started = backend_cpu(monitor, database), time.process_time(), time.perf_counter()
        profile = cProfile.Profile() if args.cprofile else None
        if profile:
            profile.enable()
        rounds(writer, payloads, batch)
        audit.seal(sealer)  # the sealing of these messages' events is part of their cost
        if profile:
            profile.disable()
        wall, cpu = time.perf_counter() - started, time.process_time() - before_cpu
        after_pg = backend_cpu(monitor, database)
        pg = sum(after_pg[p] - before_pg.get(p, 0.0) for p in after_pg)
        n = len(payloads)
        if args.backends:
            with monitor.connect() as conn:
                sealing = conn.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = :db"
                                            " AND query LIKE '%audit%'"), {"db": database}).scalars().all()
            for pid in after_pg:
                print(f"  backend {pid} ({'sealer?' if pid in sealing else 'writer'}): "
                      f"{(after_pg[pid] - before_pg.get(pid, 0.0)) / n * 1000:.2f} ms/msg")
        print(f"batch {batch}: {n} messages, wall {wall / n * 1000:.2f} ms/msg ({n / wall:.0f} msg/s serial); "
              f"CPU per message: listener {cpu / n * 1000:.2f} ms, PostgreSQL {pg / n * 1000:.2f} ms"
              + (" (under cProfile)" if profile else ""), flush=True)
        if profile:
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(args.cprofile)
            print(out.getvalue())
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(args.cprofile)
            print(out.getvalue())
    writer.stop()
    engine.dispose()
    sealer.dispose()
    monitor.dispose()


if __name__ == "__main__":
    main()

"""HL7 result ingestion: ORU^R01 CBC messages (25 OBX) over MLLP into `vnhis hl7` on PostgreSQL.

    .venv/bin/python scripts/bench/hl7_ingest.py [--url postgresql+psycopg://postgres@127.0.0.1/vnhis_bench_hl7]
        [--messages 3000] [--connections 1 8] [--tubes 400] [--max-batch 64] [--writers 2]

The listener runs as its own process (`vnhis hl7`), exactly as in production: each message is
parsed, stored raw, its 25 results recorded against the specimen with their audit event, and
committed before the ACK is sent. Each client thread is an analyser: send, wait for the ACK, send
the next (the messages are built before the clock starts, so the load generator costs only its
socket work). `--max-batch 1` makes the listener commit each message alone. Prints messages/s
and the ACK latency percentiles per connection count, then checks that the database holds
exactly the acknowledged messages and their results.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from hl7_common import Analyser, free_port, prepare, start_listener

from core.db import make_engine
from tests.lis.messages import cbc_oru


def run(port: int, barcodes: list[str], connections: int, messages: int, tag: str) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    accepted = [0]
    lock = threading.Lock()
    per_client = messages // connections

    # each analyser its own tubes (a haematology and a chemistry analyser never share one)
    payloads = [[cbc_oru(barcodes[n::connections][k % len(barcodes[n::connections])], f"{tag}-{n}-{k}")
                 for k in range(per_client)] for n in range(connections)]

    def client(n: int) -> None:
        analyser = Analyser(port)
        mine, ok = [], 0
        for payload in payloads[n]:
            started = time.perf_counter()
            code = analyser.send(payload)
            mine.append(time.perf_counter() - started)
            ok += code == "AA"
        analyser.close()
        with lock:
            latencies.extend(mine)
            accepted[0] += ok

    threads = [threading.Thread(target=client, args=(n,)) for n in range(connections)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, latencies, accepted[0]


def percentile(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/vnhis_bench_hl7")
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--tubes", type=int, default=400)
    parser.add_argument("--max-batch", type=int, default=None, help="the listener's --max-batch")
    parser.add_argument("--writers", type=int, default=None, help="the listener's --writers")
    args = parser.parse_args()

    barcodes = prepare(args.url, args.tubes)
    port = free_port()
    extra = (["--max-batch", str(args.max_batch)] if args.max_batch else []) + \
        (["--writers", str(args.writers)] if args.writers else [])
    listener = start_listener(args.url, port, Path(tempfile.gettempdir()) / "vnhis-lis-bench-listener.log", extra)
    total_aa = 0
    try:
        run(port, barcodes, 2, 200, "warm")  # connections, caches and the audit sealer warm up
        total_aa += 200
        for connections in args.connections:
            seconds, latencies, ok = run(port, barcodes, connections, args.messages, f"c{connections}")
            total_aa += ok
            print(f"{connections} connection(s): {len(latencies)} messages in {seconds:.1f} s = "
                  f"{len(latencies) / seconds:.0f} msg/s; ACK latency p50 {percentile(latencies, 50):.1f} ms, "
                  f"p95 {percentile(latencies, 95):.1f} ms, p99 {percentile(latencies, 99):.1f} ms; "
                  f"{ok} AA", flush=True)
    finally:
        listener.terminate()
        listener.wait(30)
    engine = make_engine(args.url)
    with engine.connect() as conn:
        from sqlalchemy import text

        stored = conn.execute(text("SELECT count(*) FROM lis_messages WHERE status = 'applied'")).scalar()
        results = conn.execute(text("SELECT count(*) FROM lis_results")).scalar()
    engine.dispose()
    print(f"database: {stored} applied messages, {results} results (expected {total_aa} and {total_aa * 25})")


if __name__ == "__main__":
    main()

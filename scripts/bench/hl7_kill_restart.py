"""Crash safety of the HL7 listener: kill -9 `vnhis hl7` in the middle of a load, restart it, and check
that every message answered AA is in the database with its 25 results, and none is stored twice.

    .venv/bin/python scripts/bench/hl7_kill_restart.py [--url postgresql+psycopg://postgres@127.0.0.1/vnhis_bench_kill]
        [--connections 4] [--messages 300] [--kill-after 3] [--kills 2]

Each client behaves like an analyser: when the connection breaks before the ACK arrives it
reconnects and sends the same message again (the listener then answers from its store if the
first copy had been committed).
"""

from __future__ import annotations

import argparse
import threading
import time

from hl7_common import Analyser, free_port, prepare, start_listener
from sqlalchemy import text

from core.db import make_engine
from tests.lis.messages import cbc_oru


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/vnhis_bench_kill")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--messages", type=int, default=300, help="per connection")
    parser.add_argument("--kill-after", type=float, default=3.0, help="seconds of load before each kill")
    parser.add_argument("--kills", type=int, default=2)
    args = parser.parse_args()

    barcodes = prepare(args.url, 60)
    port = free_port()
    state = {"listener": start_listener(args.url, port)}
    acked: list[str] = []
    reconnects = [0]
    lock = threading.Lock()

    def client(n: int) -> None:
        analyser = None
        for k in range(args.messages):
            control = f"K{n}-{k}"
            payload = cbc_oru(barcodes[(n * 7 + k) % len(barcodes)], control)
            while True:
                try:
                    if analyser is None:
                        analyser = Analyser(port, timeout=10)
                    code = analyser.send(payload)
                    break
                except OSError:
                    analyser = None
                    with lock:
                        reconnects[0] += 1
                    time.sleep(0.2)
            if code == "AA":
                with lock:
                    acked.append(control)
        if analyser is not None:
            analyser.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(args.connections)]
    for t in threads:
        t.start()
    for _ in range(args.kills):
        time.sleep(args.kill_after)
        before = len(acked)
        state["listener"].kill()  # SIGKILL: no clean-up, in-flight transactions are lost
        state["listener"].wait()
        print(f"killed the listener after {before} AA", flush=True)
        time.sleep(1.0)
        state["listener"] = start_listener(args.url, port)
    for t in threads:
        t.join()
    state["listener"].terminate()
    state["listener"].wait(30)

    engine = make_engine(args.url)
    with engine.connect() as conn:
        stored = dict(conn.execute(text(
            "SELECT m.control_id, count(r.id) FROM lis_messages m LEFT JOIN lis_results r ON r.message_id = m.id "
            "WHERE m.status = 'applied' GROUP BY m.id, m.control_id")).all())
        doubles = conn.execute(text("SELECT count(*) FROM (SELECT control_id FROM lis_messages WHERE "
                                    "status = 'applied' GROUP BY control_id HAVING count(*) > 1) d")).scalar()
    engine.dispose()
    missing = [c for c in acked if c not in stored]
    incomplete = [c for c in acked if stored.get(c, 25) != 25]
    print(f"{len(acked)} messages acknowledged AA ({reconnects[0]} failed sends or reconnects while it was down, "
          f"{args.kills} kill -9); in the database: {len(stored)} applied messages; "
          f"AA but missing: {len(missing)}; AA with fewer than 25 results: {len(incomplete)}; stored twice: {doubles}")
    if missing or incomplete or doubles:
        raise SystemExit(1)


if __name__ == "__main__":
    main()

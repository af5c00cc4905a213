"""Patient search under load: N concurrent clients running his.patients.search against PostgreSQL.

    .venv/bin/python scripts/bench/patient_search.py --url postgresql+psycopg://postgres@127.0.0.1/vnhis_bench \
        [--clients 20] [--seconds 30] [--mode operation|query]

The query mix is 40 % name fragments (as typed at a desk: "nguyen van", "thi lan", "tran minh h")
and 60 % identifiers (CCCD, BHYT card number, phone, BHXH number), drawn from the patients in the
database. --mode operation commits each search as the product does (its audit event included);
--mode query rolls back instead, to show the cost of the lookup alone. Prints throughput and
latency percentiles per kind. Fill the database first with scripts/bench/patients_generate.py.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import statistics
import time

from sqlalchemy import text

from core.audit import Actor
from core.db import make_engine, make_session_factory
from core.modules import import_models


def sample_queries(url: str, n: int, seed: int = 1) -> list[tuple[str, str]]:
    engine = make_engine(url)
    rng = random.Random(seed)
    with engine.connect() as conn:
        top = conn.execute(text("SELECT MAX(id) FROM patients")).scalar()
        ids = [rng.randrange(1, top + 1) for _ in range(n * 2)]
        rows = conn.execute(text("SELECT p.name_folded, p.national_id, p.phone, c.number, c.bhxh_number "
                                 "FROM patients p LEFT JOIN bhyt_cards c ON c.patient_id = p.id "
                                 "WHERE p.id = ANY(:ids)"), {"ids": ids}).all()
    engine.dispose()
    queries = []
    for name, cccd, phone, card, bhxh in rows:
        words = name.split()
        roll = rng.random()
        if roll < 0.40:
            style = rng.random()
            if style < 0.5:
                q = " ".join(words[:2])  # surname + middle name: the common, broad case
            elif style < 0.8:
                q = " ".join(words[-1:] + words[1:2])  # given name first: "lan thi"
            else:
                q = " ".join(words[:-1] + [words[-1][:1]])  # full name but the last letter typed
            queries.append(("name", q))
        elif roll < 0.60 and cccd:
            queries.append(("cccd", cccd))
        elif roll < 0.75 and card:
            queries.append(("bhyt", card))
        elif roll < 0.90 and phone:
            queries.append(("phone", phone))
        elif bhxh:
            queries.append(("bhxh", bhxh))
    rng.shuffle(queries)
    return queries[:n]


def client(url: str, queries, seconds: float, mode: str, start_at: float, out) -> None:
    import_models()
    from his import patients

    engine = make_engine(url, pool_size=2)
    if mode == "operation":
        from core import audit

        audit.start_sealer(engine)  # as each web process does
    session = make_session_factory(engine)()
    actor = Actor(id=None, name="bench", ip="127.0.0.1")
    results = []
    while time.time() < start_at:
        time.sleep(0.01)
    deadline = start_at + seconds
    i = 0
    while time.time() < deadline:
        kind, q = queries[i % len(queries)]
        i += 1
        began = time.perf_counter()
        rows, _more = patients.search(session, actor, q, per_page=20)
        if mode == "operation":
            session.commit()
        else:
            session.rollback()
        results.append((kind, time.perf_counter() - began, len(rows)))
    session.close()
    engine.dispose()
    out.put(results)


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/vnhis_bench")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--mode", choices=("operation", "query"), default="operation")
    args = parser.parse_args()

    queries = sample_queries(args.url, 20_000)
    out = mp.Queue()
    start_at = time.time() + 3
    procs = [mp.Process(target=client, args=(args.url, queries[i::args.clients], args.seconds, args.mode, start_at,
                                             out)) for i in range(args.clients)]
    for p in procs:
        p.start()
    results = [r for _ in procs for r in out.get()]
    for p in procs:
        p.join()
    print(f"{args.clients} clients, {args.seconds:.0f} s, mode {args.mode}: {len(results)} searches, "
          f"{len(results) / args.seconds:.0f}/s")
    print("kind      count   p50 ms   p95 ms   p99 ms  mean rows")
    kinds = sorted({k for k, _, _ in results}) + ["all"]
    for kind in kinds:
        rows = [r for r in results if kind in ("all", r[0])]
        times = [t for _, t, _ in rows]
        print(f"{kind:<8}{len(rows):>7}  {pct(times, .5):7.1f}  {pct(times, .95):7.1f}  {pct(times, .99):7.1f}"
              f"  {statistics.mean(n for _, _, n in rows):9.1f}")


if __name__ == "__main__":
    main()

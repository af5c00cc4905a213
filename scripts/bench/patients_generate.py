"""Fill a PostgreSQL database with synthetic patients (and their BHYT cards) for the benchmarks.

    .venv/bin/python scripts/bench/patients_generate.py --url postgresql+psycopg://postgres@127.0.0.1/vnhis_bench \
        --count 2000000 [--recreate]

--recreate drops and re-creates the database and runs the migrations first. Rows go in with COPY,
in batches, with the same folding and code rules as registration (his.patients) so the search
benchmark sees realistic data.
"""

from __future__ import annotations

import argparse
import io
import time
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.engine import make_url

from core import migrate
from core.db import make_engine
from his import identity, sample_data
from his.text import fold

BATCH = 50_000


def recreate(url: str) -> None:
    admin = make_engine(make_url(url).set(database="postgres").render_as_string(False), isolation_level="AUTOCOMMIT")
    name = make_url(url).database
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()


def _tsv(values) -> str:
    return "\t".join("\\N" if v is None else str(v).replace("\t", " ") for v in values) + "\n"


def generate(url: str, count: int) -> None:
    engine = make_engine(url)
    now = datetime.now(UTC).isoformat()
    started = time.monotonic()
    with engine.connect() as conn:
        first_id = conn.execute(text("SELECT COALESCE(MAX(id), 0) FROM patients")).scalar() + 1
        conn.commit()
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        done = 0
        people = sample_data.patients(count, seed=42, start=first_id)
        while done < count:
            patients_buf, cards_buf = io.StringIO(), io.StringIO()
            for offset, fake in zip(range(min(BATCH, count - done)), people, strict=False):
                pid = first_id + done + offset
                folded = fold(fake.full_name)
                patients_buf.write(_tsv([pid, f"B{pid:09d}", fake.full_name, folded, " ".join(reversed(folded.split())),
                                         fake.birth_date, fake.birth_year, fake.sex, fake.national_id, fake.phone,
                                         "VN", fake.address_text, now, now]))
                if fake.bhyt_number:
                    card = identity.parse_bhyt_number(fake.bhyt_number)
                    cards_buf.write(_tsv([pid, card.number, card.layout, card.bhxh_number, card.group_code,
                                          card.benefit_level, card.province_code, "desk", now]))
            with cur.copy("COPY patients (id, code, full_name, name_folded, name_reversed, birth_date, "
                          "birth_year, sex, national_id, phone, nationality, address_text, created_at, updated_at) "
                          "FROM STDIN") as cp:
                cp.write(patients_buf.getvalue())
            with cur.copy("COPY bhyt_cards (patient_id, number, layout, bhxh_number, group_code, benefit_level, "
                          "province_code, source, created_at) FROM STDIN") as cp:
                cp.write(cards_buf.getvalue())
            raw.commit()
            done += min(BATCH, count - done)
            print(f"{done:>10,} patients  {time.monotonic() - started:6.0f} s", flush=True)
        cur.execute("SELECT setval(pg_get_serial_sequence('patients', 'id'), (SELECT MAX(id) FROM patients))")
        cur.execute("ANALYZE patients")
        cur.execute("ANALYZE bhyt_cards")
        raw.commit()
    finally:
        raw.close()
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/vnhis_bench")
    parser.add_argument("--count", type=int, default=2_000_000)
    parser.add_argument("--recreate", action="store_true")
    args = parser.parse_args()
    if args.recreate:
        recreate(args.url)
    generate(args.url, args.count)


if __name__ == "__main__":
    main()

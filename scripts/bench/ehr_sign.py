"""Save and sign a treatment-sheet version with its audit events (one transaction each, committed), then
export a 200-document record as FHIR and as HoSoBenhAn. Creates and drops its own PostgreSQL database.

    .venv/bin/python scripts/bench/ehr_sign.py [--url postgresql+psycopg://postgres@127.0.0.1/postgres]
                                               [--versions 300] [--documents 200]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import time
from datetime import date

from sqlalchemy import text
from sqlalchemy.engine import make_url

from core import audit, auth, migrate
from core.audit import Actor
from core.db import make_engine, make_session_factory
from core.modules import import_models
from ehr import exchange, pki, records, signing
from ehr.keystore import SoftwareKeyStore
from his import encounters
from his.models.org import Department, Room, Staff
from his.models.patients import Patient

DB_NAME = "vnhis_bench_ehr"
SYSTEM = Actor.system("bench")
SHEET = {"progress": "Sốt giảm, còn ho khạc đờm trắng", "orders": "Ceftriaxon 1 g × 2 lọ tiêm TM; Paracetamol 500 mg",
         "pulse": "88", "temperature": "37,8", "blood_pressure": "120/80"}


def setup(session, keys):
    dept = Department(code="KNOI", name="Khoa Nội", is_clinical=True, active=True)
    session.add(dept)
    session.flush()
    room = Room(department_id=dept.id, code="P101", name="Phòng khám Nội 1", kind="exam", active=True)
    session.add(room)
    user = auth.create_user(session, SYSTEM, username="bs.bench", full_name="Trần Văn Hùng",
                            password=secrets.token_urlsafe(16), roles=["doctor"])
    staff = Staff(user_id=user.id, full_name=user.full_name, title="BSCKI", department_id=dept.id, active=True)
    session.add(staff)
    patients = []
    for n in range(2):
        session.add(p := Patient(code=f"B{n:08d}", full_name="Nguyễn Văn An", name_folded="nguyen van an",
                                 name_reversed="an van nguyen", birth_year=1970, sex="male", nationality="VN"))
        patients.append(p)
    session.flush()
    ca = pki.create_ca(session, SYSTEM, keys, "Bench CA", "Bench")
    pki.issue(session, SYSTEM, keys, ca, common_name=user.full_name, organisation="Bench", user_id=user.id)
    actor = Actor(id=user.id, name=user.username, ip="127.0.0.1")
    made = []
    for patient in patients:
        encounter = encounters.open_encounter(session, SYSTEM, patient, kind="outpatient", day=date.today(),
                                              room=room, doctor=staff)
        made.append(records.open_record(session, actor, encounter))
    session.commit()
    return actor, made


def save_and_sign(factory, keys, actor, record_id: int, versions: int) -> list[float]:
    """Each save+sign in its own session and transaction, as one request of the record screen does it."""
    with factory() as session:
        record = session.get(records.MedicalRecord, record_id)
        document_id = records.add_document(session, actor, record, "36/BV2", SHEET, on=date.today()).id
        session.commit()
    latencies = []
    for i in range(versions):
        started = time.perf_counter()
        with factory() as session:
            doc = session.get(records.Document, document_id)
            version = records.edit(session, actor, doc, SHEET | {"orders": f"{SHEET['orders']} (ngày {i})"},
                                   expected_version=doc.current_version, reason="Cập nhật y lệnh", on=date.today())
            signing.sign(session, actor, version, keys)
            session.commit()
        latencies.append(time.perf_counter() - started)
    return latencies


def fill(factory, keys, actor, record_id: int, documents: int) -> None:
    with factory() as session:
        record = session.get(records.MedicalRecord, record_id)
        for _ in range(documents):
            doc = records.add_document(session, actor, record, "36/BV2", SHEET, on=date.today())
            signing.sign(session, actor, records.current(session, doc), keys)
        session.commit()


def timed(fn) -> tuple[float, int]:
    started = time.perf_counter()
    size = len(fn())
    return time.perf_counter() - started, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--versions", type=int, default=300)
    parser.add_argument("--documents", type=int, default=200)
    args = parser.parse_args()
    admin = make_engine(args.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{DB_NAME}"'))
    engine = make_engine(make_url(args.url).set(database=DB_NAME).render_as_string(False))
    try:
        migrate.upgrade(engine)
        import_models(("his", "ehr"))
        factory = make_session_factory(engine)
        sealer = audit.start_sealer(engine)  # as in `vnhis serve`: the chain is sealed just after each commit
        keys = SoftwareKeyStore("bench-passphrase-0123456789")
        with factory() as session:
            actor, (signing_record, big_record) = setup(session, keys)
        latencies = sorted(save_and_sign(factory, keys, actor, signing_record.id, args.versions))
        p = statistics.quantiles(latencies, n=100)
        print(f"save+sign a treatment-sheet version ({len(latencies)} commits): p50 {p[49] * 1000:.1f} ms, "
              f"p95 {p[94] * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms")
        fill(factory, keys, actor, big_record.id, args.documents)
        with factory() as session:
            record = session.get(records.MedicalRecord, big_record.id)
            for fmt in ("fhir", "fhir", "json", "json", "xml"):  # the first of each loads its code
                seconds, size = timed(lambda fmt=fmt: exchange.export(session, actor, record, fmt))
                print(f"export {args.documents}-document record as {fmt}: {seconds * 1000:.0f} ms, "
                      f"{size / 1024:.0f} KiB")
            session.commit()
        sealer.stop()
        print(f"load average during the run: {os.getloadavg()[0]:.1f} (2 vCPU shared with other work)")
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()

"""Export and sign QĐ 130 claims for many encounters, as `vnhis claims export` does, and time it.

    .venv/bin/python scripts/bench/claims_export.py --url postgresql+psycopg://postgres@127.0.0.1/vnhis_bench_claims \
        --out DIR [--encounters 10000] [--lines 30] [--per-file 1] [--recreate]

--recreate drops and re-creates the database, runs the migrations and generates the synthetic data
(finished insured outpatient-treatment visits, each with a main diagnosis and `--lines` charges: lab
tests, imaging, drugs, supplies). Generating is not timed; the timed part builds every claim (tables,
checks, envelope, RSA-SHA256 signature), stores it on its claim row and writes one file per claim,
in batches of 500 with a commit each — the CLI's loop. --per-file N signs envelopes of N claims.
"""

from __future__ import annotations

import argparse
import random
import resource
import shutil
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import insert, text
from sqlalchemy.engine import make_url

from billing import claims, signing
from billing.models import Charge, Claim, ItemTerms
from billing.settings import Settings
from core import migrate
from core.audit import Actor
from core.db import make_engine, make_session_factory
from core.modules import import_models
from his.models.catalog import Drug
from his.models.encounters import Diagnosis, Encounter
from his.models.orders import Order, OrderLine
from his.models.org import Department, Staff
from his.models.patients import BhytCard, Patient

DAY = date(2026, 11, 20)
ITEMS = [("service", "22.0120.1370", "Tổng phân tích tế bào máu", "lần", 1, Decimal("46200")),
         ("service", "23.0075.1494", "Định lượng Glucose", "lần", 1, Decimal("21500")),
         ("service", "18.0119.0028", "Chụp X-quang ngực thẳng", "lần", 2, Decimal("65400")),
         ("drug", "40.492", "Amlodipin 5 mg", "viên", 4, Decimal("450")),
         ("drug", "40.17", "Metformin 850 mg", "viên", 4, Decimal("600")),
         ("supply", "N03.01.070", "Bơm tiêm nhựa 5 ml", "cái", 10, Decimal("1200"))]


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


def generate(url: str, count: int, lines: int) -> None:
    rng = random.Random(130)
    engine = make_engine(url)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        dept = conn.execute(insert(Department).values(code="KKB", name="Khoa Khám bệnh", bhyt_code="K01",
                                                      is_clinical=True, active=True).returning(Department.id)).scalar()
        doctor = conn.execute(insert(Staff).values(full_name="BS Lê Minh", department_id=dept, active=True,
                                                   licence_number="000123/HCM-CCHN").returning(Staff.id)).scalar()
        drugs = {}
        for kind, code, name, unit, _group, _price in ITEMS:
            if kind == "drug":
                drugs[code] = conn.execute(insert(Drug).values(
                    code=code, bhyt_code=code, name=name, name_folded=name.lower(), unit=unit, active=True,
                    active_ingredient=name.split()[0], strength=name.split(maxsplit=1)[1], route="Uống",
                    registration_number="VD-12345-10", is_narcotic=False, is_psychotropic=False,
                    is_prescription_only=True, created_at=now, updated_at=now).returning(Drug.id)).scalar()
            if kind != "service":
                conn.execute(insert(ItemTerms).values(item_kind=kind, item_code=code, in_list=True, payment_ratio=100,
                                                      tender="1574/QĐ-SYT;G1;N4;2026", valid_from=date(2026, 1, 1)))
        patients = [{"code": f"26{n:08d}", "full_name": f"Nguyễn Văn {n}", "name_folded": f"nguyen van {n}",
                     "name_reversed": f"{n} van nguyen", "birth_date": date(1950 + n % 50, 1 + n % 12, 1 + n % 28),
                     "birth_year": 1950 + n % 50, "sex": "male", "nationality": "VN", "ethnicity_code": "01",
                     "occupation_code": "00001", "address_text": "12 Lê Lợi, TP Hồ Chí Minh", "province_code": "79",
                     "district_code": "760", "ward_code": "26734", "created_at": now, "updated_at": now}
                    for n in range(1, count + 1)]
        ids = conn.execute(insert(Patient).returning(Patient.id, sort_by_parameter_order=True),
                           patients).scalars().all()
        cards = [{"patient_id": pid, "number": f"DN479{pid:010d}", "layout": "legacy15", "bhxh_number": f"{pid:010d}",
                  "group_code": "DN", "benefit_level": "4", "valid_from": date(2026, 1, 1),
                  "valid_to": date(2026, 12, 31), "registered_facility": "79024", "source": "desk", "created_at": now}
                 for pid in ids]
        card_ids = conn.execute(insert(BhytCard).returning(BhytCard.id, sort_by_parameter_order=True),
                                cards).scalars().all()
        visits = []
        for n, (pid, card) in enumerate(zip(ids, card_ids, strict=True)):
            start = datetime(2026, 11, 20, 1, 0, tzinfo=UTC) + timedelta(minutes=n % 600)
            visits.append({"code": f"261120{n:09d}", "patient_id": pid, "kind": "outpatient", "status": "finished",
                           "department_id": dept, "doctor_id": doctor, "reason": "Khám định kỳ", "started_at": start,
                           "ended_at": start + timedelta(hours=2), "insured": True, "bhyt_card_id": card,
                           "bhyt_route": "correct", "is_emergency": False})
        enc_ids = conn.execute(insert(Encounter).returning(Encounter.id, sort_by_parameter_order=True),
                               visits).scalars().all()
        conn.execute(insert(Diagnosis), [{"encounter_id": e, "position": "principal", "icd10_code": "I10",
                                          "text": "Tăng huyết áp vô căn", "recorded_at": now} for e in enc_ids])
        prescriptions = conn.execute(insert(Order).returning(Order.id, sort_by_parameter_order=True), [
            {"encounter_id": e, "patient_id": pid, "kind": "prescription", "status": "completed", "department_id": dept,
             "orderer_id": doctor, "chronic": False, "ordered_at": v["started_at"], "executed_at": v["started_at"]}
            for e, v, pid in zip(enc_ids, visits, ids, strict=True)]).scalars().all()
        conn.execute(insert(OrderLine), [
            {"order_id": o, "position": n, "drug_id": drug_id, "item_code": code, "item_name": code, "quantity": 30,
             "unit": "viên", "unit_price": 450, "payer": "bhyt", "dose": 1, "frequency": 1, "days": 30,
             "quantity_entered": False}
            for o in prescriptions for n, (code, drug_id) in enumerate(drugs.items(), start=1)])
        conn.execute(insert(Claim), [{"encounter_id": e, "format": "qd130", "link_key": v["code"], "status": "invalid",
                                      "version": 1, "attempts": 0, "total": 0, "insurer_pays": 0,
                                      "supplement": {"weight_kg": "62.00"}}
                                     for e, v in zip(enc_ids, visits, strict=True)])
        batch = []
        for e, v, pid, prescription in zip(enc_ids, visits, ids, prescriptions, strict=True):
            for n in range(lines):
                kind, code, name, unit, group, price = ITEMS[rng.randrange(len(ITEMS))]
                qty = Decimal(rng.choice((1, 1, 2, 10, 30))) if kind != "service" else Decimal(1)
                at = v["started_at"] + timedelta(minutes=n)
                batch.append({"encounter_id": e, "patient_id": pid, "source": "order", "source_key": f"b:{e}:{n}",
                              "item_kind": kind, "item_code": code, "bhyt_code": code, "item_name": name, "unit": unit,
                              "cost_group": group, "in_list": True, "payment_ratio": 100, "payer": "bhyt",
                              "quantity": qty, "unit_price": price, "bhyt_unit_price": price, "amount": qty * price,
                              "status": "priced", "service_at": at, "service_day": DAY, "department_id": dept,
                              "doctor_id": doctor, "performer_id": doctor, "created_at": now,
                              "order_id": prescription if kind == "drug" else None})
            if len(batch) >= 50_000:
                conn.execute(insert(Charge), batch)
                batch = []
        if batch:
            conn.execute(insert(Charge), batch)
    engine.dispose()


def _cpu() -> float:
    """CPU seconds of this process and of its finished worker processes (the database server's not included)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def export(url: str, out: Path, per_file: int, jobs: int) -> None:
    import_models()
    engine = make_engine(url)
    session = make_session_factory(engine)()
    folder = Path(tempfile.mkdtemp(prefix="vnhis-billing-bench-keys-"))
    key, cert = signing.make_self_signed(folder)
    sign = signing.load(str(key), str(cert))
    settings = Settings(facility_code="79001", facility_level="provincial", head_id="7900012345", bank_bin=None,
                        bank_account=None, merchant_name=None, webhook_secret=None, signing_key=None, signing_cert=None)
    actor = Actor.system("bench")
    started, cpu = time.perf_counter(), _cpu()
    ids = claims.encounters_ended(session, DAY, DAY)
    session.close()
    engine.dispose()
    report = claims.export_range(url, settings, sign, ids, "qd130", out, per_file=per_file, jobs=jobs, actor=actor,
                                 made_on=DAY)
    written, invalid = report.written, report.invalid
    elapsed, cpu = time.perf_counter() - started, _cpu() - cpu
    engine = make_engine(url)
    session = make_session_factory(engine)()
    lines = session.execute(text("SELECT count(*) FROM billing_charges")).scalar()
    size = sum(p.stat().st_size for p in out.glob("*.xml"))
    files = len(list(out.glob("*.xml")))
    print(f"{written} claims ({lines} lines) built, checked, stored, signed into {files} file(s) and written in "
          f"{elapsed:.1f} s ({written / elapsed:.0f} claims/s; {jobs} process(es) using {cpu:.1f} s of CPU); "
          f"{invalid} with problems; {size / 1e6:.0f} MB")
    session.close()
    engine.dispose()
    shutil.rmtree(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--encounters", type=int, default=10_000)
    parser.add_argument("--lines", type=int, default=30)
    parser.add_argument("--out", type=Path, required=True, help="a folder for the files (emptied first)")
    parser.add_argument("--per-file", type=int, default=1, help="claims per signed file")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--recreate", action="store_true")
    args = parser.parse_args()
    if args.recreate:
        started = time.perf_counter()
        recreate(args.url)
        generate(args.url, args.encounters, args.lines)
        print(f"generated {args.encounters} encounters × {args.lines} lines in {time.perf_counter() - started:.0f} s")
    shutil.rmtree(args.out, ignore_errors=True)
    export(args.url, args.out, args.per_file, args.jobs)


if __name__ == "__main__":
    main()

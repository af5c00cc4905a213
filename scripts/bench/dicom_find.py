"""Study-level C-FIND latency of `vnhis pacs` with 100,000 instances indexed.

    .venv/bin/python scripts/bench/dicom_find.py [--instances 100000] [--queries 300]

The index is filled directly (studies of 2 series × 10 instances, Vietnamese names), then one pynetdicom
SCU association sends a mix of study-level queries — patient ID, folded name prefix, one day, accession
number — each asking for the usual keys plus ModalitiesInStudy and NumberOfStudyRelatedInstances, and
the time until the final response is measured. Goal: p95 < 50 ms.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from dicom_common import drop_database, free_port, fresh_database, start_vnhis, stop
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind
from sqlalchemy import insert

DB_NAME = "vnhis_bench_dicom_find"
FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ"]
MIDDLE = ["Văn", "Thị", "Hữu", "Minh", "Ngọc", "Thanh", "Đức", "Quang"]
GIVEN = ["An", "Bình", "Cường", "Dũng", "Hương", "Lan", "Mai", "Nam", "Phúc", "Quân", "Sơn", "Tâm", "Thảo", "Vy"]
MODALITIES = ["CT", "MR", "DX", "US"]


def fill(url: str, instances: int, seed: int = 11) -> list[dict]:
    from core.db import make_engine
    from pacs.models import Instance, Series, Study
    from pacs.store import fold_pn

    rng = random.Random(seed)
    engine = make_engine(url)
    per_study = 20
    studies = []
    now = datetime.now(UTC)
    with engine.begin() as conn:
        for index in range(instances // per_study):
            name = f"{rng.choice(FAMILY)}^{rng.choice(MIDDLE)} {rng.choice(GIVEN)}"
            day = f"2026{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
            studies.append({"id": index + 1, "study_uid": f"1.2.826.0.1.3680043.8.498.5.{index}",
                            "patient_dicom_id": f"BN{index // 3:07d}", "patient_name": name,
                            "patient_name_folded": fold_pn(name), "patient_birth_date": "19800101",
                            "patient_sex": rng.choice("MF"), "study_date": day, "study_time": "090000",
                            "accession_number": f"ACC{index:08d}", "study_id": str(index),
                            "study_description": "", "referring_physician": "",
                            "modalities": f",{rng.choice(MODALITIES)},", "created_at": now})
        conn.execute(insert(Study), studies)
        series = [{"id": s["id"] * 2 - k, "study_pk": s["id"], "series_uid": f"{s['study_uid']}.{k}",
                   "modality": s["modalities"].strip(","), "series_number": k, "series_description": "",
                   "body_part": "", "created_at": now} for s in studies for k in (1, 2)]
        conn.execute(insert(Series), series)
        for start in range(0, len(series), 1000):
            conn.execute(insert(Instance), [
                {"series_pk": se["id"], "study_pk": se["study_pk"], "sop_instance_uid": f"{se['series_uid']}.{n}",
                 "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2", "instance_number": n,
                 "transfer_syntax": "1.2.840.10008.1.2.1", "rows": 512, "columns": 512, "frames": None,
                 "path": "x", "size": 525000, "sha256": "0" * 64, "calling_ae": "BENCH", "received_at": now}
                for se in series[start:start + 1000] for n in range(1, per_study // 2 + 1)])
        conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    return studies


def queries(studies: list[dict], count: int, seed: int = 5) -> list[dict]:
    rng = random.Random(seed)
    made = []
    for index in range(count):
        study = rng.choice(studies)
        kind = index % 4
        if kind == 0:
            made.append({"PatientID": study["patient_dicom_id"]})
        elif kind == 1:  # the start of a full name, folded: what a viewer's search box sends
            made.append({"PatientName": study["patient_name_folded"].upper()[:-1] + "*"})
        elif kind == 2:
            made.append({"StudyDate": study["study_date"], "ModalitiesInStudy": "CT"})
        else:
            made.append({"AccessionNumber": study["accession_number"]})
    return made


def run(port: int, keys_list: list[dict]) -> tuple[list[float], int]:
    ae = AE(ae_title="BENCH")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", port, ae_title="VNHIS")
    # pynetdicom leaves Nagle on: each small request would wait for the peer's delayed ACK (~40 ms)
    assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    times, matches = [], 0
    for keys in keys_list:
        query = Dataset()
        query.SpecificCharacterSet = "ISO_IR 192"
        query.QueryRetrieveLevel = "STUDY"
        for keyword in ("StudyInstanceUID", "PatientName", "PatientID", "StudyDate", "StudyTime", "AccessionNumber",
                        "StudyID", "ModalitiesInStudy", "NumberOfStudyRelatedInstances"):
            setattr(query, keyword, keys.get(keyword, ""))
        started = time.perf_counter()
        for status, _identifier in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
            if status.Status == 0xFF00:
                matches += 1
        times.append(time.perf_counter() - started)
    assoc.release()
    return times, matches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    admin_url = os.environ.get("VNHIS_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    url = fresh_database(admin_url, DB_NAME)
    try:
        started = time.perf_counter()
        studies = fill(url, args.instances)
        print(f"indexed {args.instances} instances in {len(studies)} studies ({time.perf_counter() - started:.0f} s)")
        with tempfile.TemporaryDirectory(prefix="vnhis-pacs-find-") as tmp:
            port = free_port()
            proc = start_vnhis(url, Path(tmp), port, 1)
            try:
                run(port, queries(studies, 20, seed=1))  # warm up the node's caches and the database
                times, matches = run(port, queries(studies, args.queries))
            finally:
                stop(proc)
        ms = sorted(t * 1000 for t in times)
        p95 = ms[int(len(ms) * 0.95) - 1]
        print(f"{len(ms)} study-level C-FIND queries, {matches} matches: p50 {statistics.median(ms):.1f} ms, "
              f"p95 {p95:.1f} ms, max {ms[-1]:.1f} ms (goal p95 < 50 ms)")
    finally:
        drop_database(admin_url, DB_NAME)


if __name__ == "__main__":
    main()

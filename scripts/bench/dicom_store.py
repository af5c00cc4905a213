"""C-STORE throughput of `vnhis pacs` side by side with Orthanc, in the same run, plus the disk's raw write
rate (dd), for synthetic 512×512 16-bit CT instances sent by DCMTK storescu on 1 and on 4 associations.

    .venv/bin/python scripts/bench/dicom_store.py [--count 2000] [--workers 2] [--ceiling] [--large 20]

--ceiling adds two rates of receivers that store nothing: pynetdicom receiving each instance as the node
does (scripts/bench/dicom_noop_scp.py, one process), the protocol layer's own ceiling, and DCMTK's
storescp --ignore (with its largest PDU), what storescu itself can send on this machine. --large N adds N
multi-frame Enhanced CT instances of about 50 MB each on one association: the "large instances" case,
whose MB/s is compared with dd.

Each run stores into a fresh database/storage (vnhis) or a fresh storage directory (Orthanc), so every
instance is new. Needs PostgreSQL (VNHIS_BENCH_DATABASE_URL, default the local postgres user), dcmtk, orthanc.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dicom_common import (
    DCMTK_ENV,
    drop_database,
    free_port,
    fresh_database,
    start_vnhis,
    stop,
    synthetic_ct,
    synthetic_multiframe,
    wait_for_echo,
)

DB_NAME = "vnhis_bench_dicom_store"


def send(port: int, ae_title: str, files: list[Path], associations: int) -> float:
    """Seconds for `associations` parallel storescu processes to store all `files`."""
    groups = [files[i::associations] for i in range(associations)]
    started = time.perf_counter()
    procs = [subprocess.Popen(["storescu", "-aec", ae_title, "-aet", "BENCH", "127.0.0.1", str(port), *map(str, g)],
                              env=DCMTK_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for g in groups]
    for proc in procs:
        _out, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"storescu failed: {err[-500:]}")
    return time.perf_counter() - started


def disk_rate(folder: Path, megabytes: int = 1024) -> float:
    """MB/s of one sequential fsynced write of `megabytes` (dd, direct I/O)."""
    target = folder / "dd.bin"
    done = subprocess.run(["dd", "if=/dev/zero", f"of={target}", "bs=1M", f"count={megabytes}", "oflag=direct",
                           "conv=fsync"], capture_output=True, text=True, check=True)
    target.unlink()
    seconds = float(re.search(r"copied, ([0-9.]+) s", done.stderr).group(1))
    return megabytes * 1024 * 1024 / seconds / 1e6


def run_vnhis(admin_url: str, work: Path, files, associations: int, workers: int) -> float:
    url = fresh_database(admin_url, DB_NAME)
    node_dir = work / f"vnhis-{associations}"
    port = free_port()
    proc = start_vnhis(url, node_dir, port, workers)
    try:
        seconds = send(port, "VNHIS", files, associations)
    finally:
        stop(proc)
        shutil.rmtree(node_dir, ignore_errors=True)
    check = subprocess.run(["psql", "-At", "-h", "127.0.0.1", "-U", "postgres", DB_NAME, "-c",
                            "SELECT count(*) FROM pacs_instances"], capture_output=True, text=True)
    if check.returncode == 0 and int(check.stdout.strip()) != len(files):
        raise SystemExit(f"vnhis indexed {check.stdout.strip()} of {len(files)} instances")
    return seconds


def run_orthanc(work: Path, files, associations: int) -> float:
    folder = work / f"orthanc-{associations}"
    folder.mkdir()
    port, http = free_port(), free_port()
    config = {"Name": "bench", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
              "DicomAet": "ORTHANC", "DicomPort": port, "HttpPort": http, "HttpServerEnabled": False,
              "RemoteAccessAllowed": False, "DicomCheckCalledAet": False, "StorageCompression": False,
              "DefaultEncoding": "Utf8", "Plugins": [], "DicomAlwaysAllowStore": True}
    (folder / "orthanc.json").write_text(json.dumps(config))
    proc = subprocess.Popen(["Orthanc", str(folder / "orthanc.json")], env=DCMTK_ENV,  # DCMTK inside: Nagle off
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_echo(port, "ORTHANC", proc)
        seconds = send(port, "ORTHANC", files, associations)
    finally:
        stop(proc)
        shutil.rmtree(folder, ignore_errors=True)
    return seconds


def run_ceiling(files, associations: int) -> float:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("dicom_noop_scp.py")), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_echo(port, "VNHIS", proc)
        return send(port, "VNHIS", files, associations)
    finally:
        stop(proc)


def run_dcmtk_ignore(files, associations: int) -> float:
    port = free_port()
    proc = subprocess.Popen(["storescp", "--ignore", "--max-pdu", "131072", "-aet", "IGNORE", str(port)],
                            env=DCMTK_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_echo(port, "IGNORE", proc)
        return send(port, "IGNORE", files, associations)
    finally:
        stop(proc)


def _print_row(name: str, associations: int, count: int, size: int, seconds: float, raw: float) -> float:
    mbs = size / seconds / 1e6
    print(f"{name:<27}{associations:>6}{seconds:>10.1f}{count / seconds:>10.0f}{mbs:>9.0f}{mbs / raw * 100:>8.0f}%")
    return count / seconds


def _runs(admin_url: str, work: Path, files, associations: int, workers: int, ceiling: bool) -> list:
    runs = [("orthanc", lambda: run_orthanc(work, files, associations)),
            (f"vnhis ({workers} proc)", lambda: run_vnhis(admin_url, work, files, associations, workers))]
    if ceiling:
        runs.append(("pynetdicom no-op (1 proc)", lambda: run_ceiling(files, associations)))
        runs.append(("storescp --ignore", lambda: run_dcmtk_ignore(files, associations)))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2, help="vnhis pacs processes on the port")
    parser.add_argument("--ceiling", action="store_true",
                        help="also time pynetdicom and DCMTK's storescp answering without storing")
    parser.add_argument("--large", type=int, default=0, help="also store this many ~50 MB multi-frame instances")
    args = parser.parse_args()
    admin_url = os.environ.get("VNHIS_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    with tempfile.TemporaryDirectory(prefix="vnhis-pacs-bench-", dir=os.environ.get("VNHIS_BENCH_DIR")) as tmp:
        work = Path(tmp)
        files = synthetic_ct(work / "files", args.count)
        size = sum(p.stat().st_size for p in files)
        raw = disk_rate(work)
        print(f"{args.count} instances of {size / len(files) / 1024:.0f} KB; disk raw write (dd, direct, fsync): "
              f"{raw:.0f} MB/s")
        print(f"{'server':<27}{'assoc':>6}{'seconds':>10}{'inst/s':>10}{'MB/s':>9}{'% of dd':>9}")
        rates = {}
        try:
            for associations in (1, 4):
                for name, run in _runs(admin_url, work, files, associations, args.workers, args.ceiling):
                    rates[(name.split()[0], associations)] = _print_row(name, associations, len(files), size,
                                                                        run(), raw)
            if args.large:
                shutil.rmtree(work / "files")
                large = synthetic_multiframe(work / "large", args.large)
                large_size = sum(p.stat().st_size for p in large)
                print(f"{args.large} large instances of {large_size / len(large) / 1e6:.0f} MB, one association:")
                for name, run in _runs(admin_url, work, large, 1, args.workers, args.ceiling):
                    rates[(name.split()[0], "large")] = _print_row(name, 1, len(large), large_size, run(), raw)
        finally:
            drop_database(admin_url, DB_NAME)
        for key in (1, 4, "large") if args.large else (1, 4):
            label = "large instances" if key == "large" else f"{key} association(s)"
            print(f"vnhis / orthanc on {label}: {rates[('vnhis', key)] / rates[('orthanc', key)]:.2f}x")


if __name__ == "__main__":
    main()

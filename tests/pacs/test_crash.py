"""kill -9 the node in the middle of a store load, restart it: every instance that was answered with
success is in the index and on disk, byte for byte; nothing in the index lacks its file."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification
from sqlalchemy import select

from pacs.models import Instance
from tests.pacs.conftest import free_port, sample_file

VNHIS = Path(sys.executable).with_name("vnhis")


def _start(db_url: str, tmp_path: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "VNHIS_DATABASE_URL": db_url, "VNHIS_STORAGE_DIR": str(tmp_path / "storage"),
           "VNHIS_VAR_DIR": str(tmp_path / "var"), "VNHIS_ENV": "development", "VNHIS_PACS_MIN_FREE_MB": "0"}
    env.pop("VNHIS_REDIS_URL", None)
    proc = subprocess.Popen([str(VNHIS), "pacs", "--ae-title", "VNHIS", "--port", str(port), "--host", "127.0.0.1"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "listening on" in line:
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep the pipe drained
            return proc
    raise AssertionError(f"vnhis pacs did not start (exit {proc.wait()})")


def _load(port: int, successes: list, enough: threading.Event) -> None:
    ae = AE(ae_title="LOADER")
    ae.add_requested_context(CTImageStorage)
    template = pydicom.dcmread(sample_file("CT_small.dcm"))
    assoc = ae.associate("127.0.0.1", port, ae_title="VNHIS")
    try:
        for _ in range(2000):
            template.SOPInstanceUID = generate_uid()
            status = assoc.send_c_store(template)
            if "Status" not in status:  # the node is gone
                return
            if status.Status == 0x0000:
                successes.append(template.SOPInstanceUID)
                if len(successes) >= 40:
                    enough.set()
    except (RuntimeError, ValueError, OSError):
        return
    finally:
        enough.set()
        assoc.abort()


def test_a_killed_node_loses_no_acknowledged_instance(committed_db_url, pacs_sessions, tmp_path):
    port = free_port()
    proc = _start(committed_db_url, tmp_path, port)
    successes: list[str] = []
    enough = threading.Event()
    loader = threading.Thread(target=_load, args=(port, successes, enough))
    loader.start()
    enough.wait(120)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    loader.join(60)
    acknowledged = list(successes)
    assert len(acknowledged) >= 40

    proc = _start(committed_db_url, tmp_path, port)
    try:
        ae = AE(ae_title="CHECK")
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", port, ae_title="VNHIS")
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    root = tmp_path / "storage" / "dicom"
    with pacs_sessions() as session:
        indexed = {i.sop_instance_uid: i for i in session.scalars(select(Instance))}
    assert set(acknowledged) <= set(indexed)
    for instance in indexed.values():  # every index row has its complete file
        assert hashlib.sha256((root / instance.path).read_bytes()).hexdigest() == instance.sha256

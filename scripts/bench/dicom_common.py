"""Shared by the DICOM benchmarks: a scratch PostgreSQL database, a `vnhis pacs` node, synthetic CT files."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, EnhancedCTImageStorage, ExplicitVRLittleEndian, generate_uid
from sqlalchemy import text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
VNHIS = Path(sys.executable).with_name("vnhis")
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}  # Debian's DCMTK leaves Nagle on otherwise (~20 inst/s)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fresh_database(admin_url: str, name: str) -> str:
    """Drop and create `name`, migrate it to head; its URL."""
    from core import migrate
    from core.db import make_engine

    admin = make_engine(make_url(admin_url).set(database="postgres").render_as_string(False),
                        isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(admin_url).set(database=name).render_as_string(False)
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    return url


def drop_database(admin_url: str, name: str) -> None:
    from core.db import make_engine

    admin = make_engine(make_url(admin_url).set(database="postgres").render_as_string(False),
                        isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def wait_for_echo(port: int, ae_title: str, proc: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the node on port {port} exited with {proc.returncode}")
        done = subprocess.run(["echoscu", "-aec", ae_title, "127.0.0.1", str(port)], env=DCMTK_ENV,
                              capture_output=True)
        if done.returncode == 0:
            return
        time.sleep(0.2)
    raise SystemExit(f"no C-ECHO answer on port {port}")


def start_vnhis(db_url: str, work: Path, port: int, workers: int) -> subprocess.Popen:
    env = {**os.environ, "VNHIS_DATABASE_URL": db_url, "VNHIS_STORAGE_DIR": str(work / "storage"),
           "VNHIS_VAR_DIR": str(work / "var"), "VNHIS_ENV": "development", "VNHIS_PACS_MIN_FREE_MB": "0",
           "VNHIS_LOG_LEVEL": "WARNING"}
    env.pop("VNHIS_REDIS_URL", None)
    proc = subprocess.Popen([str(VNHIS), "pacs", "--ae-title", "VNHIS", "--port", str(port), "--host", "127.0.0.1",
                             "--workers", str(workers)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_echo(port, "VNHIS", proc)
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def synthetic_multiframe(folder: Path, count: int, frames: int = 100, seed: int = 11) -> list[Path]:
    """`count` Enhanced CT instances of `frames` 512×512 16-bit frames (about 50 MB each for 100 frames)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    volume = rng.integers(0, 4096, (frames, 512, 512), dtype=np.uint16)
    study, series = generate_uid(), generate_uid()
    paths = []
    for index in range(count):
        ds = pydicom.Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = EnhancedCTImageStorage, generate_uid()
        ds.PatientName, ds.PatientID, ds.Modality = "Trần^Thị Lớn", "BENCHL", "CT"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.InstanceNumber = study, series, index + 1
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.Rows = ds.Columns = 512
        ds.NumberOfFrames = frames
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.PixelData = np.roll(volume, index, axis=1).tobytes()
        path = folder / f"mf{index:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def synthetic_ct(folder: Path, count: int, *, studies: int = 1, seed: int = 7) -> list[Path]:
    """`count` 512×512 16-bit CT slices (about 525 KB each), Explicit VR Little Endian, spread over studies."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = (rng.normal(0, 40, (512, 512)) + 1000).astype(np.uint16)
    study_uids = [generate_uid() for _ in range(studies)]
    series_uids = [generate_uid() for _ in range(studies)]
    paths = []
    for index in range(count):
        ds = pydicom.Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.PatientName, ds.PatientID = f"Nguyễn^Văn {index % studies}", f"BENCH{index % studies:05d}"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uids[index % studies], series_uids[index % studies]
        ds.StudyDate, ds.StudyTime, ds.Modality, ds.AccessionNumber = "20261202", "080000", "CT", f"B{index % studies}"
        ds.InstanceNumber, ds.SeriesNumber = index + 1, 1
        ds.Rows = ds.Columns = 512
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = np.roll(base, index, axis=0).tobytes()
        path = folder / f"ct{index:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths

"""A running DICOM node on a committed database, DCMTK helpers and pydicom's bundled test files."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path
from zoneinfo import ZoneInfo

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from core.db import make_engine, make_session_factory
from core.modules import import_models
from pacs.scp import Node

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
# Bundled with pydicom (no download): native, deflate, RLE, JPEG baseline/extended, JPEG 2000, UTF-8, RT.
# MR_small_RLE.dcm is MR_small.dcm's SOP instance compressed: it is sent as a re-send (a duplicate)
# and, with new UIDs, as an RLE instance of its own.
TEST_FILES = ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "SC_rgb_jpeg_dcmtk.dcm",
              "image_dfl.dcm", "JPEG-lossy.dcm", "SC_rgb_small_odd.dcm", "rtplan.dcm")
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}  # Debian's DCMTK leaves Nagle on otherwise


PROPOSE = {"1.2.840.10008.1.2.4.50": "-xy", "1.2.840.10008.1.2.4.51": "-xx", "1.2.840.10008.1.2.4.90": "-xv",
           "1.2.840.10008.1.2.4.91": "-xw", "1.2.840.10008.1.2.5": "-xr", "1.2.840.10008.1.2.1.99": "-xd",
           "1.2.840.10008.1.2.4.80": "-xt", "1.2.840.10008.1.2.4.81": "-xu", "1.2.840.10008.1.2.4.70": "-xs"}


def storescu(port: int, files, calling: str = "MODALITY", check: bool = True) -> list:
    """Send `files` with DCMTK storescu, each group proposing its own transfer syntax (as a modality does)."""
    groups: dict[str, list] = {}
    for path in files:
        ts = str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
        groups.setdefault(PROPOSE.get(ts, "-x="), []).append(path)
    return [dcmtk("storescu", option, "-aec", "VNHIS", "-aet", calling, "127.0.0.1", port, *paths, check=check)
            for option, paths in groups.items()]


def sample_file(name: str) -> Path:
    return Path(get_testdata_file(name))


@pytest.fixture(scope="session")
def sample_files(tmp_path_factory) -> list[Path]:
    """The varied set: the bundled files plus RLE and JPEG-LS instances of their own (pydicom ships those
    encodings of MR_small under MR_small's own UIDs)."""
    folder = tmp_path_factory.mktemp("samples")
    own = []
    for name in ("MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm"):
        ds = pydicom.dcmread(sample_file(name))
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SeriesInstanceUID = generate_uid()
        own.append(folder / name.replace(".dcm", "_own.dcm"))
        ds.save_as(own[-1], enforce_file_format=True)
    return [sample_file(name) for name in TEST_FILES] + own


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dcmtk(*args, cwd=None, check=True) -> subprocess.CompletedProcess:
    tool = shutil.which(args[0])
    if tool is None:
        pytest.fail(f"{args[0]} is missing: install Debian's dcmtk")
    result = subprocess.run([tool, *map(str, args[1:])], capture_output=True, text=True, env=DCMTK_ENV, cwd=cwd,
                            timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"{args[0]} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def pacs_sessions(committed_db_url):
    import_models()
    engine = make_engine(committed_db_url)
    yield make_session_factory(engine)
    engine.dispose()


class RunningNode:
    def __init__(self, node: Node, server):
        self.node, self.server = node, server
        self.port = server.server_address[1]
        self.thread = threading.Thread(target=server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()


@pytest.fixture
def start_node(pacs_sessions, tmp_path):
    started = []

    def _start(**options) -> RunningNode:
        node = Node(pacs_sessions, tmp_path / "storage" / "dicom", options.pop("ae_title", "VNHIS"), tz=TZ, **options)
        running = RunningNode(node, node.make_server("127.0.0.1", 0))
        started.append(running)
        return running

    yield _start
    for running in started:
        running.stop()


@pytest.fixture
def node(start_node):
    return start_node()


def pixel_bytes(path) -> bytes:
    return pydicom.dcmread(path).PixelData

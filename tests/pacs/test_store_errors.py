"""Bad input over the wire (pynetdicom SCU): each case gets its exact DIMSE status, nothing is half-stored
(no index row, no file), and the node goes on serving."""

from __future__ import annotations

import pydicom
import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE, _config
from pynetdicom.sop_class import CTImageStorage, MRImageStorage, Verification
from sqlalchemy import func, select

from core.audit import Actor
from pacs import remotes, transport
from pacs.models import Instance, Series, Study
from tests.pacs.conftest import sample_file


def _associate(port: int, calling: str = "TESTSCU"):
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    for uid in (CTImageStorage, MRImageStorage):
        for ts in ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2"):
            ae.add_requested_context(uid, ts)
    return ae.associate("127.0.0.1", port, ae_title="VNHIS")


@pytest.fixture
def chunked_send():
    """Send files' bytes as they are on disk (as a broken modality would), not re-encoded by pynetdicom."""
    before = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    yield
    _config.STORE_SEND_CHUNKED_DATASET = before


@pytest.fixture(params=["in memory", "spilled to a file"])
def receive_path(request, monkeypatch):
    """Each bad input both as a small data set (gathered in memory) and as a large one (written to its file
    as it arrives): a 1 KiB threshold makes every sample large."""
    if request.param == "spilled to a file":
        monkeypatch.setattr(transport, "SPILL_BYTES", 1024)


def _nothing_stored(pacs_sessions, node) -> None:
    with pacs_sessions() as session:
        assert [session.scalar(select(func.count()).select_from(m)) for m in (Study, Series, Instance)] == [0, 0, 0]
    root = node.node.storage_root
    assert not root.exists() or [p for p in root.rglob("*") if p.is_file()] == []


def _still_serving(node) -> None:
    assoc = _associate(node.port)
    assert assoc.is_established
    assert assoc.send_c_store(pydicom.dcmread(sample_file("CT_small.dcm"))).Status == 0x0000
    assoc.release()


def _send_file(port: int, path) -> pydicom.Dataset:
    assoc = _associate(port)
    assert assoc.is_established
    status = assoc.send_c_store(path)
    assoc.release()
    return status


def _truncated(tmp_path):
    raw = sample_file("CT_small.dcm").read_bytes()
    path = tmp_path / "truncated.dcm"
    path.write_bytes(raw[:-1000])
    return path


def _not_dicom(tmp_path):
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    path = tmp_path / "garbage.dcm"
    ds.save_as(path, enforce_file_format=True)
    raw = path.read_bytes()
    meta_end = 132 + 12 + ds.file_meta.FileMetaInformationGroupLength
    path.write_bytes(raw[:meta_end] + b"this is not a DICOM data set at all\x00" * 50)
    return path


def _class_mismatch(tmp_path):
    """Announced (file meta, so the C-STORE request) as MR, but the data set says CT Image Storage."""
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    ds.SOPClassUID = MRImageStorage
    path = tmp_path / "mismatch.dcm"
    ds.save_as(path, enforce_file_format=True)
    raw = path.read_bytes()
    at = raw.rindex(MRImageStorage.encode())  # the data set's copy, after the file meta's
    path.write_bytes(raw[:at] + CTImageStorage.encode() + raw[at + len(MRImageStorage):])  # same length
    return path


@pytest.mark.parametrize(("make", "status", "comment"), [
    (_truncated, 0xC000, "data set truncated in element (7FE0,0010)"),
    (_not_dicom, 0xC000, "data set truncated in element (6874,7369)"),  # b"hist" read as a tag
    (_class_mismatch, 0xA900, "SOP Class UID differs from the request's"),
])
def test_broken_payloads_are_refused(node, pacs_sessions, tmp_path, chunked_send, receive_path, make, status,
                                     comment):
    reply = _send_file(node.port, make(tmp_path))
    assert (reply.Status, reply.ErrorComment) == (status, comment)
    _nothing_stored(pacs_sessions, node)
    _still_serving(node)


@pytest.mark.parametrize("missing", ["StudyInstanceUID", "SeriesInstanceUID"])
def test_an_instance_without_its_uids_is_refused(node, pacs_sessions, receive_path, missing):
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    delattr(ds, missing)
    assoc = _associate(node.port)
    reply = assoc.send_c_store(ds)
    assoc.release()
    assert (reply.Status, reply.ErrorComment) == (0xA900, f"missing {missing}")
    _nothing_stored(pacs_sessions, node)
    _still_serving(node)


def test_a_full_disk_is_out_of_resources(start_node, pacs_sessions, receive_path):
    node = start_node(min_free_bytes=1 << 60)
    assoc = _associate(node.port)
    reply = assoc.send_c_store(pydicom.dcmread(sample_file("CT_small.dcm")))
    assoc.release()
    assert (reply.Status, reply.ErrorComment) == (0xA700, "storage full")
    _nothing_stored(pacs_sessions, node)


def test_with_ae_checking_only_known_callers_may_associate(start_node, pacs_sessions):
    node = start_node(check_calling_ae=True)
    refused = _associate(node.port, "STRANGER")
    assert refused.is_rejected and not refused.is_established
    with pacs_sessions() as session:
        remotes.add(session, Actor.system("test"), "CT1", "127.0.0.1", 104)
        session.commit()
    assert _associate(node.port, "STRANGER").is_rejected
    known = _associate(node.port, "CT1")
    assert known.is_established
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    ds.SOPInstanceUID = generate_uid()
    assert known.send_c_store(ds).Status == 0x0000
    known.release()
    with pacs_sessions() as session:
        assert session.scalar(select(Instance.calling_ae)) == "CT1"


def test_ae_titles_are_checked():
    from core.config import ConfigError
    from pacs.settings import check_ae_title

    assert check_ae_title(" VNHIS ") == "VNHIS"
    with pytest.raises(ConfigError, match="--ae-title must be 1-16 printable ASCII characters without a backslash"):
        check_ae_title("A-TITLE-FAR-TOO-LONG", "--ae-title")


def test_a_file_left_by_a_dead_store_is_never_replaced(tmp_path):
    """Same SOP Instance UID, other bytes already on disk (a store killed before its commit): ours get a
    name of their own, and discarding ours after a failed commit leaves the other file alone."""
    import hashlib

    from pacs.store import place, write_temp

    target = tmp_path / "a" / "x.dcm"
    target.parent.mkdir()
    target.write_bytes(b"first")
    ours = b"second"
    final, created = place(write_temp(target.parent, ours), target, hashlib.sha256(ours).hexdigest())
    assert created and final != target and final.read_bytes() == ours and target.read_bytes() == b"first"
    again, created_again = place(write_temp(target.parent, ours), target, hashlib.sha256(ours).hexdigest())
    assert (again, created_again) == (final, False)
    assert sorted(p.name for p in target.parent.iterdir()) == sorted([target.name, final.name])  # no temp left

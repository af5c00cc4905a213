"""The node's own transport pieces: the Part 10 header and the C-STORE response written by hand, the bulk PDU
reader, and the event-driven association threads."""

from __future__ import annotations

import copy
import gc
import hashlib
import io
import os
import socket
import struct
import threading
import time

import pydicom
import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode
from pynetdicom.sop_class import Verification
from sqlalchemy import select

from pacs import part10, store, transport
from pacs.models import Instance
from pacs.transport import _Contexts, store_response
from tests.pacs.conftest import sample_file, storescu
from tests.pacs.test_store_errors import _still_serving


@pytest.mark.parametrize(("source_ae", "instance"), [("CT1", "1.2.3.4.5"), ("MODALITY_EVEN", "1.2.3.4.56"),
                                                     ("", generate_uid())])  # odd lengths are padded
def test_the_part10_header_reads_back_as_written(source_ae, instance):
    body = io.BytesIO()
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    ds.SOPInstanceUID = instance
    del ds.file_meta  # the data set alone, as it comes in a C-STORE
    ds.preamble = None
    ds.save_as(body, enforce_file_format=False, implicit_vr=False, little_endian=True)
    head = part10.header(CTImageStorage, instance, ExplicitVRLittleEndian, source_ae)
    read = pydicom.dcmread(io.BytesIO(head + body.getvalue()))
    meta = read.file_meta
    assert head[128:132] == b"DICM"
    assert meta.FileMetaInformationGroupLength == len(head) - 144  # what follows the 12-byte length element
    assert (meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, meta.TransferSyntaxUID) == (
        CTImageStorage, instance, ExplicitVRLittleEndian)
    assert (meta.ImplementationClassUID, meta.ImplementationVersionName) == (
        PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION)
    assert meta.get("SourceApplicationEntityTitle", "") == source_ae
    assert meta.FileMetaInformationVersion == b"\x00\x01"
    assert read.SOPInstanceUID == instance and read.PixelData == ds.PixelData


def test_a_uid_that_is_not_ascii_or_too_long_is_refused():
    with pytest.raises(ValueError):
        part10.header(CTImageStorage, "1.2.3.Đ", ExplicitVRLittleEndian, "CT1")
    with pytest.raises(ValueError):
        part10.header(CTImageStorage, "1." * 40, ExplicitVRLittleEndian, "CT1")


def test_a_peer_announcing_a_huge_pdu_and_vanishing_changes_nothing(node):
    # An A-ASSOCIATE-RQ header claiming almost 4 GiB, then 10 bytes, then the connection closes: the
    # reader allocates only what arrives and the node goes on serving.
    with socket.create_connection(("127.0.0.1", node.port)) as sock:
        sock.sendall(struct.pack(">BBL", 0x01, 0, 0xFFFFFFF0) + b"\x00" * 10)
    _still_serving(node)


@pytest.mark.parametrize(("instance", "status", "comment"), [
    ("1.2.3.4", 0x0000, None), ("1.2.3.45", 0xA900, "missing StudyInstanceUID"), (generate_uid(), 0xC000, "odd")])
def test_the_store_response_is_encoded_as_pynetdicom_encodes_it(instance, status, comment):
    primitive = C_STORE()
    primitive.MessageIDBeingRespondedTo, primitive.Status, primitive.ErrorComment = 7, status, comment
    primitive.AffectedSOPClassUID, primitive.AffectedSOPInstanceUID = CTImageStorage, instance
    message = C_STORE_RSP()
    message.primitive_to_message(primitive)
    assert store_response(primitive) == encode(message.command_set, True, True)


def test_each_association_gets_its_own_copy_of_the_supported_contexts(node):
    contexts = node.server.contexts
    assert isinstance(contexts, _Contexts) and len(contexts) > 100
    one, two = copy.deepcopy(contexts), copy.deepcopy(contexts)
    assert [(c.abstract_syntax, c.transfer_syntax, c.scp_role, c.scu_role) for c in one] == [
        (c.abstract_syntax, c.transfer_syntax, c.scp_role, c.scu_role) for c in contexts]
    one[0].transfer_syntax.append("1.2.3")  # what negotiation changes in one copy stays there
    one[0].context_id = 1
    assert "1.2.3" in one[0].transfer_syntax
    assert "1.2.3" not in two[0].transfer_syntax and "1.2.3" not in contexts[0].transfer_syntax
    assert two[0].context_id is None and contexts[0].context_id is None


def _node_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if type(t).__name__ in ("_WakingDUL", "Association")]


def test_associations_end_at_once_and_leave_no_thread_or_socket(node):
    # The DUL and association threads block on events instead of polling: a release or an abort from
    # the peer must still end both threads promptly and close the wake-up sockets.
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(Verification)
    baseline_fds, baseline_threads = len(os.listdir("/proc/self/fd")), len(_node_threads())
    started = time.monotonic()
    for index in range(20):
        assoc = ae.associate("127.0.0.1", node.port, ae_title="VNHIS")
        assert assoc.is_established and assoc.send_c_echo().Status == 0x0000
        assoc.abort() if index % 2 else assoc.release()
    deadline = time.monotonic() + 5
    while len(_node_threads()) > baseline_threads and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(_node_threads()) == baseline_threads
    assert len(os.listdir("/proc/self/fd")) <= baseline_fds
    assert time.monotonic() - started < 10  # a polling wait missed would cost seconds per association


def test_a_large_data_set_is_stored_from_the_file_it_arrived_in(node, pacs_sessions, sample_files, monkeypatch):
    # Past SPILL_BYTES a data set goes to its file fragment by fragment, hashed as it is written; a 1 KiB
    # threshold sends every sample that way. The stored file is the Part 10 header and the bytes sent.
    monkeypatch.setattr(transport, "SPILL_BYTES", 1024)
    opened = []
    real_init = store.IncomingFile.__init__
    monkeypatch.setattr(store.IncomingFile, "__init__", lambda self, *a: (opened.append(a), real_init(self, *a))[1])
    storescu(node.port, sample_files)
    assert len(opened) == len(sample_files)
    root = node.node.storage_root
    originals = {str(pydicom.dcmread(f).SOPInstanceUID): pydicom.dcmread(f) for f in sample_files}
    with pacs_sessions() as session:
        instances = session.scalars(select(Instance)).all()
    assert {i.sop_instance_uid for i in instances} == set(originals)
    for instance in instances:
        data = (root / instance.path).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (instance.size, instance.sha256)
        stored, original = pydicom.dcmread(root / instance.path), originals[instance.sop_instance_uid]
        assert stored.file_meta.SourceApplicationEntityTitle == "MODALITY"
        assert stored.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
        original.pop(0xFFFCFFFC, None)  # DCMTK's storescu leaves the trailing padding out
        # Every element's value, pixel data included (storescu writes encapsulated pixel data as OB, which
        # pydicom's JPEG-LS sample declares OW).
        assert [(e.tag, e.value) for e in stored] == [(e.tag, e.value) for e in original]
    assert list((root / store.INCOMING).iterdir()) == []


def test_an_incoming_file_never_received_is_removed_and_a_write_error_is_kept(tmp_path):
    abandoned = store.IncomingFile(tmp_path / "incoming", b"DICM")  # the association broke off mid-transfer
    abandoned.write(b"x" * 10)
    path = abandoned.path
    assert path.exists()
    del abandoned
    gc.collect()
    assert not path.exists()
    (tmp_path / "a file").write_text("")
    failed = store.IncomingFile(tmp_path / "a file" / "incoming", b"DICM")  # its folder cannot be made
    failed.write(b"more")
    assert failed.error is not None and failed.error.status == 0xA700
    with pytest.raises(store.StoreError):
        store.receive(tmp_path / "dicom", failed)


def test_the_node_removes_temporary_files_a_crash_left(start_node, tmp_path):
    incoming = tmp_path / "storage" / "dicom" / store.INCOMING
    incoming.mkdir(parents=True)
    old, recent, other = incoming / ".tmp-old", incoming / ".tmp-recent", incoming / "keep.txt"
    for path in (old, recent, other):
        path.write_bytes(b"DICM")
    day_ago = time.time() - store.STALE_SECONDS - 60
    os.utime(old, (day_ago, day_ago))
    os.utime(other, (day_ago, day_ago))
    start_node()  # its storage root is tmp_path / "storage" / "dicom"
    assert not old.exists() and recent.exists() and other.exists()  # a younger one may be a transfer under way

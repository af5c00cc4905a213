"""The node's own transport pieces: the Part 10 header written by hand, and the bulk PDU reader."""

from __future__ import annotations

import io
import socket
import struct

import pydicom
import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

from pacs import part10
from tests.pacs.conftest import sample_file
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

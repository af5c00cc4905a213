"""The node over the wire with DCMTK: echoscu, storescu, findscu at every level, movescu to a storescp the
test starts, getscu; the pixel data comes back byte-equal."""

from __future__ import annotations

import subprocess
import time

import pydicom
from pydicom.uid import generate_uid
from sqlalchemy import func, select

from core.audit import Actor
from pacs import remotes
from pacs.models import Instance, Series, Study
from tests.pacs.conftest import DCMTK_ENV, dcmtk, free_port, pixel_bytes, sample_file, storescu


def _store_all(node, files) -> list:
    storescu(node.port, files)
    return files


def _find(node, tmp_path, model: str, level: str, *keys: str) -> list[pydicom.Dataset]:
    out = tmp_path / f"find-{level}-{time.monotonic_ns()}"
    out.mkdir()
    dcmtk("findscu", model, "-aec", "VNHIS", "-X", "-od", out, "-k", f"QueryRetrieveLevel={level}",
          *[arg for key in keys for arg in ("-k", key)], "127.0.0.1", node.port)
    return [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def _move_every_study(node, pacs_sessions, tmp_path, title: str, *storescp_options: str) -> tuple:
    """movescu of each study to a DCMTK storescp started here as `title`: (its folder, the study UIDs,
    movescu's results)."""
    port = free_port()
    received = tmp_path / "moved"
    received.mkdir()
    scp = subprocess.Popen(["storescp", "-aet", title, *storescp_options, "-od", str(received), str(port)],
                           env=DCMTK_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with pacs_sessions() as session:
            remotes.add(session, Actor.system("test"), title, "127.0.0.1", port)
            session.commit()
            study_uids = list(session.scalars(select(Study.study_uid)))
        time.sleep(0.3)
        results = [dcmtk("movescu", "-v", "-S", "-aec", "VNHIS", "-aem", title, "-k", "QueryRetrieveLevel=STUDY",
                         "-k", f"StudyInstanceUID={uid}", "127.0.0.1", node.port, check=False) for uid in study_uids]
    finally:
        scp.terminate()
        scp.wait(timeout=10)
    return received, study_uids, results


def test_echo(node):
    result = dcmtk("echoscu", "-v", "-aec", "VNHIS", "127.0.0.1", node.port)
    assert "Received Echo Response (Success)" in result.stderr


def test_store_find_move_get_round_trip(node, pacs_sessions, tmp_path, sample_files):
    files = _store_all(node, sample_files)
    originals = {str(pydicom.dcmread(f).SOPInstanceUID): f for f in files}
    with pacs_sessions() as session:
        assert session.scalar(select(func.count()).select_from(Instance)) == len(files)
        stored = {i.sop_instance_uid: i.transfer_syntax for i in session.scalars(select(Instance))}
    assert {uid: str(pydicom.dcmread(f).file_meta.TransferSyntaxUID) for uid, f in originals.items()} == stored

    ct = pydicom.dcmread(sample_file("CT_small.dcm"))
    patients = _find(node, tmp_path, "-P", "PATIENT", f"PatientID={ct.PatientID}", "PatientName",
                     "NumberOfPatientRelatedInstances")
    assert [(p.PatientID, str(p.PatientName)) for p in patients] == [(ct.PatientID, str(ct.PatientName))]
    studies = _find(node, tmp_path, "-S", "STUDY", "StudyInstanceUID", f"StudyDate={ct.StudyDate}", "PatientName",
                    "ModalitiesInStudy", "NumberOfStudyRelatedInstances")
    assert ct.StudyInstanceUID in {s.StudyInstanceUID for s in studies}
    mine = next(s for s in studies if s.StudyInstanceUID == ct.StudyInstanceUID)
    assert mine.ModalitiesInStudy == "CT" and int(mine.NumberOfStudyRelatedInstances) == 1
    series = _find(node, tmp_path, "-S", "SERIES", f"StudyInstanceUID={ct.StudyInstanceUID}", "SeriesInstanceUID",
                   "Modality", "SeriesNumber")
    assert [(s.SeriesInstanceUID, s.Modality) for s in series] == [(ct.SeriesInstanceUID, "CT")]
    images = _find(node, tmp_path, "-P", "IMAGE", f"PatientID={ct.PatientID}",
                   f"StudyInstanceUID={ct.StudyInstanceUID}", f"SeriesInstanceUID={ct.SeriesInstanceUID}",
                   "SOPInstanceUID", "InstanceNumber")
    assert [i.SOPInstanceUID for i in images] == [ct.SOPInstanceUID]

    # C-MOVE every study to a storescp started here, which accepts every transfer syntax.
    received, study_uids, results = _move_every_study(node, pacs_sessions, tmp_path, "VIEWER", "+xa")
    assert all(r.returncode == 0 for r in results)
    moved = {str(pydicom.dcmread(p).SOPInstanceUID): p for p in received.iterdir()}
    assert set(moved) == set(originals)
    for uid, original in originals.items():
        assert pixel_bytes(moved[uid]) == pixel_bytes(original) if "PixelData" in pydicom.dcmread(original) \
            else pydicom.dcmread(moved[uid]) == pydicom.dcmread(original)

    # C-GET on the same association: getscu takes uncompressed data, so compressed images come back decoded;
    # 12-bit JPEG Extended has no decoder without a GPL library, so that one sub-operation fails.
    got = tmp_path / "got"
    got.mkdir()
    for uid in study_uids:
        dcmtk("getscu", "-S", "-aec", "VNHIS", "-od", got, "-k", "QueryRetrieveLevel=STUDY",
              "-k", f"StudyInstanceUID={uid}", "127.0.0.1", node.port, check=False)
    fetched = {str(pydicom.dcmread(p).SOPInstanceUID): p for p in got.iterdir()}
    undecodable = str(pydicom.dcmread(sample_file("JPEG-lossy.dcm")).SOPInstanceUID)
    assert set(fetched) == set(originals) - {undecodable}
    del originals[undecodable]
    for uid, original in originals.items():
        source = pydicom.dcmread(original)
        if "PixelData" not in source:
            continue
        copy = pydicom.dcmread(fetched[uid])
        if source.file_meta.TransferSyntaxUID.is_compressed:
            assert (copy.pixel_array == source.pixel_array).all()
        else:
            assert copy.PixelData == source.PixelData


def test_a_destination_taking_only_uncompressed_data_gets_compressed_images_decoded(node, pacs_sessions, tmp_path,
                                                                                   sample_files):
    # storescp without +xa accepts only the uncompressed syntaxes: the node proposes each class both as
    # stored and uncompressed, and sends what the destination refused compressed decoded, the same image.
    compressed = [f for f in sample_files if pydicom.dcmread(f).file_meta.TransferSyntaxUID.is_compressed]
    _store_all(node, sample_files)
    received, _studies, results = _move_every_study(node, pacs_sessions, tmp_path, "OLDVIEWER")
    moved = {str(pydicom.dcmread(p).SOPInstanceUID): pydicom.dcmread(p) for p in received.iterdir()}
    undecodable = str(pydicom.dcmread(sample_file("JPEG-lossy.dcm")).SOPInstanceUID)  # 12-bit: no free decoder
    assert set(moved) == {str(pydicom.dcmread(f).SOPInstanceUID) for f in sample_files} - {undecodable}
    assert sum("(Warning: SubOperationsCompleteOneOrMoreFailures)" in r.stderr for r in results) == 1
    assert len(compressed) >= 4  # JPEG 2000, JPEG baseline, 12-bit JPEG, RLE
    for original in map(pydicom.dcmread, compressed):
        if str(original.SOPInstanceUID) == undecodable:
            continue
        copy = moved[str(original.SOPInstanceUID)]
        assert not copy.file_meta.TransferSyntaxUID.is_compressed
        assert (copy.pixel_array == original.pixel_array).all()


def test_move_to_an_unknown_destination_is_refused(node, tmp_path, sample_files):
    _store_all(node, sample_files)
    result = dcmtk("movescu", "-v", "-S", "-aec", "VNHIS", "-aem", "NOWHERE", "-k", "QueryRetrieveLevel=STUDY",
                   "-k", f"StudyInstanceUID={pydicom.dcmread(sample_file('CT_small.dcm')).StudyInstanceUID}",
                   "127.0.0.1", node.port, check=False)
    assert "Received Final Move Response (Refused: MoveDestinationUnknown)" in result.stderr


def test_storing_again_stores_nothing_twice(node, pacs_sessions, sample_files):
    _store_all(node, sample_files)
    with pacs_sessions() as session:
        before = [session.scalar(select(func.count()).select_from(m)) for m in (Study, Series, Instance)]
    _store_all(node, sample_files + [sample_file("MR_small_RLE.dcm")])  # MR_small again, RLE-compressed
    with pacs_sessions() as session:
        assert [session.scalar(select(func.count()).select_from(m)) for m in (Study, Series, Instance)] == before


def test_a_utf8_name_sent_without_a_character_set_is_found(node, tmp_path):
    """findscu sends what was typed as UTF-8 and declares no (0008,0005); the node reads it as UTF-8."""
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName, ds.PatientID = "Dương^Văn An", "VN-UTF8"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    path = tmp_path / "vietnamese.dcm"
    ds.save_as(path, enforce_file_format=True)
    storescu(node.port, [path])

    for typed in ("Dương*", "duong*"):
        found = _find(node, tmp_path, "-S", "STUDY", f"PatientName={typed}", "StudyInstanceUID")
        assert [(s.StudyInstanceUID, str(s.PatientName)) for s in found] == [(ds.StudyInstanceUID, "Dương^Văn An")]
    assert _find(node, tmp_path, "-S", "STUDY", "PatientName=Dương*", "SpecificCharacterSet=ISO_IR 192",
                 "StudyInstanceUID")[0].StudyInstanceUID == ds.StudyInstanceUID
    assert _find(node, tmp_path, "-S", "STUDY", "PatientName=Dưa*") == []

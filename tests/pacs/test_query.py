"""C-FIND matching over the wire (pynetdicom SCU): single values, wild cards, ranges, UID lists, universal
matching, folded Vietnamese names, every requested key returned, both information models, bad levels."""

from __future__ import annotations

import io

import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, build_role
from pynetdicom.sop_class import (
    CTImageStorage,
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
)

from core.audit import Actor
from pacs import store
from tests.pacs.conftest import sample_file

STUDIES = [  # (patient id, name, study date, study time, accession, modality)
    ("BN001", "Nguyễn^Thị Hương", "20261115", "083000", "ACC1", "CT"),
    ("BN002", "Nguyễn^Văn An", "20261120", "140000", "ACC2", "MR"),
    ("BN003", "Trần^Bình", "20261201", "091500", "ACC3", "CT"),
]


@pytest.fixture
def indexed(node, pacs_sessions):
    """Three patients with one CT-sized study each, two instances per study."""
    uids = []
    with pacs_sessions() as session:
        for index, (pid, name, day, time, accession, modality) in enumerate(STUDIES):
            study_uid, series_uid = f"1.2.826.0.1.3680043.8.498.9.{index}", f"1.2.826.0.1.3680043.8.498.9.{index}.1"
            for number in (1, 2):
                ds = pydicom.dcmread(sample_file("CT_small.dcm"))
                ds.SpecificCharacterSet = "ISO_IR 192"
                ds.PatientID, ds.PatientName, ds.StudyDate, ds.StudyTime = pid, name, day, time
                ds.AccessionNumber, ds.Modality, ds.StudyInstanceUID, ds.SeriesInstanceUID = (
                    accession, modality, study_uid, series_uid)
                ds.SOPInstanceUID, ds.InstanceNumber = f"{series_uid}.{number}", number
                buffer = io.BytesIO()
                ds.save_as(buffer, enforce_file_format=True)
                store.store_instance(session, Actor.system("test"), node.node.storage_root, buffer.getvalue())
            uids.append(study_uid)
        session.commit()
    return uids


def _find(port, model, **keys) -> tuple[list[Dataset], int]:
    ae = AE(ae_title="VIEWER")
    ae.add_requested_context(model)
    assoc = ae.associate("127.0.0.1", port, ae_title="VNHIS")
    query = Dataset()
    query.SpecificCharacterSet = "ISO_IR 192"
    for keyword, value in keys.items():
        setattr(query, keyword, value)
    matches, final = [], None
    for status, identifier in assoc.send_c_find(query, model):
        if status.Status in (0xFF00, 0xFF01):
            matches.append(identifier)
        else:
            final = status.Status
    assoc.release()
    return matches, final


def _studies(port, **keys):
    matches, final = _find(port, StudyRootQueryRetrieveInformationModelFind, QueryRetrieveLevel="STUDY",
                           StudyInstanceUID="", AccessionNumber="", **keys)
    assert final == 0x0000
    return sorted(m.AccessionNumber for m in matches)


MATCHING = [
    ({}, ["ACC1", "ACC2", "ACC3"]),                                   # universal
    ({"PatientID": "BN002"}, ["ACC2"]),                               # single value
    ({"PatientID": "BN00*"}, ["ACC1", "ACC2", "ACC3"]),               # wild card
    ({"PatientID": "BN00?"}, ["ACC1", "ACC2", "ACC3"]),
    ({"PatientName": "nguyen*"}, ["ACC1", "ACC2"]),                   # folded PN: no case, no accents
    ({"PatientName": "NGUYỄN^THỊ*"}, ["ACC1"]),
    ({"PatientName": "Tran^Binh"}, ["ACC3"]),
    ({"StudyDate": "20261116-20261130"}, ["ACC2"]),                   # date range
    ({"StudyDate": "20261120-"}, ["ACC2", "ACC3"]),
    ({"StudyDate": "-20261115"}, ["ACC1"]),
    ({"StudyTime": "0800-1000"}, ["ACC1", "ACC3"]),                   # time range
    ({"ModalitiesInStudy": "MR"}, ["ACC2"]),
    ({"AccessionNumber": "ACC3"}, ["ACC3"]),
]


def test_study_level_matching(indexed, node):
    for keys, expected in MATCHING:  # one node and index for all cases
        if "AccessionNumber" in keys:
            matches, _final = _find(node.port, StudyRootQueryRetrieveInformationModelFind,
                                    QueryRetrieveLevel="STUDY", StudyInstanceUID="", **keys)
            assert sorted(m.AccessionNumber for m in matches) == expected, keys
        else:
            assert _studies(node.port, **keys) == expected, keys


def test_uid_lists_and_every_requested_key(indexed, node):
    matches, _final = _find(node.port, StudyRootQueryRetrieveInformationModelFind, QueryRetrieveLevel="STUDY",
                            StudyInstanceUID=f"{indexed[0]}\\{indexed[2]}", PatientName="", StudyDate="",
                            NumberOfStudyRelatedInstances="", StudyDescription="", InstitutionName="")
    assert sorted(m.StudyInstanceUID for m in matches) == [indexed[0], indexed[2]]
    first = next(m for m in matches if m.StudyInstanceUID == indexed[0])
    assert (str(first.PatientName), first.StudyDate, int(first.NumberOfStudyRelatedInstances)) == (
        "Nguyễn^Thị Hương", "20261115", 2)
    assert "StudyDescription" in first and "InstitutionName" in first and first.InstitutionName in ("", None)
    assert first.SpecificCharacterSet == "ISO_IR 192" and first.RetrieveAETitle == "VNHIS"


def test_patient_series_and_image_levels(indexed, node):
    patients, final = _find(node.port, PatientRootQueryRetrieveInformationModelFind, QueryRetrieveLevel="PATIENT",
                            PatientID="", PatientName="nguyen*", NumberOfPatientRelatedStudies="")
    assert final == 0 and sorted((p.PatientID, int(p.NumberOfPatientRelatedStudies)) for p in patients) == [
        ("BN001", 1), ("BN002", 1)]
    series, _ = _find(node.port, StudyRootQueryRetrieveInformationModelFind, QueryRetrieveLevel="SERIES",
                      StudyInstanceUID=indexed[1], SeriesInstanceUID="", Modality="", NumberOfSeriesRelatedInstances="")
    assert [(s.Modality, int(s.NumberOfSeriesRelatedInstances)) for s in series] == [("MR", 2)]
    images, _ = _find(node.port, PatientRootQueryRetrieveInformationModelFind, QueryRetrieveLevel="IMAGE",
                      PatientID="BN001", StudyInstanceUID=indexed[0], SeriesInstanceUID=f"{indexed[0]}.1",
                      SOPInstanceUID="", InstanceNumber="2")
    assert [i.SOPInstanceUID for i in images] == [f"{indexed[0]}.1.2"]


@pytest.mark.parametrize(("model", "keys", "status"), [
    (StudyRootQueryRetrieveInformationModelFind, {"QueryRetrieveLevel": "PATIENT", "PatientID": ""}, 0xA900),
    (StudyRootQueryRetrieveInformationModelFind, {"QueryRetrieveLevel": "FRAME", "StudyInstanceUID": ""}, 0xA900),
    (StudyRootQueryRetrieveInformationModelFind, {"QueryRetrieveLevel": "STUDY", "StudyDate": "2026-1"}, 0xA900),
])
def test_bad_queries_fail_with_a_status(indexed, node, model, keys, status):
    matches, final = _find(node.port, model, **keys)
    assert (matches, final) == ([], status)


def test_c_get_with_pynetdicom_returns_the_stored_bytes(indexed, node):
    ae = AE(ae_title="VIEWER")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(CTImageStorage, "1.2.840.10008.1.2.1")
    received = []

    def on_store(event):
        received.append(event.dataset)
        return 0x0000

    from pynetdicom import evt

    assoc = ae.associate("127.0.0.1", node.port, ae_title="VNHIS", ext_neg=[build_role(CTImageStorage, scp_role=True)],
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    query = Dataset()
    query.QueryRetrieveLevel, query.StudyInstanceUID = "SERIES", indexed[2]
    query.SeriesInstanceUID = f"{indexed[2]}.1"
    statuses = [s.Status for s, _i in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet)]
    assoc.release()
    assert statuses[-1] == 0x0000
    assert sorted(d.SOPInstanceUID for d in received) == [f"{indexed[2]}.1.1", f"{indexed[2]}.1.2"]
    assert all(d.PixelData == pydicom.dcmread(sample_file("CT_small.dcm")).PixelData for d in received)


def test_the_referring_physician_matches_without_regard_to_case(db_session, tmp_path):
    from pacs import query

    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    ds.SpecificCharacterSet, ds.ReferringPhysicianName = "ISO_IR 192", "Trần^Văn Bảo"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    store.store_instance(db_session, Actor.system("test"), tmp_path / "dicom", buffer.getvalue())
    db_session.flush()
    for value, count in (("Trần^Văn Bảo", 1), ("TRẦN^VĂN BẢO", 1), ("trần*", 1), ("tr?n^*", 1), ("*bảo", 1),
                         ("Trần^Văn Bảo^", 1), ("", 1), ("tran*", 0), ("Trần^Văn", 0), ("Lê*", 0)):
        found = list(query.find(db_session, "STUDY", {"ReferringPhysicianName": value}))
        assert len(found) == count, value
    [answer] = query.find(db_session, "STUDY", {"ReferringPhysicianName": "trần*", "PatientName": "compressed*"})
    assert answer["ReferringPhysicianName"] == "Trần^Văn Bảo"  # returned as sent; the patient's name still folds

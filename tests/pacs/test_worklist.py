"""The modality worklist from his imaging orders (DCMTK findscu -W) and MPPS moving the order along."""

from __future__ import annotations

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import ModalityPerformedProcedureStep
from sqlalchemy import select

from core.audit import Actor
from his import demo_catalog, encounters, orders, patients
from his.models.orders import Order
from pacs.models import PerformedStep, WorklistItem
from tests.his.conftest import DESK, TODAY, make_clinic
from tests.pacs.conftest import TZ, dcmtk


@pytest.fixture
def imaging_orders(pacs_sessions):
    """A CT and an ultrasound order for «Nguyễn Thị Hương», and a lab order (not on the worklist)."""
    with pacs_sessions() as session:
        clinic = make_clinic(session)
        demo_catalog.seed(session, Actor.system("test"))
        patient = patients.register(session, DESK, {"full_name": "Nguyễn Thị Hương", "birth_year": 1980,
                                                    "sex": "female"}, today=TODAY,
                                    confirm_possible_duplicate=True).patient
        encounter = encounters.open_encounter(session, DESK, patient, kind="outpatient", day=TODAY,
                                              room=clinic["room"])
        doctor = Actor(id=None, name="bs.test")
        ct = orders.place_order(session, doctor, encounter, "imaging", [{"code": "CDHA.CTSN"}], on=TODAY)
        us = orders.place_order(session, doctor, encounter, "imaging", [{"code": "CDHA.SAOB"}], on=TODAY)
        session.commit()
        items = {i.order_id: i for i in session.scalars(select(WorklistItem))}
        return {"patient_code": patient.code, "ct": items[ct.id], "us": items[us.id], "ct_order": ct.id}


def _worklist(node, tmp_path, *keys) -> list[pydicom.Dataset]:
    out = tmp_path / f"wl{len(list(tmp_path.iterdir()))}"
    out.mkdir()
    dcmtk("findscu", "-W", "-aec", "VNHIS", "-X", "-od", out, "-k", "PatientName", "-k", "PatientID",
          "-k", "AccessionNumber", "-k", "StudyInstanceUID", "-k", "RequestedProcedureDescription",
          *[arg for key in keys for arg in ("-k", key)], "127.0.0.1", node.port)
    return [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def test_imaging_orders_become_worklist_items(imaging_orders):
    ct, us = imaging_orders["ct"], imaging_orders["us"]
    assert (ct.modality, ct.status, us.modality) == ("CT", "scheduled", "US")
    assert ct.accession_number != us.accession_number and len(ct.accession_number) <= 16


def test_findscu_worklist_filters_by_modality_and_date(node, imaging_orders, tmp_path):
    day = imaging_orders["ct"].scheduled_at.astimezone(TZ).strftime("%Y%m%d")  # ordered now
    found = _worklist(node, tmp_path, "ScheduledProcedureStepSequence[0].Modality=CT",
                      f"ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate={day}",
                      "ScheduledProcedureStepSequence[0].ScheduledStationAETitle")
    ct = imaging_orders["ct"]
    assert [(str(r.PatientName), r.PatientID, r.AccessionNumber, r.StudyInstanceUID) for r in found] == [
        ("Nguyễn^Thị Hương", imaging_orders["patient_code"], ct.accession_number, ct.study_uid)]
    assert found[0].SpecificCharacterSet == "ISO_IR 192"
    assert found[0].ScheduledProcedureStepSequence[0].Modality == "CT"
    assert found[0].RequestedProcedureDescription.startswith("Chụp CT sọ não")
    assert len(_worklist(node, tmp_path, "PatientName=nguyen*")) == 2  # folded: no accents, any case
    assert len(_worklist(node, tmp_path, "PatientName=Nguyễn*")) == 2  # UTF-8 sent with no character set
    assert _worklist(node, tmp_path, "ScheduledProcedureStepSequence[0].Modality=MR") == []
    assert _worklist(node, tmp_path, "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate=20200101-"
                                     "20201231") == []


def _mpps_association(port):
    ae = AE(ae_title="CT1")
    ae.add_requested_context(ModalityPerformedProcedureStep)
    assoc = ae.associate("127.0.0.1", port, ae_title="VNHIS")
    assert assoc.is_established
    return assoc


def test_mpps_starts_the_order_and_completing_takes_it_off_the_worklist(node, imaging_orders, pacs_sessions,
                                                                          tmp_path):
    ct = imaging_orders["ct"]
    uid = generate_uid()
    create = Dataset()
    ref = Dataset()
    ref.AccessionNumber = ct.accession_number
    ref.StudyInstanceUID = ct.study_uid
    create.ScheduledStepAttributesSequence = Sequence([ref])
    create.PerformedProcedureStepStatus = "IN PROGRESS"
    create.Modality = "CT"
    assoc = _mpps_association(node.port)
    status, _ = assoc.send_n_create(create, ModalityPerformedProcedureStep, uid)
    assert status.Status == 0x0000
    with pacs_sessions() as session:
        order = session.get(Order, imaging_orders["ct_order"])
        assert (order.status, order.machine_code) == ("in_progress", "CT1")
        assert session.get(WorklistItem, ct.id).status == "in_progress"

    again, _ = assoc.send_n_create(create, ModalityPerformedProcedureStep, uid)
    assert (again.Status, again.ErrorComment) == (0x0111, "MPPS instance already exists")

    done = Dataset()
    done.PerformedProcedureStepStatus = "COMPLETED"
    status, _ = assoc.send_n_set(done, ModalityPerformedProcedureStep, uid)
    assert status.Status == 0x0000
    late, _ = assoc.send_n_set(done, ModalityPerformedProcedureStep, uid)
    assert (late.Status, late.ErrorComment) == (0xA710, "MPPS is already COMPLETED")
    unknown, _ = assoc.send_n_set(done, ModalityPerformedProcedureStep, generate_uid())
    assert (unknown.Status, unknown.ErrorComment) == (0x0112, "no such MPPS instance")
    assoc.release()
    with pacs_sessions() as session:
        assert session.get(WorklistItem, ct.id).status == "completed"
        assert session.scalar(select(PerformedStep.status)) == "COMPLETED"
    remaining = _worklist(node, tmp_path)
    assert [r.AccessionNumber for r in remaining] == [imaging_orders["us"].accession_number]


def test_a_cancelled_order_leaves_the_worklist(node, imaging_orders, pacs_sessions, tmp_path):
    with pacs_sessions() as session:
        orders.cancel(session, Actor(id=None, name="bs.test"), session.get(Order, imaging_orders["ct_order"]),
                      "chỉ định nhầm")
        session.commit()
    assert [r.AccessionNumber for r in _worklist(node, tmp_path)] == [imaging_orders["us"].accession_number]


@pytest.fixture
def station_setting(monkeypatch):
    monkeypatch.setenv("VNHIS_PACS_STATION_AES", "CT=CT01, MR=MR01")


def test_steps_are_scheduled_on_the_modalitys_station(station_setting, node, imaging_orders, tmp_path):
    ct, us = imaging_orders["ct"], imaging_orders["us"]
    assert (ct.station_ae, us.station_ae) == ("CT01", "")  # no station for US: any station may take it
    station = "ScheduledStationAETitle"
    for asked, expected in (("CT01", [ct, us]), ("CT0?", [ct, us]), ("MR01", [us]), ("", [ct, us])):
        found = _worklist(node, tmp_path, f"ScheduledProcedureStepSequence[0].{station}={asked}")
        assert sorted((r.AccessionNumber, r.ScheduledProcedureStepSequence[0].get(station)) for r in found) == sorted(
            (i.accession_number, i.station_ae) for i in expected), asked


@pytest.mark.parametrize("value, message", [
    ("CT", "VNHIS_PACS_STATION_AES must be MODALITY=AE pairs like CT=CT01,MR=MR01, got 'CT'"),
    ("CT=", "VNHIS_PACS_STATION_AES station of CT must be 1-16 printable ASCII characters without a backslash, "
            "got ''"),
    ("MR=A_TITLE_LONGER_THAN_16", "VNHIS_PACS_STATION_AES station of MR must be 1-16 printable ASCII characters "
                                  "without a backslash, got 'A_TITLE_LONGER_THAN_16'"),
])
def test_a_bad_station_setting_is_refused_in_one_line(value, message):
    from core.config import ConfigError
    from pacs.worklist import station_aes

    with pytest.raises(ConfigError) as caught:
        station_aes(value)
    assert str(caught.value) == message
    assert station_aes("") == {} and station_aes("ct=CT01") == {"CT": "CT01"}


def _start_ct(node, imaging_orders):
    ct = imaging_orders["ct"]
    create = Dataset()
    ref = Dataset()
    ref.AccessionNumber = ct.accession_number
    create.ScheduledStepAttributesSequence = Sequence([ref])
    create.PerformedProcedureStepStatus = "IN PROGRESS"
    assoc = _mpps_association(node.port)
    uid = generate_uid()
    status, _ = assoc.send_n_create(create, ModalityPerformedProcedureStep, uid)
    assert status.Status == 0x0000
    return assoc, uid


def test_a_discontinued_step_reverses_its_started_order(node, imaging_orders, pacs_sessions):
    from core.models import AuditEvent

    assoc, uid = _start_ct(node, imaging_orders)
    stop = Dataset()
    stop.PerformedProcedureStepStatus = "DISCONTINUED"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "110503", "DCM", "Patient allergic to media"
    stop.PerformedProcedureStepDiscontinuationReasonCodeSequence = Sequence([code])
    status, _ = assoc.send_n_set(stop, ModalityPerformedProcedureStep, uid)
    assoc.release()
    assert status.Status == 0x0000
    with pacs_sessions() as session:
        order = session.get(Order, imaging_orders["ct_order"])
        assert (order.status, order.reverse_reason) == ("reversed", "MPPS DISCONTINUED: Patient allergic to media")
        assert session.get(WorklistItem, imaging_orders["ct"].id).status == "discontinued"
        assert session.get(Order, imaging_orders["us"].order_id).status == "placed"  # the other order is untouched
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "pacs.mpps.set")).one()
        assert event.detail == {"status": "DISCONTINUED", "order_action": "reverse"}


"""Export (HoSoBenhAn JSON/XML with its 11 groups, FHIR R4 Bundle, PDF), import into another instance with
signatures still verifiable, refusal of a tampered bundle, and the results lis/pacs announce."""

import base64
import json
from datetime import date

import pytest
from fhir.resources.R4B.bundle import Bundle
from lxml import etree
from sqlalchemy import func, select
from sqlalchemy.orm import close_all_sessions

from core import events
from core.db import make_engine, make_session_factory
from ehr import exchange, hosobenhan, pki, records, signing
from ehr.jobs import imaging_report_signed, lab_report_released
from ehr.models import Certificate, Document, MedicalRecord, Version
from ehr.records import RecordError
from his import encounters
from his.models.encounters import Diagnosis
from tests.ehr.conftest import SYSTEM, TREATMENT, make_hospital

TODAY = date.today()
MAIN = {"outpatient_number": "NT-001", "period_from": TODAY.isoformat(), "admission_reason": "Sốt, ho",
        "illness_course": "Sốt 3 ngày", "general": "Tỉnh", "principal_icd": "M00.00", "treatment_plan": "Kháng sinh"}
LAB = {"encounter_id": None, "patient_id": None, "order_id": 7, "report_id": 41, "specimen_barcode": "XN2612020001",
       "released_at": "2026-12-02T08:30:00+07:00", "released_by": "Đỗ Thu Hà",
       "results": [{"code": "WBC", "name": "Bạch cầu", "value": "12.5", "unit": "G/L", "flag": "H",
                    "reference_range": "4.0-10.0", "status": "final"}]}
IMAGING = {"encounter_id": None, "patient_id": None, "order_id": 8, "report_id": 9, "accession_number": "CT0001",
           "study_uid": "1.2.3", "modality": "DX", "procedure": "X-quang ngực thẳng", "findings": "Mờ đáy phổi phải",
           "conclusion": "Viêm phổi thùy dưới phải", "signed_by": "Hoàng Văn Nam",
           "signed_at": "2026-12-02T09:00:00+07:00"}


@pytest.fixture
def vi(app):
    with app.test_request_context():
        yield


@pytest.fixture
def signed_record(db_session, hospital, keys, ca):
    actor = hospital.actor(hospital.doctor)
    record = records.open_record(db_session, actor, hospital.encounter)
    db_session.add(Diagnosis(encounter_id=hospital.encounter.id, position="principal", icd10_code="M00.00",
                             text="Viêm khớp do tụ cầu"))
    main = records.add_document(db_session, actor, record, "15/BV1", MAIN, on=TODAY)
    sheet = records.add_document(db_session, actor, record, "36/BV2", TREATMENT, on=TODAY)
    signing.sign(db_session, actor, records.current(db_session, main), keys)
    signing.sign(db_session, actor, records.current(db_session, sheet), keys)
    records.edit(db_session, actor, sheet, TREATMENT | {"orders": "Thêm thuốc hạ sốt"}, expected_version=1,
                 reason="Bổ sung y lệnh", on=TODAY)
    signing.sign(db_session, actor, records.current(db_session, sheet), keys)
    db_session.commit()
    return record


def _announce(hospital, payload) -> dict:
    return payload | {"encounter_id": hospital.encounter.id, "patient_id": hospital.patient.id}


def test_released_lab_results_and_signed_imaging_reports_join_the_record_once(db_session, hospital):
    assert {s.key for s in events.subscribers("lis.report.released")} >= {"ehr.jobs.lab_report_released"}
    lab_report_released(db_session, _announce(hospital, LAB))
    lab_report_released(db_session, _announce(hospital, LAB))  # delivered again: nothing doubled
    imaging_report_signed(db_session, _announce(hospital, IMAGING))
    record = records.of_encounter(db_session, hospital.encounter.id)
    docs = {d.form_code: d for d in record.documents}
    assert sorted(docs) == ["CDHA", "XN"] and len(record.documents) == 2
    lab = records.current(db_session, docs["XN"]).content
    assert lab["results"][0]["value"] == "12.5" and lab["results_text"] == "Bạch cầu: 12.5 G/L [H] (4.0-10.0)"
    assert docs["XN"].source_ref == "lis:report:41"
    assert records.current(db_session, docs["CDHA"]).content["conclusion"] == "Viêm phổi thùy dưới phải"


def test_a_released_result_is_by_the_person_who_released_it_and_the_system_wrote_it(db_session, hospital):
    lab_report_released(db_session, _announce(hospital, LAB) | {"released_by": "Lê Thị Hoa",
                                                                "released_by_id": hospital.nurse.id})
    imaging_report_signed(db_session, _announce(hospital, IMAGING) | {"signed_by": "Phạm Văn Nam",
                                                                      "signed_by_id": hospital.surgeon.id})
    docs = {d.form_code: d for d in records.of_encounter(db_session, hospital.encounter.id).documents}
    for code, user in (("XN", hospital.nurse), ("CDHA", hospital.surgeon)):
        version = records.current(db_session, docs[code])
        assert (docs[code].author_id, docs[code].author_name) == (user.id, user.full_name)
        assert (version.author_id, version.author_name) == (user.id, user.full_name)
    created = {e["detail"]["form"]: e for e in db_session.info["vnhis.audit.pending"]
               if e["action"] == "ehr.document.create"}
    assert [(created[c]["actor_name"], created[c]["actor_id"], created[c]["detail"]["author_id"])
            for c in ("XN", "CDHA")] == [("lis", None, hospital.nurse.id), ("pacs", None, hospital.surgeon.id)]


def test_an_event_queued_before_it_carried_the_id_names_its_author(db_session, hospital):
    lab_report_released(db_session, _announce(hospital, LAB))
    [doc] = records.of_encounter(db_session, hospital.encounter.id).documents
    assert (doc.author_id, doc.author_name) == (None, "Đỗ Thu Hà")


def test_hosobenhan_json_and_xml_have_the_eleven_groups_and_keep_a_five_character_icd(db_session, hospital,
                                                                                     signed_record, vi):
    lab_report_released(db_session, _announce(hospital, LAB))
    data = json.loads(exchange.export(db_session, hospital.actor(hospital.doctor), signed_record, "json"))
    body = data["HoSoBenhAn"]
    assert list(body) == list(hosobenhan.GROUPS)
    assert body["ThongTinBenhNhan"]["cccd_so"] == "001070012345"
    assert body["ThongTinDieuTri"]["maicd"] == "M00.00"
    assert [t["y_lenh"] for t in body["ThongTinDieuTri"]["ToDieuTri"]] == ["Thêm thuốc hạ sốt"]
    assert body["KetQuaXetNghiem"][0]["machiso"] == "WBC"
    root = etree.fromstring(exchange.export(db_session, hospital.actor(hospital.doctor), signed_record, "xml"))
    assert root.tag == "HoSoBenhAn" and [c.tag for c in root] == list(hosobenhan.GROUPS)
    assert root.findtext("ThongTinDieuTri/maicd") == "M00.00"
    assert root.findtext("ThongTinDieuTri/ToDieuTri/to_dieu_tri/chuky_hoten") == "Trần Văn Hùng"


def test_a_value_longer_than_the_annex_allows_is_an_error_not_cut(db_session, signed_record, monkeypatch, vi):
    monkeypatch.setitem(hosobenhan.MAX_LENGTHS, "cccd_so", 10)  # a stricter annex: the 12-digit number no longer fits
    with pytest.raises(hosobenhan.ExportError) as err:
        hosobenhan.build(db_session, signed_record)
    assert str(err.value) == "HoSoBenhAn/ThongTinBenhNhan/cccd_so is longer than 10 characters: '001070012345'"


def test_the_fhir_bundle_validates_and_every_signature_verifies(db_session, hospital, signed_record, vi):
    data = json.loads(exchange.export(db_session, hospital.actor(hospital.doctor), signed_record, "fhir"))
    bundle = Bundle.model_validate(data)
    kinds = [e.resource.get_resource_type() for e in bundle.entry]
    assert kinds.count("DocumentReference") == 3 and kinds.count("Provenance") == 3
    statuses = [e["resource"]["status"] for e in data["entry"] if e["resource"]["resourceType"] == "DocumentReference"]
    assert statuses == ["current", "superseded", "current"]
    checked = exchange.verify_bundle(data, pki.trusted_cas(db_session))
    assert [(c.version, c.verdict.status) for c in checked] == [(1, "valid"), (1, "valid"), (2, "valid")]


def test_pdf_of_the_record_shows_who_signed(db_session, hospital, signed_record, vi):
    pdf = exchange.export(db_session, hospital.actor(hospital.doctor), signed_record, "pdf")
    assert pdf.startswith(b"%PDF-") and len(pdf) > 5000


def _other_instance(url):
    engine = make_engine(url)
    return engine, make_session_factory(engine)()


def test_import_into_another_instance_keeps_versions_and_signatures_verifiable(db_session, hospital, signed_record,
                                                                              committed_db_url, vi):
    data = json.loads(exchange.export(db_session, hospital.actor(hospital.doctor), signed_record, "fhir"))
    cas = pki.trusted_cas(db_session)
    engine, other = _other_instance(committed_db_url)
    try:
        there = make_hospital(other)
        imported = exchange.import_record(other, SYSTEM, data, there.encounter, cas)
        other.commit()
        docs = {d.form_code: d for d in imported.documents}
        assert imported.imported_from.startswith("vnhis/") and docs["36/BV2"].current_version == 2
        assert docs["36/BV2"].signed_version == 2
        for version in other.scalars(select(Version).join(Document).where(Document.record_id == imported.id)):
            for sig in version.signatures:
                assert signing.verify_bytes(sig.cms, version.canonical, cas).status == "valid"
        again = json.loads(json.dumps(data))
        assert [c.verdict.status for c in exchange.verify_bundle(again, cas)] == ["valid"] * 3
        # The sender's CA is kept as an external CA: the screens, `vnhis ehr check` and restore verify it here.
        assert other.scalars(select(Certificate.kind).where(Certificate.subject.contains("Test Hospital CA"))
                             ).all() == ["external_ca"]
        assert pki.trusted_cas(other, external=False) == []
        assert exchange.check_all(other) == exchange.Integrity(3, 3, [])
    finally:
        other.close()
        close_all_sessions()
        engine.dispose()


def test_an_import_whose_signature_fails_is_refused_and_writes_nothing(db_session, hospital, signed_record,
                                                                      committed_db_url, vi):
    data = json.loads(exchange.export(db_session, hospital.actor(hospital.doctor), signed_record, "fhir"))
    doc_ref = next(e["resource"] for e in data["entry"] if e["resource"]["resourceType"] == "DocumentReference")
    attachment = doc_ref["content"][0]["attachment"]
    attachment["data"] = base64.b64encode(base64.b64decode(attachment["data"]).replace(b"Kh", b"KH")).decode()
    engine, other = _other_instance(committed_db_url)
    try:
        there = make_hospital(other)
        other.commit()
        with pytest.raises(RecordError) as err:
            exchange.import_record(other, SYSTEM, data, there.encounter, pki.trusted_cas(db_session))
        assert str(err.value).startswith("Từ chối nhập: chữ ký của tài liệu ")
        assert "(Không hợp lệ: nội dung hoặc chữ ký đã bị thay đổi). Không có gì được nhập." in str(err.value)
        other.rollback()
        assert other.scalar(select(func.count()).select_from(MedicalRecord)) == 0
    finally:
        other.close()
        close_all_sessions()
        engine.dispose()


def test_surgery_and_procedure_reports_fill_groups_x_and_xi(db_session, hospital, vi):
    actor = hospital.actor(hospital.doctor)
    record = records.open_record(db_session, actor, hospital.encounter)
    base = {"started_at": "2026-12-02T08:00", "preop_icd": "J18.9", "method": "Nội soi phế quản",
            "surgeon": "Trần Văn Hùng", "description": "Hút dịch phế quản thùy dưới phải"}
    with pytest.raises(RecordError) as err:
        records.add_document(db_session, actor, record, "06/BV2", base, on=TODAY)
    assert err.value.field_errors == {"operation_kind": "Chưa nhập «Loại»."}
    records.add_document(db_session, actor, record, "06/BV2", base | {"operation_kind": "procedure"}, on=TODAY)
    data = hosobenhan.build(db_session, record)
    assert [p["phuong_phap"] for p in data["PhieuThuThuat"]] == ["Nội soi phế quản"]
    assert data["PhieuThuThuat"][0]["maicd_truoc"] == "J18.9" and data["PhieuPhauThuat"] == []


def _signed_envelope(entry: dict) -> dict:
    return json.loads(base64.b64decode(entry["resource"]["content"][0]["attachment"]["data"]))


def _without(bundle: dict, keep) -> dict:
    """The bundle without the versions (DocumentReference and its Provenance) whose envelope fails `keep`."""
    dropped = {e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference"
               and not keep(_signed_envelope(e))}
    return bundle | {"entry": [e for e in bundle["entry"] if e["fullUrl"] not in dropped
                               and e["resource"].get("target", [{}])[0].get("reference") not in dropped]}


def test_an_import_binds_versions_by_their_signed_envelope_and_refuses_a_mixed_bundle(
        db_session, hospital, keys, signed_record, committed_db_url, vi):
    doctor = hospital.actor(hospital.doctor)
    second = encounters.open_encounter(db_session, SYSTEM, hospital.patient, kind="outpatient", day=TODAY,
                                       room=hospital.room, doctor=hospital.encounter.doctor, reason="Tái khám")
    other_record = records.open_record(db_session, doctor, second)
    intruder = records.add_document(db_session, doctor, other_record, "36/BV2", TREATMENT | {"orders": "Khác"},
                                    on=TODAY)
    signing.sign(db_session, doctor, records.current(db_session, intruder), keys)
    db_session.commit()
    data = json.loads(exchange.export(db_session, doctor, signed_record, "fhir"))
    foreign = json.loads(exchange.export(db_session, doctor, other_record, "fhir"))
    intruding = _without(foreign, lambda envelope: envelope["document"]["id"] == intruder.id)
    mixed = data | {"entry": data["entry"] + [e for e in intruding["entry"]
                                              if e["resource"]["resourceType"] in ("DocumentReference", "Provenance")]}
    sheet = next(d for d in signed_record.documents if d.form_code == "36/BV2")
    gap = _without(data, lambda envelope: (envelope["document"]["id"], envelope["version"]) != (sheet.id, 1))
    cas = pki.trusted_cas(db_session)
    engine, other = _other_instance(committed_db_url)
    try:
        there = make_hospital(other)
        other.commit()
        for bundle, message in (
                (mixed, "Từ chối nhập: gói dữ liệu trộn các phiên bản đã ký của 2 hồ sơ khác nhau. "
                        "Không có gì được nhập."),
                (gap, f"Từ chối nhập: tài liệu {sheet.id} có các phiên bản đã ký 2 thay vì từ 1 đến 1 của một "
                      "biểu mẫu. Không có gì được nhập.")):
            assert all(c.verdict.ok for c in exchange.verify_bundle(bundle, cas))  # every signature is fine
            with pytest.raises(RecordError) as err:
                exchange.import_record(other, SYSTEM, bundle, there.encounter, cas)
            assert (err.value.code, str(err.value)) == ("bad_bundle", message)
            other.rollback()
            assert other.scalar(select(func.count()).select_from(MedicalRecord)) == 0
            assert other.scalar(select(func.count()).select_from(Certificate)) == 0
    finally:
        other.close()
        close_all_sessions()
        engine.dispose()

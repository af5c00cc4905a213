"""Records, documents and versions: form checks with precise Vietnamese errors, immutable versions with
optimistic locking, cancel/restore with a reason, and the database refusing deletes and rewrites."""

import threading
import time
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import close_all_sessions

from core.db import make_engine, make_session_factory, utcnow
from core.models import AuditEvent
from ehr import records
from ehr.access import AccessDenied
from ehr.models import Document, MedicalRecord, Version
from ehr.records import RecordError
from tests.ehr.conftest import TREATMENT, make_hospital

TODAY = date.today()


@pytest.fixture
def vi(app):
    with app.test_request_context():  # no user: the default locale, Vietnamese
        yield


@pytest.fixture
def record(db_session, hospital):
    made = records.open_record(db_session, hospital.actor(hospital.doctor), hospital.encounter)
    db_session.commit()
    return made


def _counts(session) -> tuple[int, int]:
    return (session.scalar(select(func.count()).select_from(Document)),
            session.scalar(select(func.count()).select_from(Version)))


def _events(session, action: str) -> list[AuditEvent]:
    session.flush()
    return [e for e in session.info.get("vnhis.audit.pending", []) if e["action"] == action]


def test_an_outpatient_visit_gets_the_outpatient_form_and_one_record_only(db_session, hospital, record, vi):
    assert record.form_code == "15/BV1" and record.status == "active"
    with pytest.raises(RecordError) as err:
        records.open_record(db_session, hospital.actor(hospital.doctor), hospital.encounter, "01/BV1")
    assert str(err.value) == "Lượt khám này đã có hồ sơ bệnh án."
    assert db_session.scalar(select(func.count()).select_from(MedicalRecord)) == 1


def test_a_treatment_sheet_is_saved_as_version_1_with_its_canonical_hash(db_session, hospital, record, vi):
    doc = records.add_document(db_session, hospital.actor(hospital.doctor), record, "36/BV2", TREATMENT, on=TODAY)
    version = records.current(db_session, doc)
    assert (doc.current_version, version.number, doc.author_name) == (1, 1, "Trần Văn Hùng")
    assert version.content == {"progress": "Sốt giảm, còn ho khạc đờm", "orders": "Ceftriaxon 1 g × 2 lọ, tiêm TM",
                                "pulse": 88, "temperature": "37.8", "blood_pressure": "120/80"}
    assert version.canonical.startswith(b'{"author":"Tr\xe1\xba\xa7n V\xc4\x83n H\xc3\xb9ng","content":{')
    assert records.sha256(version.canonical) == version.content_hash
    assert [e["detail"]["form"] for e in _events(db_session, "ehr.document.create")] == ["36/BV2"]


def test_missing_fields_and_wrong_codes_are_named_in_vietnamese_and_nothing_is_saved(db_session, hospital, record, vi):
    before = _counts(db_session)
    raw = {"progress": "", "orders": "Theo dõi", "pulse": "nhanh", "temperature": "50", "diagnosis_icd": "X99.9"}
    with pytest.raises(RecordError) as err:
        records.add_document(db_session, hospital.actor(hospital.doctor), record, "36/BV2", raw, on=TODAY)
    assert err.value.field_errors == {
        "progress": "Chưa nhập «Diễn biến bệnh».",
        "diagnosis_icd": "«Chẩn đoán hiện tại (ICD-10)»: Mã ICD-10 «X99.9» không có trong danh mục áp dụng ngày "
                         f"{TODAY:%d/%m/%Y}.",
        "pulse": "«Mạch (lần/phút)» phải là số nguyên.",
        "temperature": "«Nhiệt độ (°C)» phải trong khoảng 30 đến 45.",
    }
    assert _counts(db_session) == before


def test_an_icd_code_not_for_use_is_refused_and_a_five_character_code_is_kept(db_session, hospital, record, vi):
    actor = hospital.actor(hospital.doctor)
    with pytest.raises(RecordError) as err:
        records.add_document(db_session, actor, record, "36/BV2", TREATMENT | {"diagnosis_icd": "R69"}, on=TODAY)
    assert "R69" in err.value.field_errors["diagnosis_icd"]
    doc = records.add_document(db_session, actor, record, "36/BV2", TREATMENT | {"diagnosis_icd": "m0000"}, on=TODAY)
    content = records.current(db_session, doc).content
    assert (content["diagnosis_icd"], content["diagnosis_icd_name"]) == ("M00.00", "Viêm khớp do tụ cầu")


def test_a_conditional_field_is_required_only_when_its_condition_holds(db_session, hospital, vi):
    hospital.encounter.kind = "inpatient"
    record = records.open_record(db_session, hospital.actor(hospital.doctor), hospital.encounter, "10/BV1")
    base = {"admission_reason": "Đau hố chậu phải", "illness_course": "Đau 2 ngày", "pulse": "90",
            "temperature": "38", "blood_pressure": "110/70", "general": "Tỉnh", "organs": "Phản ứng HCP",
            "summary": "Hội chứng nhiễm trùng", "surgical_site": "Hố chậu phải", "principal_icd": "J18.9",
            "treatment_plan": "Mổ", "indication": "elective"}
    with pytest.raises(RecordError) as err:
        records.add_document(db_session, hospital.actor(hospital.doctor), record, "10/BV1", base, on=TODAY)
    assert err.value.field_errors == {"planned_procedure": "Chưa nhập «Phương pháp phẫu thuật dự kiến»."}
    doc = records.add_document(db_session, hospital.actor(hospital.doctor), record, "10/BV1",
                               base | {"indication": "none"}, on=TODAY)
    assert doc.current_version == 1


def test_an_edit_makes_a_new_version_and_the_old_one_stays(db_session, hospital, record, vi):
    actor = hospital.actor(hospital.doctor)
    doc = records.add_document(db_session, actor, record, "36/BV2", TREATMENT, on=TODAY)
    v2 = records.edit(db_session, actor, doc, TREATMENT | {"orders": "Thêm Paracetamol 500 mg"},
                      expected_version=1, on=TODAY)
    assert (v2.number, doc.current_version) == (2, 2)
    v1 = db_session.scalar(select(Version).where(Version.document_id == doc.id, Version.number == 1))
    assert v1.content["orders"] == "Ceftriaxon 1 g × 2 lọ, tiêm TM" and v1.content_hash != v2.content_hash
    [event] = _events(db_session, "ehr.document.edit")
    assert event["detail"]["before"] == v1.content_hash and event["detail"]["after"] == v2.content_hash


def test_a_second_concurrent_edit_is_told_and_overwrites_nothing(committed_db_url, vi):
    """Two editors open version 1 in their own sessions; the first saves while the second's save waits on the
    row lock; the second is then told, and the first one's version stands alone."""
    engine = make_engine(committed_db_url)
    factory = make_session_factory(engine)
    try:
        with factory() as setup:
            hospital = make_hospital(setup)
            record = records.open_record(setup, hospital.actor(hospital.doctor), hospital.encounter)
            doc_id = records.add_document(setup, hospital.actor(hospital.doctor), record, "36/BV2", TREATMENT,
                                          on=TODAY).id
            setup.commit()
            doctor, nurse = hospital.actor(hospital.doctor), hospital.actor(hospital.nurse)
        first, second = factory(), factory()
        loaded = [s.get(Document, doc_id) for s in (first, second)]
        assert [d.current_version for d in loaded] == [1, 1]  # both editors start from version 1
        records.edit(first, doctor, loaded[0], TREATMENT | {"orders": "Lần sửa thứ nhất"}, expected_version=1,
                     on=TODAY)
        second_pid = second.execute(text("SELECT pg_backend_pid()")).scalar()
        outcome = {}

        def save_second():
            try:
                records.edit(second, nurse, loaded[1], TREATMENT | {"orders": "Lần sửa thứ hai"},
                             expected_version=1, on=TODAY)
            except RecordError as exc:
                outcome["error"] = exc
            second.rollback()

        worker = threading.Thread(target=save_second)
        worker.start()
        with engine.connect() as watch:  # the second save is waiting on the first one's row lock
            while worker.is_alive() and not watch.execute(text(
                    "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :pid"),
                    {"pid": second_pid}).scalar():
                watch.rollback()
                time.sleep(0.02)
        first.commit()
        worker.join(30)
        assert not worker.is_alive()
        error = outcome["error"]
        assert (error.code, str(error)) == ("conflict", "Người khác vừa lưu tài liệu này (hiện là phiên bản 2, bạn "
                                                        "sửa từ phiên bản 1). Hãy tải lại; chưa có gì được lưu.")
        with factory() as check:
            versions = check.scalars(select(Version).where(Version.document_id == doc_id)
                                     .order_by(Version.number)).all()
            assert [(v.number, v.content["orders"]) for v in versions] == [(1, TREATMENT["orders"]),
                                                                          (2, "Lần sửa thứ nhất")]
            assert check.get(Document, doc_id).current_version == 2
        first.close()
        second.close()
    finally:
        close_all_sessions()
        engine.dispose()


def test_cancel_and_restore_round_trip_with_reasons(db_session, hospital, record, vi):
    actor = hospital.actor(hospital.doctor)
    doc = records.add_document(db_session, actor, record, "36/BV2", TREATMENT, on=TODAY)
    with pytest.raises(RecordError) as err:
        records.cancel(db_session, actor, doc, "  ")
    assert str(err.value) == "Nhập lý do hủy tài liệu." and doc.status == "active"
    records.cancel(db_session, actor, doc, "Ghi nhầm người bệnh")
    assert (doc.status, doc.cancel_reason) == ("cancelled", "Ghi nhầm người bệnh")
    with pytest.raises(RecordError) as err:
        records.edit(db_session, actor, doc, TREATMENT, expected_version=1, on=TODAY)
    assert str(err.value) == "Tài liệu này đã bị hủy: hãy khôi phục trước khi sửa."
    records.restore(db_session, actor, doc, "Hủy nhầm")
    assert (doc.status, doc.restore_reason, doc.current_version) == ("active", "Hủy nhầm", 1)
    assert [e["action"] for e in db_session.info["vnhis.audit.pending"] if e["target_type"] == "ehr_documents"] == [
        "ehr.document.create", "ehr.document.cancel", "ehr.document.restore"]


def test_restore_is_its_own_right(db_session, hospital, record, vi):
    doc = records.add_document(db_session, hospital.actor(hospital.nurse), record, "37/BV2",
                               {"care_level": "2", "observations": "Tỉnh", "interventions": "Đo DHST"}, on=TODAY)
    records.cancel(db_session, hospital.actor(hospital.nurse), doc, "Trùng phiếu")
    with pytest.raises(AccessDenied) as err:
        records.restore(db_session, hospital.actor(hospital.nurse), doc, "Khôi phục")
    assert str(err.value) == "Vai trò của bạn không được phép thực hiện thao tác này trên hồ sơ bệnh án."
    assert doc.status == "cancelled"


def test_the_database_refuses_deletes_and_rewrites_of_versions(db_session, hospital, record, vi):
    doc = records.add_document(db_session, hospital.actor(hospital.doctor), record, "36/BV2", TREATMENT, on=TODAY)
    db_session.commit()
    for statement in ("DELETE FROM ehr_versions WHERE document_id = :doc", "DELETE FROM ehr_documents WHERE id = :doc",
                      "DELETE FROM ehr_records WHERE id = :rec",
                      "UPDATE ehr_versions SET content = '{}'::jsonb WHERE document_id = :doc",
                      "UPDATE ehr_versions SET canonical = 'x'::bytea WHERE document_id = :doc"):
        with pytest.raises(DBAPIError) as err, db_session.begin_nested():
            db_session.execute(text(statement), {"doc": doc.id, "rec": record.id})
        assert "ehr:" in str(err.value.orig)
    assert _counts(db_session) == (1, 1)
    assert records.current(db_session, doc).content["orders"] == TREATMENT["orders"]


def test_only_the_care_team_starts_a_record_of_a_fitting_form_and_no_act_is_in_the_future(db_session, hospital, vi):
    with pytest.raises(AccessDenied):
        records.open_record(db_session, hospital.actor(hospital.surgeon), hospital.encounter)
    db_session.rollback()
    with pytest.raises(RecordError) as err:
        records.open_record(db_session, hospital.actor(hospital.doctor), hospital.encounter, "01/BV1")
    assert str(err.value) == "«Bệnh án Nội khoa» không dùng cho loại lượt khám này."
    assert db_session.scalar(select(func.count()).select_from(MedicalRecord)) == 0
    record = records.open_record(db_session, hospital.actor(hospital.doctor), hospital.encounter)
    with pytest.raises(RecordError) as err:
        records.add_document(db_session, hospital.actor(hospital.doctor), record, "36/BV2", TREATMENT,
                             clinical_time=utcnow() + timedelta(hours=2), on=TODAY)
    assert err.value.field_errors == {"clinical_time": "Thời gian thực hiện không được ở tương lai."}
    assert _counts(db_session) == (0, 0)


def _behind_the_trigger(session, statement: str, **params) -> None:
    """What only a database superuser can do: a write with the triggers switched off."""
    session.execute(text("SET LOCAL session_replication_role = replica"))
    session.execute(text(statement), params)
    session.execute(text("SET LOCAL session_replication_role = origin"))
    session.expire_all()


def test_content_rewritten_behind_the_trigger_is_reported_and_never_shown(db_session, hospital, record, vi):
    from ehr import exchange, hosobenhan, printing

    doc = records.add_document(db_session, hospital.actor(hospital.doctor), record, "36/BV2", TREATMENT, on=TODAY)
    assert exchange.check_all(db_session).failures == []
    _behind_the_trigger(db_session, "UPDATE ehr_versions SET content = jsonb_set(content, '{orders}', "
                                    "'\"Morphin 10 mg\"') WHERE document_id = :doc", doc=doc.id)
    version = records.current(db_session, doc)
    assert exchange.check_all(db_session).failures == [
        f"version {version.id} (document {doc.id} v1): stored content differs from its signed bytes"]
    message = ("Phiên bản 1 của tài liệu không khớp với dữ liệu đã ký: nó đã bị sửa ngoài ứng dụng. "
               "Hãy báo cho quản trị viên.")
    for show in (lambda: printing.document_view(db_session, doc), lambda: hosobenhan.build(db_session, record)):
        with pytest.raises(RecordError) as err:
            show()
        assert (err.value.code, str(err.value)) == ("tampered", message)

"""Closing gives the TT 33/2025 retention class and end date; destruction is refused before it or under a
legal hold, and afterwards erases content only (metadata, hashes and the audit stay)."""

from datetime import date

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from ehr import records, retention
from ehr.models import Version
from ehr.records import RecordError
from his.models.encounters import Diagnosis
from tests.ehr.conftest import TREATMENT

TODAY = date(2026, 12, 2)
MAIN = {"outpatient_number": "NT-001", "period_from": "2026-12-01", "admission_reason": "Sốt", "illness_course": "x",
        "general": "Tỉnh", "principal_icd": "J18.9", "treatment_plan": "Kháng sinh"}


@pytest.fixture
def vi(app):
    with app.test_request_context():
        yield


@pytest.fixture
def record(db_session, hospital):
    made = records.open_record(db_session, hospital.actor(hospital.doctor), hospital.encounter)
    records.add_document(db_session, hospital.actor(hospital.doctor), made, "15/BV1", MAIN, on=TODAY)
    db_session.commit()
    return made


def test_an_ordinary_record_is_kept_ten_years_to_the_end_of_the_year(db_session, hospital, record, vi):
    retention.close(db_session, hospital.actor(hospital.doctor), record, on=TODAY)
    assert (record.status, record.retention_class, record.retention_until) == ("closed", "standard",
                                                                              date(2036, 12, 31))


def test_a_mental_health_diagnosis_gives_twenty_years_and_a_death_thirty(db_session, hospital, record, vi):
    db_session.add(Diagnosis(encounter_id=hospital.encounter.id, position="secondary", icd10_code="F32.0"))
    db_session.flush()
    assert retention.classify(db_session, record) == "special"
    hospital.encounter.kind = "inpatient"
    records.add_document(db_session, hospital.actor(hospital.doctor), record, "GRV",
                         {"admitted_on": "2026-11-20", "discharged_on": "2026-12-02", "principal_icd": "J18.9",
                          "result": "died", "treatment": "Hồi sức"}, on=TODAY)
    retention.close(db_session, hospital.actor(hospital.doctor), record, on=TODAY)
    assert (record.retention_class, record.retention_until) == ("death", date(2056, 12, 31))


def test_closing_needs_the_main_document(db_session, hospital, vi):
    bare = records.open_record(db_session, hospital.actor(hospital.doctor), hospital.encounter)
    with pytest.raises(RecordError) as err:
        retention.close(db_session, hospital.actor(hospital.doctor), bare, on=TODAY)
    assert str(err.value) == "Chưa nhập tài liệu chính của hồ sơ (mẫu bệnh án)."
    assert bare.status == "active" and bare.retention_class is None


def test_destruction_is_refused_before_the_date_and_under_a_legal_hold(db_session, hospital, record, vi):
    admin = hospital.actor(hospital.doctor)
    retention.close(db_session, admin, record, on=TODAY)
    with pytest.raises(RecordError) as err:
        retention.destroy(db_session, admin, record, today=TODAY, reason="QĐ 12/QĐ-BV")
    assert str(err.value) == "Chỉ tiêu hủy được hồ sơ đã lưu trữ."
    retention.archive(db_session, admin, record)
    with pytest.raises(RecordError) as err:
        retention.destroy(db_session, admin, record, today=date(2036, 12, 31), reason="QĐ 12/QĐ-BV")
    assert str(err.value) == "Hồ sơ phải được lưu đến 31/12/2036; không được tiêu hủy trước thời hạn."
    retention.set_legal_hold(db_session, admin, record, True, "Khiếu nại")
    with pytest.raises(RecordError) as err:
        retention.destroy(db_session, admin, record, today=date(2037, 1, 1), reason="QĐ 12/QĐ-BV")
    assert str(err.value) == "Hồ sơ đang bị phong tỏa theo yêu cầu pháp lý, không được tiêu hủy."
    retention.mark_permanent(db_session, admin, record, "Hồ sơ sự cố y khoa")
    retention.set_legal_hold(db_session, admin, record, False, "Đã giải quyết")
    with pytest.raises(RecordError):
        retention.destroy(db_session, admin, record, today=date(2200, 1, 1), reason="QĐ 12/QĐ-BV")
    assert record.status == "archived" and all(v.purged_at is None for d in record.documents for v in d.versions)


def test_destruction_after_the_date_erases_content_and_keeps_the_metadata(db_session, hospital, record, vi):
    admin = hospital.actor(hospital.doctor)
    doc = records.add_document(db_session, admin, record, "36/BV2", TREATMENT, on=TODAY)
    retention.close(db_session, admin, record, on=TODAY)
    retention.archive(db_session, admin, record)
    hashes = sorted(v.content_hash for d in record.documents for v in d.versions)
    assert retention.destroy(db_session, admin, record, today=date(2037, 1, 1), reason="QĐ 12/QĐ-BV") == 2
    db_session.expire_all()
    versions = db_session.query(Version).filter(Version.document_id.in_([d.id for d in record.documents])).all()
    assert all(v.content == {} and v.canonical == b"" and v.purged_at for v in versions)
    assert sorted(v.content_hash for v in versions) == hashes and record.status == "destroyed"
    with pytest.raises(DBAPIError), db_session.begin_nested():  # the purge switch was only for that operation
        db_session.execute(text("UPDATE ehr_versions SET amend_reason = 'x' WHERE document_id = :doc"), {"doc": doc.id})


def test_the_purge_switch_lets_through_the_purge_itself_and_nothing_else(db_session, hospital, record, vi):
    doc = records.add_document(db_session, hospital.actor(hospital.doctor), record, "36/BV2", TREATMENT, on=TODAY)
    db_session.commit()
    db_session.execute(text("SET LOCAL vnhis.ehr_purge = 'on'"))
    for statement in ("UPDATE ehr_versions SET content = '{\"orders\": \"x\"}'::jsonb, purged_at = now() "
                      "WHERE document_id = :doc",
                      "UPDATE ehr_versions SET canonical = 'x'::bytea, content = '{}'::jsonb, purged_at = now() "
                      "WHERE document_id = :doc",
                      "UPDATE ehr_versions SET content = '{}'::jsonb, canonical = ''::bytea, purged_at = now(), "
                      "author_name = 'x' WHERE document_id = :doc",
                      "UPDATE ehr_versions SET content = '{}'::jsonb, canonical = ''::bytea WHERE document_id = :doc"):
        with pytest.raises(DBAPIError) as err, db_session.begin_nested():
            db_session.execute(text(statement), {"doc": doc.id})
        assert "ehr: a version is immutable" in str(err.value.orig)
    db_session.execute(text("UPDATE ehr_versions SET content = '{}'::jsonb, canonical = ''::bytea, purged_at = now() "
                            "WHERE document_id = :doc"), {"doc": doc.id})
    with pytest.raises(DBAPIError), db_session.begin_nested():  # purged once: the purge cannot be redone
        db_session.execute(text("UPDATE ehr_versions SET purged_at = now() WHERE document_id = :doc"), {"doc": doc.id})
    db_session.execute(text("SET LOCAL vnhis.ehr_purge = 'off'"))

"""Access by relationship: the care team reads and writes, others are refused and may break the glass
(with a reason: allowed, flagged, alerted), grants are read-only and expire, editing closes after the
window, overdue documents are listed per author; every kind of access leaves its audit event."""

from datetime import date, timedelta

import pytest

from core import events
from core.db import utcnow
from ehr import access, exchange, records, retention, signing
from ehr.access import AccessDenied
from ehr.models import BreakGlass
from ehr.overdue import overdue
from his.models.admission import DepartmentStay
from tests.ehr.conftest import TREATMENT

TODAY = date.today()
MAIN = {"outpatient_number": "NT-001", "period_from": TODAY.isoformat(), "admission_reason": "Sốt, ho",
        "illness_course": "Sốt 3 ngày", "general": "Tỉnh, tiếp xúc tốt", "principal_icd": "J18.9",
        "treatment_plan": "Kháng sinh uống"}


@pytest.fixture
def vi(app):
    with app.test_request_context():
        yield


@pytest.fixture
def record(db_session, hospital):
    made = records.open_record(db_session, hospital.actor(hospital.doctor), hospital.encounter)
    db_session.commit()
    return made


def _pending(session, action: str) -> list[dict]:
    return [e for e in session.info.get("vnhis.audit.pending", []) if e["action"] == action]


def test_the_care_team_reads_and_a_doctor_of_another_department_is_refused(db_session, hospital, record, vi):
    assert records.view(db_session, hospital.actor(hospital.nurse), record) == "care_team"
    with pytest.raises(AccessDenied) as err:
        records.view(db_session, hospital.actor(hospital.surgeon), record)
    assert err.value.break_glass is True
    assert str(err.value) == ("Bạn không thuộc nhóm điều trị của người bệnh này. Trong trường hợp cấp cứu, hãy mở "
                              "hồ sơ kèm lý do (truy cập khẩn cấp).")
    with pytest.raises(AccessDenied):
        records.add_document(db_session, hospital.actor(hospital.surgeon), record, "36/BV2", TREATMENT, on=TODAY)
    assert [e["detail"]["relation"] for e in _pending(db_session, "ehr.record.view")] == ["care_team"]


def test_a_transfer_to_another_department_brings_its_staff_into_the_care_team(db_session, hospital, record, vi):
    db_session.add(DepartmentStay(encounter_id=hospital.encounter.id, department_id=hospital.ngoai.id,
                                  started_at=utcnow()))
    db_session.flush()
    assert records.view(db_session, hospital.actor(hospital.surgeon), record) == "care_team"


def test_break_glass_needs_a_reason_then_is_allowed_flagged_and_alerted(db_session, hospital, record, vi):
    surgeon = hospital.actor(hospital.surgeon)
    with pytest.raises(AccessDenied) as err:
        access.open_break_glass(db_session, surgeon, hospital.surgeon, record, "gấp")
    assert str(err.value) == "Nhập lý do truy cập khẩn cấp (ít nhất 10 ký tự)."
    assert db_session.query(BreakGlass).count() == 0
    alerts = []
    events.subscribe("ehr.break_glass.opened", inline=True)(lambda _s, payload: alerts.append(payload))
    try:
        row = access.open_break_glass(db_session, surgeon, hospital.surgeon, record,
                                      "Người bệnh ngừng tuần hoàn tại khoa Ngoại")
    finally:
        events._SUBSCRIBERS["ehr.break_glass.opened"].clear()
    assert row.expires_at - row.opened_at == timedelta(hours=4)
    assert alerts[0]["user_name"] == "Phạm Văn Nam" and alerts[0]["record_id"] == record.id
    assert records.view(db_session, surgeon, record) == "break_glass"
    [opened] = _pending(db_session, "ehr.break_glass")
    [viewed] = _pending(db_session, "ehr.record.view")
    assert opened["detail"]["flag"] == viewed["detail"]["flag"] == "break_glass"
    doc = records.add_document(db_session, surgeon, record, "36/BV2", TREATMENT, on=TODAY)
    records.edit(db_session, surgeon, doc, TREATMENT | {"orders": "Adrenalin 1 mg TM"}, expected_version=1, on=TODAY)
    writes = _pending(db_session, "ehr.document.create") + _pending(db_session, "ehr.document.edit")
    assert [(e["detail"]["relation"], e["detail"]["flag"]) for e in writes] == [("break_glass", "break_glass")] * 2
    row.expires_at = utcnow() - timedelta(seconds=1)
    db_session.commit()  # a later request: having written under break-glass gives no lasting access
    with pytest.raises(AccessDenied) as err:
        records.view(db_session, surgeon, record)
    assert (err.value.code, err.value.break_glass) == ("not_care_team", True)


def test_a_grant_is_read_only_and_expires(db_session, hospital, record, vi):
    grant = access.grant(db_session, hospital.actor(hospital.doctor), record, hospital.surgeon,
                         purpose="Hội chẩn liên khoa", days=1)
    assert records.view(db_session, hospital.actor(hospital.surgeon), record) == "grant"
    with pytest.raises(AccessDenied) as err:
        records.add_document(db_session, hospital.actor(hospital.surgeon), record, "36/BV2", TREATMENT, on=TODAY)
    assert str(err.value) == "Quyền truy cập hồ sơ này của bạn chỉ để xem."
    with pytest.raises(AccessDenied) as err:
        exchange.export(db_session, hospital.actor(hospital.surgeon), record, "json")
    assert str(err.value) == "Quyền truy cập hồ sơ này của bạn không bao gồm sao chép."
    grant.valid_to = utcnow() - timedelta(seconds=1)
    db_session.commit()  # a later request
    with pytest.raises(AccessDenied):
        records.view(db_session, hospital.actor(hospital.surgeon), record)


def test_editing_closes_after_the_window_and_archived_records_stay_readable(db_session, hospital, record, vi):
    actor = hospital.actor(hospital.doctor)
    doc = records.add_document(db_session, actor, record, "36/BV2", TREATMENT, on=TODAY)
    records.add_document(db_session, actor, record, "15/BV1", MAIN, on=TODAY)
    retention.close(db_session, actor, record, on=TODAY)
    records.edit(db_session, actor, doc, TREATMENT | {"orders": "Bổ sung"}, expected_version=1, on=TODAY)
    record.closed_at = utcnow() - timedelta(hours=25)
    with pytest.raises(AccessDenied) as err:
        records.edit(db_session, actor, doc, TREATMENT | {"orders": "Bổ sung lần 2"}, expected_version=2, on=TODAY)
    assert str(err.value) == "Hồ sơ đã khóa sửa sau 24 giờ kể từ khi kết thúc hồ sơ."
    assert doc.current_version == 2
    retention.archive(db_session, actor, record)
    assert records.view(db_session, actor, record) == "care_team"
    with pytest.raises(AccessDenied) as err:
        records.cancel(db_session, actor, doc, "Hủy")
    assert str(err.value) == "Hồ sơ này đã lưu trữ: chỉ được xem, không được sửa nữa."


def test_every_kind_of_access_leaves_its_audit_event(db_session, hospital, record, keys, ca, vi):
    actor = hospital.actor(hospital.doctor)
    doc = records.add_document(db_session, actor, record, "36/BV2", TREATMENT, on=TODAY)
    records.view(db_session, actor, record, document=doc)
    records.edit(db_session, actor, doc, TREATMENT | {"orders": "Sửa"}, expected_version=1, on=TODAY)
    signing.sign(db_session, actor, records.current(db_session, doc), keys)
    records.cancel(db_session, actor, doc, "Nhầm")
    records.restore(db_session, actor, doc, "Khôi phục")
    exchange.export(db_session, actor, record, "pdf")
    exchange.export(db_session, actor, record, "fhir")
    mine = [e for e in db_session.info["vnhis.audit.pending"] if e["actor_name"] == "bs.hung"]
    assert {e["detail"]["relation"] for e in mine if e["action"] in ("ehr.document.create", "ehr.document.edit",
                                                                     "ehr.document.sign")} == {"care_team"}
    assert not any("flag" in e["detail"] for e in mine)
    actions = [e["action"] for e in mine]
    assert actions == ["ehr.document.create", "ehr.document.view", "ehr.document.edit",
                       "ehr.document.sign", "ehr.document.cancel", "ehr.document.restore", "ehr.record.print",
                       "ehr.record.export"]
    assert all(e["detail"]["patient_id"] == hospital.patient.id for e in db_session.info["vnhis.audit.pending"]
               if e["actor_name"] == "bs.hung")


def test_overdue_documents_are_listed_per_author_with_the_12_and_24_hour_rules(db_session, hospital, record, keys,
                                                                               ca):
    actor = hospital.actor(hospital.doctor)
    now = utcnow()
    hospital.encounter.started_at = now - timedelta(hours=14)
    old = records.create_document(db_session, actor, record, "36/BV2", {"progress": "a", "orders": "b"},
                                  clinical_time=now - timedelta(hours=13))
    recent = records.create_document(db_session, actor, record, "36/BV2", {"progress": "a", "orders": "b"},
                                     clinical_time=now - timedelta(hours=2))
    assert overdue(db_session, now=now) == {}  # a 14-hour encounter: 24 hours to complete
    late = overdue(db_session, now=now + timedelta(hours=12))
    assert [item.document.id for item in late["Trần Văn Hùng"]] == [old.id]
    signing.sign(db_session, actor, records.current(db_session, old), keys)
    assert recent.id not in [i.document.id for i in overdue(db_session, now=now + timedelta(hours=12)).get(
        "Trần Văn Hùng", [])]
    assert overdue(db_session, now=now + timedelta(hours=12)) == {}
    hospital.encounter.started_at = now - timedelta(hours=3)
    hospital.encounter.ended_at = now - timedelta(hours=1)  # a short visit: 12 hours
    assert [i.document.id for i in overdue(db_session, now=now + timedelta(hours=11))["Trần Văn Hùng"]] == [recent.id]

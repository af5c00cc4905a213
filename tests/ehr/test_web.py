"""The record screens over HTTP: the encounter panel, form entry with its errors, sign, edit, the
emergency-access prompt, access history, exports, overdue list and review; all behind login and rights."""

import re

import pytest
from sqlalchemy import func, select

from core.models import AuditEvent
from ehr.models import BreakGlass, Document, Signature
from tests.conftest import csrf_token, login
from tests.ehr.conftest import TREATMENT


@pytest.fixture
def doctor_client(client, hospital, ca):
    login(client, "bs.hung")
    return client


def _new_sheet(client, record_id: int, data: dict):
    token = csrf_token(client, f"/ehr/records/{record_id}/new?form=36/BV2")
    return client.post(f"/ehr/records/{record_id}/new?form=36/BV2", data=data | {"csrf_token": token})


def _open_record(client, hospital) -> int:
    token = csrf_token(client, f"/ehr/encounters/{hospital.encounter.id}")
    answer = client.post(f"/ehr/encounters/{hospital.encounter.id}", data={"form_code": "15/BV1",
                                                                          "csrf_token": token})
    return int(answer.headers["Location"].rsplit("/", 1)[1])


def test_a_doctor_fills_signs_and_amends_a_treatment_sheet(doctor_client, db_session, hospital):
    page = doctor_client.get(f"/encounters/{hospital.encounter.id}").get_data(as_text=True)
    assert 'id="ehr-panel"' in page and "Lập hồ sơ bệnh án" in page
    record_id = _open_record(doctor_client, hospital)
    bad = _new_sheet(doctor_client, record_id, TREATMENT | {"progress": "", "pulse": "abc"})
    assert bad.status_code == 422
    html = bad.get_data(as_text=True)
    assert "Chưa nhập «Diễn biến bệnh»." in html and "«Mạch (lần/phút)» phải là số nguyên." in html
    assert db_session.scalar(select(func.count()).select_from(Document)) == 0
    garbled = _new_sheet(doctor_client, record_id, TREATMENT | {"clinical_time": "hôm qua"})
    assert garbled.status_code == 422
    assert "Thời gian thực hiện không phải ngày giờ hợp lệ." in garbled.get_data(as_text=True)
    saved = _new_sheet(doctor_client, record_id, TREATMENT)
    doc_url = saved.headers["Location"]
    document_id = int(doc_url.rsplit("/", 1)[1])
    page = doctor_client.get(doc_url).get_data(as_text=True)
    assert "Đã lưu phiên bản 1 (chưa ký)." in page and 'id="version-status">Chưa ký' in page
    signed = doctor_client.post(f"{doc_url}/sign", data={"version": "1", "csrf_token": csrf_token(doctor_client,
                                                                                                    doc_url)})
    page = doctor_client.get(signed.headers["Location"]).get_data(as_text=True)
    assert "Đã ký phiên bản 1." in page and 'data-status="valid"' in page and "Chữ ký hợp lệ" in page
    views = select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "ehr.document.view",
                                                               AuditEvent.target_id == str(document_id))
    before = db_session.scalar(views)
    form = doctor_client.get(f"{doc_url}/edit").get_data(as_text=True)
    assert db_session.scalar(views) == before + 1  # the edit form shows the content: audited as a view
    assert "Phiên bản hiện tại đã ký" in form and "Ceftriaxon 1 g × 2 lọ, tiêm TM</textarea>" in form
    assert re.search(r'name="expected_version" value="1"', form)
    token = csrf_token(doctor_client, f"{doc_url}/edit")
    refused = doctor_client.post(f"{doc_url}/edit", data=TREATMENT | {"orders": "Đổi", "expected_version": "1",
                                                                     "csrf_token": token})
    assert refused.status_code == 422 and "Phiên bản 1 đã ký, không thể thay đổi" in refused.get_data(as_text=True)
    amended = doctor_client.post(f"{doc_url}/edit", data=TREATMENT | {"orders": "Đổi", "expected_version": "1",
                                                                     "amend_reason": "Kháng sinh đồ",
                                                                     "csrf_token": token})
    page = doctor_client.get(amended.headers["Location"]).get_data(as_text=True)
    assert 'id="version-number">2' in page and 'id="version-status">Chưa ký' in page
    assert db_session.get(Document, document_id).signed_version == 1
    assert db_session.scalar(select(func.count()).select_from(Signature)) == 1
    patient_page = doctor_client.get(f"/patients/{hospital.patient.id}").get_data(as_text=True)
    assert 'id="ehr-patient-panel"' in patient_page and f'href="/ehr/records/{record_id}"' in patient_page


def test_an_outsider_is_refused_then_breaks_the_glass_with_a_reason(client, db_session, hospital, ca):
    login(client, "bs.hung")
    record_id = _open_record(client, hospital)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    login(client, "bs.nam")
    denied = client.get(f"/ehr/records/{record_id}")
    assert denied.status_code == 403 and 'id="break-glass-link"' in denied.get_data(as_text=True)
    url = f"/ehr/records/{record_id}/break-glass"
    short = client.post(url, data={"reason": "gấp", "csrf_token": csrf_token(client, url)})
    assert short.status_code == 422 and "ít nhất 10 ký tự" in short.get_data(as_text=True)
    assert db_session.scalar(select(func.count()).select_from(BreakGlass)) == 0
    client.post(url, data={"reason": "Ngừng tuần hoàn, cần tiền sử dị ứng", "csrf_token": csrf_token(client, url)})
    page = client.get(f"/ehr/records/{record_id}").get_data(as_text=True)
    assert 'id="break-glass-banner"' in page
    history = client.get(f"/ehr/records/{record_id}/history").get_data(as_text=True)
    assert "ehr.break_glass" in history and "Ngừng tuần hoàn, cần tiền sử dị ứng" in history
    denials = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "ehr.access_denied")).all()
    assert [e.detail["reason"] for e in denials] == ["not_care_team"]


def test_exports_and_prints_need_their_right_and_are_audited(client, db_session, hospital, ca, make_user):
    login(client, "bs.hung")
    record_id = _open_record(client, hospital)
    _new_sheet(client, record_id, TREATMENT)
    for fmt, kind in (("fhir", "application/fhir+json"), ("xml", "application/xml"), ("json", "application/json"),
                      ("pdf", "application/pdf")):
        answer = client.get(f"/ehr/records/{record_id}/export/{fmt}")
        assert answer.status_code == 200 and answer.mimetype == kind
    actions = db_session.scalars(select(AuditEvent.action).where(AuditEvent.target_type == "ehr_records",
                                                                 AuditEvent.action.in_(["ehr.record.export",
                                                                                        "ehr.record.print"]))).all()
    assert sorted(actions) == ["ehr.record.export"] * 3 + ["ehr.record.print"]
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    login(client, "dd.hoa")  # a nurse reads but may not copy
    assert client.get(f"/ehr/records/{record_id}").status_code == 200
    assert client.get(f"/ehr/records/{record_id}/export/fhir").status_code == 403


def test_overdue_and_review_screens(client, db_session, hospital, make_user):
    make_user("quantri", "admin")
    login(client, "bs.hung")
    assert "Không có tài liệu quá hạn." in client.get("/ehr/overdue").get_data(as_text=True)
    assert client.get("/ehr/review").status_code == 403
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    login(client, "quantri")
    assert "Không có truy cập khẩn cấp." in client.get("/ehr/review").get_data(as_text=True)
    assert client.get(f"/ehr/encounters/{hospital.encounter.id}").status_code == 403  # admins do not read records


def test_a_clinician_sees_only_their_own_overdue_documents_and_the_reviewer_all(client, db_session, hospital,
                                                                                make_user):
    from datetime import timedelta

    from core.audit import Actor
    from core.db import utcnow
    from ehr import records

    doctor, nurse = (Actor(id=u.id, name=u.username) for u in (hospital.doctor, hospital.nurse))
    record = records.open_record(db_session, doctor, hospital.encounter)
    when = utcnow() - timedelta(hours=30)
    records.create_document(db_session, doctor, record, "36/BV2", {"progress": "a", "orders": "b"},
                            clinical_time=when)
    records.create_document(db_session, nurse, record, "37/BV2", {"care_level": "2", "observations": "x"},
                            clinical_time=when)
    db_session.commit()
    make_user("truongkhoa", "doctor", "admin")
    seen = {}
    for username in ("dd.hoa", "truongkhoa"):
        login(client, username)
        page = client.get("/ehr/overdue").get_data(as_text=True)
        seen[username] = re.findall(r'data-author="([^"]+)"', page)
        client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    assert seen == {"dd.hoa": ["Lê Thị Hoa"], "truongkhoa": ["Lê Thị Hoa", "Trần Văn Hùng"]}
    details = db_session.scalars(select(AuditEvent.detail).where(AuditEvent.action == "ehr.overdue.view")
                                 .order_by(AuditEvent.id)).all()
    assert [(d["author_id"], d["documents"], d["patient_ids"]) for d in details] == [
        (hospital.nurse.id, 1, [hospital.patient.id]), (None, 2, [hospital.patient.id])]


def test_a_version_rewritten_behind_the_trigger_is_shown_as_an_integrity_error(doctor_client, db_session, hospital):
    from sqlalchemy import text

    record_id = _open_record(doctor_client, hospital)
    doc_url = _new_sheet(doctor_client, record_id, TREATMENT).headers["Location"]
    db_session.execute(text("SET LOCAL session_replication_role = replica"))
    db_session.execute(text("UPDATE ehr_versions SET content = jsonb_set(content, '{orders}', '\"Morphin 10 mg\"')"))
    db_session.execute(text("SET LOCAL session_replication_role = origin"))
    db_session.commit()
    for url in (doc_url, f"{doc_url}/edit"):
        answer = doctor_client.get(url)
        html = answer.get_data(as_text=True)
        assert answer.status_code == 409 and "Morphin" not in html and "Ceftriaxon" not in html
        assert ("Phiên bản 1 của tài liệu không khớp với dữ liệu đã ký: nó đã bị sửa ngoài ứng dụng. "
                "Hãy báo cho quản trị viên.") in html
    assert db_session.scalar(select(func.count()).select_from(AuditEvent)
                             .where(AuditEvent.action == "ehr.integrity_error")) == 2

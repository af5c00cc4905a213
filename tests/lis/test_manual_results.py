"""Results typed in for a received specimen, on PostgreSQL: the same flags, ranges, versions, delta
check, critical values at release and audit as an analyser's; values checked against the test's
value type with exact Vietnamese messages, and a refused entry stores nothing."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from core.audit import Actor
from core.models import AuditEvent
from his import orders
from his.models.orders import Order
from lis import manual, specimens, validation
from lis.models import CriticalAlert, LabTest, Result, Specimen
from tests.conftest import csrf_token, login
from tests.lis.conftest import TODAY

pytestmark = pytest.mark.tubes_at_ward  # these tests take the tubes through reception themselves

TECH = Actor(id=None, name="ktv.nhap", ip="10.0.0.8")


def _tech(app, make_user, name="ktv.nhap"):
    make_user(name, "lab_technician")
    client = app.test_client()
    login(client, name)
    return client


def _received(db_session, barcode) -> Specimen:
    specimen = specimens.receive(db_session, TECH, barcode)
    db_session.commit()
    return specimen


def _ids(specimen: Specimen) -> dict[str, int]:
    return {r.test.code: r.test_id for r in specimen.requests}


def _post(client, specimen: Specimen, values: dict[str, str]):
    path = f"/lis/specimens/{specimen.id}"
    ids = _ids(specimen)
    return client.post(f"{path}/results", data={"csrf_token": csrf_token(client, path),
                                                **{f"value-{ids[code]}": v for code, v in values.items()}})


def _results(db_session, specimen) -> list[tuple]:
    db_session.expire_all()
    return [(r.test.code, r.version, r.value, r.numeric_value, r.flag, r.critical, r.superseded_at is None)
            for r in db_session.scalars(select(Result).where(Result.specimen_id == specimen.id)
                                        .order_by(Result.test_id, Result.version))]


def test_typed_results_are_recorded_like_an_analysers(app, db_session, lab, make_user):
    tech = _tech(app, make_user)
    serum = _received(db_session, lab["serum"])
    page = tech.get(f"/lis/specimens/{serum.id}").get_data(as_text=True)
    assert "Nhập kết quả thủ công" in page and f'name="value-{_ids(serum)["GLU"]}"' in page
    done = _post(tech, serum, {"GLU": "7,2", "NA": "139", "K": "", "CL": " 101 "})
    assert done.status_code == 302
    assert "Đã lưu 3 kết quả, chờ duyệt kỹ thuật." in tech.get(done.location).get_data(as_text=True)
    rows = {r.test.code: r for r in db_session.scalars(select(Result).where(Result.specimen_id == serum.id))}
    glu = rows["GLU"]
    assert (glu.value, glu.numeric_value, glu.flag, glu.reference_range, glu.unit) == (
        "7.2", Decimal("7.2"), "H", "3.9-6.4", "mmol/L")
    assert (glu.entered_by, glu.analyser_id, glu.message_id, glu.stage, glu.version) == (
        "ktv.nhap", None, None, "preliminary", 1)
    assert (rows["NA"].flag, rows["CL"].value) == (None, "101") and "K" not in rows
    db_session.expire_all()
    assert db_session.get(Specimen, serum.id).status == "resulted"
    assert db_session.get(Order, lab["order_id"]).status == "in_progress"
    entered = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "lis.result.enter")).one()
    assert entered.detail["values"] == {"GLU": "7.2", "NA": "139", "CL": "101"}
    assert entered.detail["previous"] == {"GLU": None, "NA": None, "CL": None}
    recorded = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "lis.result.record")).one()
    assert recorded.detail["tests"] == ["GLU", "NA", "CL"] and recorded.actor_name == "ktv.nhap"

    # the same values again: nothing new; a different one: a new version, the old one kept
    again = _post(tech, serum, {"GLU": "7.2", "NA": "139"})
    assert again.status_code == 422 and "Chưa nhập giá trị mới nào." in again.get_data(as_text=True)
    _post(tech, serum, {"GLU": "6.0", "NA": "139"})
    assert [r for r in _results(db_session, serum) if r[0] == "GLU"] == [
        ("GLU", 1, "7.2", Decimal("7.2"), "H", False, False), ("GLU", 2, "6.0", Decimal(6), None, False, True)]


@pytest.mark.parametrize(("code", "value", "message"), [
    ("GLU", "cao", "«cao» không phải là số: kết quả Glucose phải là một số (ví dụ 5.6)."),
    ("GLU", "5.6.1", "«5.6.1» không phải là số: kết quả Glucose phải là một số (ví dụ 5.6)."),
    ("GLU", "1e3", "«1e3» không phải là số: kết quả Glucose phải là một số (ví dụ 5.6)."),
    ("K", "4.1234567", "Tối đa 12 chữ số phần nguyên và 6 chữ số phần thập phân."),
])
def test_a_value_that_is_not_a_number_is_refused_and_nothing_is_stored(app, db_session, lab, make_user, code,
                                                                       value, message):
    tech = _tech(app, make_user)
    serum = _received(db_session, lab["serum"])
    refused = _post(tech, serum, {"NA": "139", code: value})
    html = refused.get_data(as_text=True).replace("&lt;", "<").replace("&gt;", ">")
    assert refused.status_code == 422
    assert f'<div class="field-error" data-field="value-{_ids(serum)[code]}">{message}</div>' in html
    assert 'data-code="invalid">Có giá trị không hợp lệ: chưa lưu kết quả nào.' in html
    assert f'value="{value}"' in html  # what was typed stays in the form
    assert _results(db_session, serum) == []
    assert db_session.get(Specimen, serum.id).status == "received"
    assert db_session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action.in_(("lis.result.enter", "lis.result.record")))) == 0


def test_value_types_other_than_numbers(db_session, lab):
    hbsag = db_session.scalar(select(LabTest).where(LabTest.code == "HBSAG"))
    assert manual.read_value(hbsag, "  Âm   tính ") == "Âm tính"
    structured = LabTest(code="T", name="Hiệu giá", value_type="SN")
    assert [manual.read_value(structured, v) for v in ("<0.5", ">= 10", "1:128", "2-5")] == [
        "<0.5", ">= 10", "1:128", "2-5"]
    with pytest.raises(ValueError, match="structured numeric"):
        manual.read_value(structured, "dương tính")


def test_a_critical_value_typed_in_raises_the_alert_at_release(db_session, lab):
    serum = _received(db_session, lab["serum"])
    ids = _ids(serum)
    manual.enter(db_session, TECH, serum, {ids["K"]: "7.0", ids["NA"]: "140", ids["CL"]: "101", ids["GLU"]: "5.2"},
                 today=TODAY)
    k = db_session.scalar(select(Result).where(Result.specimen_id == serum.id, Result.test_id == ids["K"]))
    assert (k.flag, k.critical, k.reference_range) == ("HH", True, "3.5-5.0")
    validation.validate_technical(db_session, lab["doctor"], serum)
    validation.release(db_session, lab["doctor"], serum)
    alert = db_session.scalars(select(CriticalAlert)).one()
    assert alert.result_id == k.id and alert.doctor_user_id == lab["doctor_user_id"]


def test_the_delta_check_compares_with_the_last_released_result(db_session, lab):
    serum = _received(db_session, lab["serum"])
    ids = _ids(serum)
    manual.enter(db_session, TECH, serum, {ids["GLU"]: "5.0", ids["NA"]: "140", ids["K"]: "4.1", ids["CL"]: "101"},
                 today=TODAY)
    validation.validate_technical(db_session, lab["doctor"], serum)
    validation.release(db_session, lab["doctor"], serum)
    first = db_session.get(Order, lab["order_id"])
    orders.place_order(db_session, lab["doctor"], first.encounter, "lab", [{"code": "XN.GLU"}], on=date(2026, 12, 2))
    tube = _received(db_session, specimens.of_encounter(db_session, lab["encounter_id"])[-1].barcode)
    manual.enter(db_session, TECH, tube, {_ids(tube)["GLU"]: "9.0"}, today=TODAY)
    new = db_session.scalar(select(Result).where(Result.specimen_id == tube.id))
    assert (new.delta_flag, new.previous_value) == (True, "5.0")


def test_entry_is_refused_before_reception_and_for_a_rejected_specimen(app, db_session, lab, make_user):
    tech = _tech(app, make_user)
    serum = specimens.by_barcode(db_session, lab["serum"])
    assert "Nhập kết quả thủ công" not in tech.get(f"/lis/specimens/{serum.id}").get_data(as_text=True)
    early = _post(tech, serum, {"GLU": "5.0"})
    assert early.status_code == 422 and "Mẫu chưa được nhận tại khoa Xét nghiệm." in early.get_data(as_text=True)
    specimens.reject(db_session, TECH, serum, "Tan máu")
    db_session.commit()
    rejected = _post(tech, serum, {"GLU": "5.0"})
    assert "Mẫu này đã bị từ chối: không nhập được kết quả." in rejected.get_data(as_text=True)
    assert _results(db_session, serum) == []


def test_a_deactivated_test_cannot_be_entered(db_session, lab):
    serum = _received(db_session, lab["serum"])
    glu = db_session.scalar(select(LabTest).where(LabTest.code == "GLU"))
    glu.active = False
    db_session.flush()
    with pytest.raises(manual.EntryError) as refused:
        manual.enter(db_session, TECH, serum, {glu.id: "5.0"}, today=TODAY)
    assert refused.value.code == "inactive_test"
    assert _results(db_session, serum) == []


def test_only_those_who_enter_results_see_and_use_the_form(app, db_session, lab, make_user):
    serum = _received(db_session, lab["serum"])
    doctor = app.test_client()
    login(doctor, "bs.lab")
    assert "Nhập kết quả thủ công" not in doctor.get(f"/lis/specimens/{serum.id}").get_data(as_text=True)
    assert _post(doctor, serum, {"GLU": "5.0"}).status_code == 403
    assert _results(db_session, serum) == []

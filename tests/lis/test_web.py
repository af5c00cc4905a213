"""The lab screens through the Flask test client: reception by scan, results from an analyser
message through technical and medical validation to the encounter page, labels and the report as
PDF, critical values acknowledged, the unmatched inbox, analyser profiles; refusals change nothing."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from core.models import AuditEvent, Job
from lis import inbox
from lis.models import Analyser, CriticalAlert, Message, Result, Specimen
from tests.conftest import csrf_token, login
from tests.lis.conftest import TODAY
from tests.lis.messages import cbc_oru, oul_r22


def _client(app, make_user, name, *roles):
    make_user(name, *roles)
    client = app.test_client()
    login(client, name)
    return client


def _post(client, path, data=None, page="/lis/"):
    return client.post(path, data={"csrf_token": csrf_token(client, page), **(data or {})})


def _specimen(db_session, barcode) -> Specimen:
    db_session.expire_all()
    return db_session.scalar(select(Specimen).where(Specimen.barcode == barcode))


@pytest.mark.tubes_at_ward
def test_reception_by_scan_then_validation_then_the_encounter_page(app, db_session, lab, make_user):
    tech = _client(app, make_user, "ktv.xn", "lab_technician")
    physician = _client(app, make_user, "bs.xn", "lab_physician")
    doctor = app.test_client()
    login(doctor, "bs.lab")
    page = tech.get("/lis/reception")
    assert page.status_code == 200 and "Tiếp nhận mẫu" in page.get_data(as_text=True)
    done = _post(tech, "/lis/reception", {"barcode": f"  {lab['blood']} "}, "/lis/reception")
    assert done.status_code == 200 and f"<code>{lab['blood']}</code>" in done.get_data(as_text=True)
    assert _specimen(db_session, lab["blood"]).status == "received"
    again = _post(tech, "/lis/reception", {"barcode": lab["blood"]}, "/lis/reception")
    assert again.status_code == 422 and 'data-code="already_received"' in again.get_data(as_text=True)
    unknown = _post(tech, "/lis/reception", {"barcode": "000"}, "/lis/reception")
    assert unknown.status_code == 422 and "Không có mẫu nào mang mã vạch «000»." in unknown.get_data(as_text=True)

    values = ["6.5", "4.1", "1.8", "0.4", "0.15", "0.05", "63.0", "27.7", "6.2", "2.3", "0.8", "4.85", "65",
              "42.1", "86.8", "29.3", "337", "13.1", "42.0", "245", "9.8", "12.1", "0.24", "25.3", "62"]
    inbox.process(db_session, cbc_oru(lab["blood"], "W1", values=values), today=TODAY)
    db_session.commit()
    specimen = _specimen(db_session, lab["blood"])
    html = tech.get(f"/lis/specimens/{specimen.id}").get_data(as_text=True)
    assert 'id="result-HGB" data-stage="preliminary" class="critical"' in html
    # the physician cannot release what the technician has not validated
    refused = _post(physician, f"/lis/specimens/{specimen.id}/release", page=f"/lis/specimens/{specimen.id}")
    assert refused.status_code == 302
    assert "Chưa duyệt kỹ thuật" in physician.get(refused.location).get_data(as_text=True)
    assert db_session.scalar(select(func.count()).select_from(CriticalAlert)) == 0
    # a technician may not release at all
    assert _post(tech, f"/lis/specimens/{specimen.id}/release", page=f"/lis/specimens/{specimen.id}").status_code \
        == 403
    assert _post(tech, f"/lis/specimens/{specimen.id}/validate-technical",
                 page=f"/lis/specimens/{specimen.id}").status_code == 302
    assert _post(physician, f"/lis/specimens/{specimen.id}/release",
                 page=f"/lis/specimens/{specimen.id}").status_code == 302
    db_session.expire_all()
    assert {r.stage for r in db_session.scalars(select(Result))} == {"released"}
    assert _specimen(db_session, lab["blood"]).status == "released"

    encounter = doctor.get(f"/encounters/{lab['encounter_id']}").get_data(as_text=True)
    assert f'data-barcode="{lab["blood"]}"' in encounter
    assert re.search(r'data-code="HGB"><td>Huyết sắc tố</td><td><strong>65</strong>', encounter)
    alert = db_session.scalars(select(CriticalAlert)).one()
    assert alert.doctor_user_id == lab["doctor_user_id"] and alert.result.test.code == "HGB"
    assert f'id="alert-{alert.id}"' in encounter
    acked = _post(doctor, f"/lis/alerts/{alert.id}/acknowledge", {"note": "Đã báo bệnh nhân",
                                                                  "next": f"/encounters/{lab['encounter_id']}"},
                  f"/encounters/{lab['encounter_id']}")
    assert acked.status_code == 302 and acked.location == f"/encounters/{lab['encounter_id']}"
    db_session.expire_all()
    assert (alert.acknowledged_by, alert.note) == ("bs.lab", "Đã báo bệnh nhân")
    assert db_session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "lis.critical.acknowledge")) == 1
    report_id = db_session.scalars(select(Result.report_id)).first()
    pdf = doctor.get(f"/lis/reports/{report_id}.pdf")
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF")


def test_a_correction_keeps_the_released_value_shown_until_it_is_released(app, db_session, lab, make_user):
    tech = _client(app, make_user, "ktv.xn", "lab_technician")
    physician = _client(app, make_user, "bs.xn", "lab_physician")
    doctor = app.test_client()
    login(doctor, "bs.lab")
    _post(tech, "/lis/reception", {"barcode": lab["blood"]}, "/lis/reception")
    inbox.process(db_session, cbc_oru(lab["blood"], "C1"), today=TODAY)
    db_session.commit()
    specimen = _specimen(db_session, lab["blood"])
    page = f"/lis/specimens/{specimen.id}"
    html = tech.get(page).get_data(as_text=True)
    assert 'id="validate-technical"' in html and 'id="release"' not in html  # each step only while it is due
    _post(tech, f"{page}/validate-technical", page=page)
    html = physician.get(page).get_data(as_text=True)
    assert 'id="validate-technical"' not in html and 'id="release"' in html
    _post(physician, f"{page}/release", page=page)
    assert 'id="release"' not in physician.get(page).get_data(as_text=True)

    # the analyser corrects HGB: until that version is released the doctor still sees the released value
    values = ["6.5", "4.1", "1.8", "0.4", "0.15", "0.05", "63.0", "27.7", "6.2", "2.3", "0.8", "4.85", "99",
              "42.1", "86.8", "29.3", "337", "13.1", "42.0", "245", "9.8", "12.1", "0.24", "25.3", "62"]
    inbox.process(db_session, cbc_oru(lab["blood"], "C2", values=values), today=TODAY)
    db_session.commit()
    encounter = doctor.get(f"/encounters/{lab['encounter_id']}").get_data(as_text=True)
    shown = re.search(r'data-code="HGB"><td>Huyết sắc tố</td><td><strong>([^<]+)</strong>([^<]*<span[^>]*>[^<]*)?',
                      encounter)
    assert shown and shown.group(1) != "99" and "đang chờ duyệt giá trị sửa" in (shown.group(2) or "")
    _post(tech, f"{page}/validate-technical", page=page)
    _post(physician, f"{page}/release", page=page)
    encounter = doctor.get(f"/encounters/{lab['encounter_id']}").get_data(as_text=True)
    assert re.search(r'data-code="HGB"><td>Huyết sắc tố</td><td><strong>99</strong></td>', encounter)


def test_labels_print_as_html_and_pdf(app, lab, make_user, db_session):
    tech = _client(app, make_user, "ktv.nhan", "lab_technician")
    specimen = _specimen(db_session, lab["blood"])
    html = tech.get(f"/lis/specimens/{specimen.id}/label").get_data(as_text=True)
    assert "size: 50mm 25mm" in html and "<svg" in html and f"<strong>{lab['blood']}</strong>" in html
    assert "Nguyễn Văn An" in html and "WBC, NEU#" in html
    pdf = tech.get(f"/lis/specimens/{specimen.id}/label?format=pdf")
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF")
    assert app.test_client().get(f"/lis/specimens/{specimen.id}/label").status_code == 302  # login first


@pytest.mark.tubes_at_ward
def test_rejection_needs_a_reason_and_reception_queues_the_order_download(app, lab, make_user, db_session):
    tech = _client(app, make_user, "ktv.tuchoi", "lab_technician")
    analyser = db_session.get(Analyser, lab["analysers"]["BC5380"])
    analyser.host, analyser.port = "127.0.0.1", 5100
    db_session.commit()
    serum = _specimen(db_session, lab["serum"])
    path = f"/lis/specimens/{serum.id}"
    _post(tech, f"{path}/reject", {"reason": "  "}, path)
    assert _specimen(db_session, lab["serum"]).status == "ordered"
    _post(tech, f"{path}/reject", {"reason": "Tan máu"}, path)
    assert (_specimen(db_session, lab["serum"]).status, _specimen(db_session, lab["serum"]).reject_reason) == (
        "rejected", "Tan máu")
    _post(tech, "/lis/reception", {"barcode": lab["blood"]}, "/lis/reception")
    jobs = db_session.scalars(select(Job).where(Job.name == "lis.order.send")).all()
    assert [j.payload for j in jobs] == [{"specimen_id": _specimen(db_session, lab["blood"]).id,
                                          "analyser_id": analyser.id}]


def test_the_unmatched_inbox_applies_a_message_to_the_chosen_specimen(app, lab, make_user, db_session):
    tech = _client(app, make_user, "ktv.hop", "lab_technician")
    inbox.process(db_session, oul_r22("TUBE-LOST", "U1", {"2951-2": "139"}), today=TODAY)
    db_session.commit()
    row = db_session.scalars(select(Message)).one()
    listing = tech.get("/lis/inbox").get_data(as_text=True)
    assert f'id="message-{row.id}"' in listing and "TUBE-LOST" in listing
    assert "Không rõ mẫu · Mã mẫu chưa được đăng ký" in listing  # the reason in Vietnamese, the HL7 text beside it
    path = f"/lis/inbox/{row.id}"
    wrong = _post(tech, f"{path}/reprocess", {"barcode": "NOPE"}, path)
    assert wrong.location == path
    db_session.expire_all()
    assert row.status == "unmatched" and db_session.scalar(select(func.count()).select_from(Result)) == 0
    ok = _post(tech, f"{path}/reprocess", {"barcode": lab["serum"]}, path)
    assert ok.location == "/lis/inbox"
    db_session.expire_all()
    assert (row.status, row.resolved_by) == ("resolved", "ktv.hop")
    assert [r.value for r in db_session.scalars(select(Result))] == ["139"]


def test_analyser_profiles_are_edited_with_their_code_map(app, lab, make_user, db_session):
    admin = _client(app, make_user, "bs.quantri", "lab_physician")
    assert app.test_client().get("/lis/analysers").status_code == 302
    form = {"code": "au480", "name": "Beckman AU480", "sender": "AU480^Beckman", "protocol": "hl7",
            "hl7_version": "2.4", "order_message": "OML^O21", "host": "10.0.0.50", "port": "5200",
            "specimen_field": "OBR-2", "quirks": '{"ignore_unknown_codes": true}', "codes": "GLU01=glu\n",
            "active": "1"}
    bad = _post(admin, "/lis/analysers/new", {**form, "port": "99999", "codes": "X=NOSUCH"}, "/lis/analysers/new")
    assert bad.status_code == 422 and 'data-field="port"' in bad.get_data(as_text=True)
    assert db_session.scalar(select(func.count()).select_from(Analyser)) == 3
    made = _post(admin, "/lis/analysers/new", form, "/lis/analysers/new")
    assert made.status_code == 302
    row = db_session.scalar(select(Analyser).where(Analyser.code == "AU480"))
    assert (row.sender, row.port, row.specimen_field, row.quirks) == ("AU480^Beckman", 5200, "OBR-2",
                                                                      {"ignore_unknown_codes": True})
    assert [(c.code, c.test.code) for c in row.codes] == [("GLU01", "GLU")]
    assert "AU480^Beckman" in admin.get("/lis/analysers").get_data(as_text=True)
    doctor = app.test_client()
    login(doctor, "bs.lab")
    assert doctor.get("/lis/analysers").status_code == 403

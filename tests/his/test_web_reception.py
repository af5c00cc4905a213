"""Reception, patients and queue screens over HTTP (Flask test client, PostgreSQL)."""

import re
from datetime import datetime

from sqlalchemy import func, select

from core.models import AuditEvent
from his.models.patients import Patient
from his.models.tickets import Ticket
from tests.conftest import csrf_token, login

QR = "001090123456|012345678|Nguyễn Văn An|01011990|Nam|Số 1 Tràng Tiền, Hoàn Kiếm, Hà Nội|15042021"


def _scan(client, point, qr=QR, **flags):
    token = csrf_token(client, "/reception")
    return client.post("/reception/scan", data={"qr": qr, "service_point_id": point.id, "csrf_token": token, **flags})


def test_scan_registers_gives_a_number_then_recognises_the_patient(client, make_user, clinic, db_session):
    make_user("tiepdon.web", "receptionist")
    login(client, "tiepdon.web")
    response = _scan(client, clinic["point"])
    assert response.status_code == 302
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert 'id="ticket-number">0001<' in html and "Nguyễn Văn An" in html
    assert "Đã đăng ký người bệnh mới" in html
    again = client.get(_scan(client, clinic["point"]).headers["Location"]).get_data(as_text=True)
    assert 'id="ticket-number">0001<' in again and "đã có số 0001" in again
    assert db_session.scalar(select(func.count()).select_from(Patient)) == 1
    assert db_session.scalar(select(func.count()).select_from(Ticket)) == 1


def test_a_bad_qr_is_refused_in_vietnamese_and_saves_nothing(client, make_user, clinic, db_session):
    make_user("tiepdon.bad", "receptionist")
    login(client, "tiepdon.bad")
    response = _scan(client, clinic["point"], qr="001090123456|012345678|Nguyễn Văn An|01011991|Nam|HN|15042021")
    assert response.status_code == 422
    assert "sinh năm 1990" in response.get_data(as_text=True)
    assert db_session.scalar(select(func.count()).select_from(Patient)) == 0


def test_elderly_patient_gets_a_priority_ticket(client, make_user, clinic):
    make_user("tiepdon.cc", "receptionist")
    login(client, "tiepdon.cc")
    html = client.get(_scan(client, clinic["point"], qr="001040123456||Lê Văn Cụ|01011940|Nam|HN|15042021")
                      .headers["Location"]).get_data(as_text=True)
    assert "Người từ 75 tuổi" in html


def test_board_and_ticket_print(client, make_user, clinic):
    make_user("tiepdon.board", "receptionist")
    login(client, "tiepdon.board")
    location = _scan(client, clinic["point"]).headers["Location"]
    ticket_id = int(re.search(r"ticket=(\d+)", location).group(1))
    anonymous = client.application.test_client()
    state = anonymous.get(f"/board/{clinic['point'].code}/state").json  # public screen, numbers only
    assert state["waiting"] == [{"number": "0001", "priority": False}] and state["waiting_count"] == 1
    assert "Nguyễn" not in str(state)
    assert "0001" in anonymous.get(f"/board/{clinic['point'].code}").get_data(as_text=True)
    slip = client.get(f"/tickets/{ticket_id}/print").get_data(as_text=True)
    assert 'id="print-number">0001<' in slip and "<svg" in slip


def test_the_board_clock_is_the_hospitals_time(client, clinic):
    tz = client.application.extensions["vnhis.config"].tz
    before = datetime.now(tz)
    page = client.get(f"/board/{clinic['point'].code}").get_data(as_text=True)
    clock = client.get(f"/board/{clinic['point'].code}/state").json["clock"]
    after = datetime.now(tz)
    offset = int(before.utcoffset().total_seconds()) // 60
    assert f'data-utc-offset-minutes="{offset}"' in page and clock["utc_offset_minutes"] == offset
    assert before.timestamp() * 1000 - 1 <= clock["now_ms"] <= after.timestamp() * 1000 + 1
    shown = re.search(r'<span id="board-clock">(\d\d:\d\d)</span>', page).group(1)
    assert shown in {f"{before:%H:%M}", f"{after:%H:%M}"}


def test_queue_desk_calls_next(client, make_user, clinic):
    make_user("bacsi.desk", "doctor")
    make_user("tiepdon.desk", "receptionist")
    login(client, "tiepdon.desk")
    _scan(client, clinic["point"])
    code = clinic["point"].code
    token = csrf_token(client, f"/queue/{code}")
    client.post(f"/queue/{code}/next", data={"csrf_token": token})
    state = client.get(f"/board/{code}/state").json
    assert state["called"] == ["0001"] and state["waiting_count"] == 0
    worklist = client.get(f"/worklist?room={clinic['room'].code}").get_data(as_text=True)
    assert "Nguyễn Văn An" in worklist and "0001" in worklist


def test_patient_page_read_is_audited_and_search_works(client, make_user, clinic, db_session):
    make_user("tiepdon.view", "receptionist")
    login(client, "tiepdon.view")
    _scan(client, clinic["point"])
    patient = db_session.scalar(select(Patient))
    html = client.get("/patients?q=nguyen van").get_data(as_text=True)
    assert "Nguyễn Văn An" in html
    assert "Nguyễn Văn An" in client.get(f"/patients/{patient.id}").get_data(as_text=True)
    assert db_session.scalar(select(func.count()).select_from(AuditEvent)
                             .where(AuditEvent.action == "patient.read", AuditEvent.target_id == str(patient.id))) == 1


def test_register_form_errors_name_the_field(client, make_user):
    make_user("tiepdon.form", "receptionist")
    login(client, "tiepdon.form")
    token = csrf_token(client, "/patients/new")
    response = client.post("/patients/new", data={"full_name": "Lê Thị Hoa", "sex": "female",
                                                  "birth_date": "31/02/1990", "national_id": "123",
                                                  "csrf_token": token})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'id="error-birth_date"' in html and 'id="error-national_id"' in html
    response = client.post("/patients/new", data={"full_name": "Lê Thị Hoa", "sex": "female", "birth_year": "1990",
                                                  "bhyt_number": "ZZ4010120878811", "csrf_token": token})
    assert response.status_code == 422 and "«ZZ»" in response.get_data(as_text=True)


def test_api_scan_and_search(client, make_user, clinic, db_session):
    from core import auth
    from core.audit import Actor

    kiosk = make_user("kiosk-1", "receptionist")
    token, _ = auth.create_token(db_session, Actor.system("test"), kiosk, "kiosk")
    db_session.commit()
    headers = {"Authorization": f"Bearer {token}"}
    response = client.post("/api/v1/reception/scan", json={"qr": QR, "service_point": clinic["point"].code},
                           headers=headers)
    assert response.status_code == 201 and response.json["created"] is True
    assert response.json["ticket"]["display_number"] == "0001"
    again = client.post("/api/v1/reception/scan", json={"qr": QR, "service_point": clinic["point"].code},
                        headers=headers)
    assert again.status_code == 200 and again.json["patient"]["id"] == response.json["patient"]["id"]
    bad = client.post("/api/v1/reception/scan", json={"qr": "x|y", "service_point": clinic["point"].code},
                      headers=headers)
    assert bad.status_code == 422 and bad.json["error"]["code"] == "qr_fields"
    found = client.get("/api/v1/patients?q=001090123456", headers=headers).json
    assert [p["full_name"] for p in found["items"]] == ["Nguyễn Văn An"]
    spec = client.get("/api/v1/openapi.json").json
    assert "/reception/scan" in spec["paths"] and "/patients" in spec["paths"]


def test_register_with_an_address_on_the_administrative_units(client, make_user, db_session):
    from his import geo

    make_user("tiepdon.addr", "receptionist")
    login(client, "tiepdon.addr")
    hanoi = next(p for p in geo.provinces("post2025") if "Hà Nội" in p.name)
    ward = geo.wards(hanoi.code)[0]
    other = next(p for p in geo.provinces("post2025") if p.code != hanoi.code)
    token = csrf_token(client, "/patients/new")
    base = {"full_name": "Đỗ Thị Hạnh", "sex": "female", "birth_year": "1970", "csrf_token": token}
    bad = client.post("/patients/new", data={**base, "province_code": other.code, "ward_code": ward.code})
    assert bad.status_code == 422 and 'id="error-ward_code"' in bad.get_data(as_text=True)
    assert db_session.scalar(select(func.count()).select_from(Patient)) == 0
    good = client.post("/patients/new", data={**base, "province_code": hanoi.code, "ward_code": ward.code,
                                              "street": "12 Hàng Bạc"})
    assert good.status_code == 302
    patient = db_session.scalar(select(Patient))
    assert (patient.address_scheme, patient.province_code, patient.ward_code) == ("post2025", hanoi.code, ward.code)
    wards = client.get(f"/api/v1/geo/provinces/{hanoi.code}/wards").json
    assert any(w["code"] == ward.code for w in wards)


def test_record_a_card_for_a_patient_registered_by_qr(client, make_user, clinic, db_session):
    make_user("tiepdon.card", "receptionist")
    login(client, "tiepdon.card")
    _scan(client, clinic["point"])
    patient = db_session.scalar(select(Patient))
    token = csrf_token(client, f"/patients/{patient.id}")
    bad = client.post(f"/patients/{patient.id}/cards", data={"bhyt_number": "ZZ4010120878811", "csrf_token": token})
    assert bad.status_code == 422 and "«ZZ»" in bad.get_data(as_text=True)
    good = client.post(f"/patients/{patient.id}/cards", data={"bhyt_number": "DN4010120878811",
                                                             "bhyt_valid_to": "31/12/2027", "csrf_token": token})
    assert good.status_code == 302
    from his import patients

    assert patients.current_card(db_session, patient).number == "DN4010120878811"
    again = client.post(f"/patients/{patient.id}/cards", data={"bhyt_number": "DN4010120878811",
                                                              "bhyt_valid_to": "31/12/2028", "csrf_token": token})
    assert again.status_code == 302
    from his.models.patients import BhytCard

    cards = db_session.scalars(select(BhytCard).where(BhytCard.patient_id == patient.id)).all()
    assert len(cards) == 1 and cards[0].valid_to.year == 2028  # the same card: its dates updated


def test_api_encounter_queue_and_merge_endpoints(client, make_user, clinic, db_session):
    from core import auth
    from core.audit import Actor
    from his import demo_catalog

    demo_catalog.seed(db_session, Actor.system("test"))
    doctor = make_user("bacsi-api", "doctor")
    token, _ = auth.create_token(db_session, Actor.system("test"), doctor, "ứng dụng")
    db_session.commit()
    h = {"Authorization": f"Bearer {token}"}
    scanned = client.post("/api/v1/reception/scan", json={"qr": QR, "service_point": clinic["point"].code},
                          headers=h).json
    work = client.get(f"/api/v1/worklist?room={clinic['room'].code}", headers=h).json["items"]
    assert [e["patient_id"] for e in work] == [scanned["patient"]["id"]]
    enc_id = work[0]["id"]
    bad = client.post(f"/api/v1/encounters/{enc_id}/diagnoses", json={"icd10": "Q99.99"}, headers=h)
    assert bad.status_code == 422 and bad.json["error"]["code"] == "icd10_unknown"
    ok = client.post(f"/api/v1/encounters/{enc_id}/diagnoses", json={"icd10": "I10", "position": "principal"},
                     headers=h)
    assert ok.status_code == 201 and ok.json["diagnoses"][0]["icd10_code"] == "I10"
    moved = client.post(f"/api/v1/encounters/{enc_id}/status", json={"status": "in_progress"}, headers=h)
    assert moved.status_code == 200 and moved.json["status"] == "in_progress"
    wrong = client.post(f"/api/v1/encounters/{enc_id}/status", json={"status": "discharged"}, headers=h)
    assert wrong.status_code == 409 and wrong.json["error"]["code"] == "bad_transition"
    point = clinic["point"].code
    called = client.post(f"/api/v1/queue/{point}/call-next", headers=h).json["ticket"]
    done = client.post(f"/api/v1/queue/{point}/tickets/{called['id']}/done", headers=h)
    assert done.status_code == 200 and done.json["status"] == "done"
    again = client.post(f"/api/v1/queue/{point}/tickets/{called['id']}/skip", headers=h)
    assert again.status_code == 409 and again.json["error"]["code"] == "not_called"

"""The ward screens and the ADT JSON API over HTTP (Flask test client, PostgreSQL)."""

import re
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from core import auth
from core.audit import Actor
from core.db import utcnow
from his import admission as adt
from his.models.admission import Admission, BedStay
from tests.conftest import csrf_token, login
from tests.his.test_admission import NURSE, make_patient, make_ward


@pytest.fixture
def ward(db_session):
    ward = make_ward(db_session)
    ward["an"] = make_patient(db_session)
    ward["hoa"] = make_patient(db_session, "Lê Thị Hoa", "260000002")
    db_session.commit()
    return ward


@pytest.fixture
def nurse(client, make_user):
    make_user("dieuduong.noi", "nurse")
    login(client, "dieuduong.noi")
    return client


def _post(client, path, page, **data):
    return client.post(path, data={"csrf_token": csrf_token(client, page), **data})


def test_the_bed_board_admit_transfer_discharge(nurse, ward, db_session):
    board = nurse.get("/ward/KNOI")
    html = board.get_data(as_text=True)
    assert board.status_code == 200 and 'id="bed-N201-G01"' in html and 'id="bed-N201-G09"' in html
    assert 'href="/ward"' in nurse.get("/").get_data(as_text=True)  # the menu entry
    found = nurse.get("/ward/KNOI/admit?q=nguyen van").get_data(as_text=True)
    assert "Nguyễn Văn An" in found
    page = f"/ward/KNOI/admit?patient_id={ward['an'].id}"
    assert 'id="admit-form"' in nurse.get(page).get_data(as_text=True)
    bed = ward["beds"]["N201-G02"]
    response = _post(nurse, "/ward/KNOI/admit", page, patient_id=ward["an"].id, encounter_id="", bed_id=bed.id,
                     reason="Viêm phổi", at="")
    assert response.status_code == 302
    html = nurse.get(response.headers["Location"]).get_data(as_text=True)
    cell = re.search(r'id="bed-N201-G02".*?</div>\s*</div>', html, re.S).group(0)
    assert "Nguyễn Văn An" in cell and "260000001" in cell
    encounter_id = db_session.scalar(select(Admission.encounter_id))
    stay_page = f"/ward/stays/{encounter_id}"
    assert 'id="transfer-form"' in nurse.get(stay_page).get_data(as_text=True)
    moved = _post(nurse, f"/ward/stays/{encounter_id}/transfer", stay_page,
                  to_bed_id=ward["beds"]["NG301-G01"].id, to_department_id="", at="")
    assert moved.status_code == 302 and moved.headers["Location"].startswith("/ward/KNGOAI")
    out = _post(nurse, f"/ward/stays/{encounter_id}/discharge", stay_page, discharge_type="home",
                outcome="cured", cause_of_death="", at="")
    assert out.status_code == 302
    html = nurse.get(stay_page).get_data(as_text=True)
    assert html.count("<tr>") >= 4 and 'id="discharged"' in html
    assert db_session.scalar(select(func.count()).select_from(BedStay).where(BedStay.ended_at.is_(None))) == 0


def test_a_taken_bed_is_refused_on_the_form_and_nothing_is_saved(nurse, ward, db_session):
    bed = ward["beds"]["N201-G01"]
    adt.admit(db_session, NURSE, ward["hoa"], department=ward["noi"], bed=bed, reason="Sốt", at=utcnow(),
              day=date.today())
    db_session.commit()
    page = f"/ward/KNOI/admit?patient_id={ward['an'].id}"
    response = _post(nurse, "/ward/KNOI/admit", page, patient_id=ward["an"].id, encounter_id="", bed_id=bed.id,
                     reason="Viêm phổi")
    assert response.status_code == 422
    assert 'id="admit-error"' in response.get_data(as_text=True) and "N201-G01" in response.get_data(as_text=True)
    assert db_session.scalar(select(func.count()).select_from(Admission)) == 1
    bad_time = _post(nurse, "/ward/KNOI/admit", page, patient_id=ward["an"].id, bed_id="", reason="x", at="hôm qua")
    assert bad_time.status_code == 422 and db_session.scalar(select(func.count()).select_from(Admission)) == 1


def test_viewing_needs_encounter_read_and_acting_needs_adt_manage(client, make_user, ward):
    make_user("thungan", "cashier")
    login(client, "thungan")
    assert client.get("/ward/KNOI").status_code == 200
    page = client.get("/ward/KNOI/admit")
    assert page.status_code == 403
    response = client.post("/ward/KNOI/admit", data={"csrf_token": csrf_token(client, "/ward/KNOI"),
                                                     "patient_id": ward["an"].id, "reason": "x"})
    assert response.status_code == 403


def test_the_json_api(client, make_user, ward, db_session):
    nurse = make_user("dd.api", "nurse")
    token, _ = auth.create_token(db_session, Actor.system("test"), nurse, "ward tablet")
    db_session.commit()
    headers = {"Authorization": f"Bearer {token}"}
    made = client.post("/api/v1/admissions", headers=headers, json={
        "patient_id": ward["an"].id, "department": "KNOI", "bed": "N201-G01", "reason": "Viêm phổi",
        "at": (utcnow() - timedelta(hours=1)).isoformat()})
    assert made.status_code == 201, made.json
    assert made.json["source"] == "direct" and made.json["patient"]["code"] == "260000001"
    encounter_id = made.json["encounter_id"]
    taken = client.post("/api/v1/admissions", headers=headers, json={
        "patient_id": ward["hoa"].id, "department": "KNOI", "bed": "N201-G01", "reason": "Sốt"})
    assert taken.status_code == 409 and taken.json["error"]["code"] == "bed_taken"
    assert taken.json["error"]["fields"] == {"bed": taken.json["error"]["message"]}
    missing = client.post("/api/v1/admissions", headers=headers, json={"patient_id": ward["hoa"].id,
                                                                       "department": "KNOI"})
    assert missing.status_code == 422 and missing.json["error"]["fields"].keys() == {"reason"}
    unknown = client.post("/api/v1/admissions", headers=headers, json={
        "patient_id": ward["hoa"].id, "department": "KNOI", "bed": "N999", "reason": "Sốt"})
    assert unknown.status_code == 422 and unknown.json["error"]["code"] == "unknown_code"
    board = client.get("/api/v1/wards/KNOI/board", headers=headers).json
    assert board["occupied"] == 1 and board["free"] == 2
    first = board["rooms"][0]["beds"][0]
    assert (first["bed"], first["patient_name"], first["free"]) == ("N201-G01", "Nguyễn Văn An", False)
    same = client.post(f"/api/v1/encounters/{encounter_id}/transfer", headers=headers, json={"to_bed": "N201-G01"})
    assert same.status_code == 422 and same.json["error"]["code"] == "same_bed"
    moved = client.post(f"/api/v1/encounters/{encounter_id}/transfer", headers=headers,
                        json={"to_bed": "NG301-G02", "reason": "Cần phẫu thuật"})
    assert moved.status_code == 200
    assert [b["bed"] for b in moved.json["beds"]] == ["N201-G01", "NG301-G02"]
    assert [d["department"] for d in moved.json["departments"]] == ["KNOI", "KNGOAI"]
    died = client.post(f"/api/v1/encounters/{encounter_id}/discharge", headers=headers,
                       json={"discharge_type": "home", "outcome": "died"})
    assert died.status_code == 422 and died.json["error"]["code"] == "cause_of_death_required"
    out = client.post(f"/api/v1/encounters/{encounter_id}/discharge", headers=headers,
                      json={"discharge_type": "at_request", "outcome": "worse"})
    assert out.status_code == 200 and out.json["outcome"] == "worse" and out.json["discharged_at"]
    twice = client.post(f"/api/v1/encounters/{encounter_id}/discharge", headers=headers,
                        json={"discharge_type": "home", "outcome": "cured"})
    assert twice.status_code == 409 and twice.json["error"]["code"] == "already_discharged"
    stay = client.get(f"/api/v1/encounters/{encounter_id}/stay", headers=headers).json
    assert stay["admission"]["discharge_type"] == "at_request" and all(b["ended_at"] for b in stay["beds"])
    paths = client.get("/api/v1/openapi.json").json["paths"]
    assert {"/wards/{code}/board", "/admissions", "/encounters/{encounter_id}/transfer",
            "/encounters/{encounter_id}/discharge", "/encounters/{encounter_id}/stay"} <= paths.keys()

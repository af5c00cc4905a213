"""Catalogue screens and JSON endpoints: Vietnamese pages, permission checks, the ICD-10 rule check."""

import pytest

from core import auth
from core.audit import Actor
from his import demo_catalog
from tests.conftest import login


@pytest.fixture
def seeded(db_session):
    demo_catalog.seed(db_session, Actor.system("test"))
    db_session.commit()


@pytest.fixture
def doctor(client, make_user, seeded):
    make_user("bs.an", "doctor")
    assert login(client, "bs.an").status_code == 302
    return client


def test_the_services_screen_searches_folded_names_and_shows_prices(doctor):
    html = doctor.get("/catalog/services?q=x+quang+nguc").get_data(as_text=True)
    assert "Chụp X-quang ngực thẳng (số hóa 1 phim)" in html
    assert "65.400\u00a0₫" in html
    assert "Danh mục" in html and "Khám Nội" not in html


def test_the_drug_and_icd_screens(doctor):
    html = doctor.get("/catalog/drugs?q=morphin").get_data(as_text=True)
    assert "Morphin hydroclorid" in html and "gây nghiện" in html
    html = doctor.get("/catalog/icd10?q=tang+huyet+ap").get_data(as_text=True)
    assert "I10" in html and "Tăng huyết áp vô căn (nguyên phát)" in html
    assert doctor.get("/catalog/supplies").status_code == 200


def test_the_json_search_gives_prices_as_decimal_strings(doctor):
    body = doctor.get("/api/v1/catalog/services?q=KB.NOI&on=2026-03-01").get_json()
    assert body["total"] == 1
    assert body["items"][0]["prices"] == {"bhyt": "42100.000", "fee": "42100.000", "on_demand": "150000.000"}
    # Before its validity the service is not offered at all.
    assert doctor.get("/api/v1/catalog/services?q=KB.NOI&on=2025-12-31").get_json()["total"] == 0
    drug = doctor.get("/api/v1/catalog/drugs?q=T.PARA500").get_json()["items"][0]
    assert (drug["active_ingredient"], drug["price"], drug["is_narcotic"]) == ("Paracetamol", "350.000", False)
    response = doctor.get("/api/v1/catalog/services?on=31-31-2026")
    assert response.status_code == 422 and response.get_json()["error"]["field"] == "on"


def test_the_icd_check_names_the_rule_in_vietnamese(doctor):
    response = doctor.get("/api/v1/catalog/icd10/E11?position=secondary")
    assert response.status_code == 422
    assert response.get_json()["error"] == {
        "code": "icd10_not_for_use", "field": "code",
        "message": "Mã ICD-10 «E11» không được sử dụng: hãy chọn mã chi tiết hơn (4 hoặc 5 ký tự)."}
    response = doctor.get("/api/v1/catalog/icd10/Z999?on=2026-12-01")
    assert response.status_code == 404
    assert response.get_json()["error"]["message"] == ("Mã ICD-10 «Z99.9» không có trong danh mục áp dụng "
                                                       "ngày 01/12/2026.")
    assert doctor.get("/api/v1/catalog/icd10/G63.2").get_json()["error"]["code"] == "icd10_not_principal"
    body = doctor.get("/api/v1/catalog/icd10/n40?sex=female").get_json()
    assert body["code"] == "N40" and body["warnings"] == ["Mã ICD-10 «N40» dành cho người bệnh nam."]


def test_the_api_needs_a_login_and_the_permission(client, db_session, make_user, seeded):
    response = client.get("/api/v1/catalog/services")
    assert response.status_code == 401 and response.get_json()["error"]["code"] == "unauthenticated"
    machine = make_user("may.xn", "integration", machine=True)
    token, _record = auth.create_token(db_session, Actor.system("test"), machine, "XN")
    db_session.commit()
    response = client.get("/api/v1/catalog/services", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403


def test_the_endpoints_are_in_the_openapi_document(client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    assert {"/catalog/services", "/catalog/drugs", "/catalog/supplies", "/catalog/icd10",
            "/catalog/icd10/{code}"} <= set(paths)

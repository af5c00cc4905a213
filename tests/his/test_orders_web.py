"""The order screens and JSON API over HTTP (Flask test client, PostgreSQL): the encounter's orders
page, ordering services and writing a prescription, refusals, permissions, printing, the API."""

import re

import pytest
from sqlalchemy import func, select

from core import auth
from core.audit import Actor
from core.models import AuditEvent
from his import demo_catalog, encounters, patients
from his.models.orders import Order
from his.models.org import Staff
from tests.conftest import csrf_token, login
from tests.his.conftest import DESK, TODAY


@pytest.fixture
def visit(db_session, clinic, make_user):
    demo_catalog.seed(db_session, Actor.system("test"))
    user = make_user("bs.web", "doctor")
    staff = Staff(user_id=user.id, full_name="Lê Minh Tâm", title="BSCKI", department_id=clinic["department"].id,
                  active=True)
    db_session.add(staff)
    patient = patients.register(db_session, DESK, {"full_name": "Trần Thị Bình", "birth_year": 1960, "sex": "female",
                                                   "address_text": "Số 5 Hàng Bài, Hà Nội"},
                                today=TODAY, confirm_possible_duplicate=True).patient
    encounter = encounters.open_encounter(db_session, DESK, patient, kind="outpatient", day=TODAY,
                                          room=clinic["room"], doctor=staff)
    diagnosis, _ = encounters.add_diagnosis(db_session, Actor(id=user.id, name="bs.web"), encounter, "I10",
                                            position="principal", on=TODAY)
    db_session.commit()
    return {"encounter": encounter, "patient": patient, "diagnosis": diagnosis, "staff": staff}


@pytest.fixture
def doctor(client, visit):
    assert login(client, "bs.web").status_code == 302
    return client


def _page(visit) -> str:
    return f"/encounters/{visit['encounter'].id}/orders"


def _post(client, visit, data):
    token = csrf_token(client, _page(visit))
    return client.post(_page(visit), data={"csrf_token": token, **data})


def _orders(db_session):
    db_session.expire_all()
    return db_session.scalars(select(Order).order_by(Order.id)).all()


def test_the_page_searches_services_and_places_a_lab_order(doctor, visit, db_session):
    html = doctor.get(_page(visit) + "?kind=lab&sq=glucose").get_data(as_text=True)
    assert "Trần Thị Bình" in html and 'id="orders"' in html
    assert 'name="code" value="XN.GLU"' in html and "21.500\u00a0₫" in html
    response = _post(doctor, visit, {"kind": "lab", "code": ["XN.GLU"], "quantity.XN.GLU": "1",
                                     "code_typed": "xn.ctm, XN.CREA", "diagnosis_id": str(visit["diagnosis"].id)})
    assert response.status_code == 302 and response.headers["Location"].endswith(_page(visit))
    [order] = _orders(db_session)
    assert order.kind == "lab" and [li.item_code for li in order.lines] == ["XN.GLU", "XN.CTM", "XN.CREA"]
    assert order.diagnosis_id == visit["diagnosis"].id and order.orderer_id == visit["staff"].id
    html = doctor.get(_page(visit)).get_data(as_text=True)
    assert f'id="order-{order.id}" data-status="placed"' in html and "XN.CREA" in html


def test_a_prescription_is_written_then_printed(doctor, visit, db_session):
    html = doctor.get(_page(visit) + "?dq=amoxi").get_data(as_text=True)
    assert 'data-code="T.AMOX500"' in html
    response = _post(doctor, visit, {
        "kind": "prescription", "rx-0-code": "T.AMOX500", "rx-0-dose": "1", "rx-0-frequency": "3", "rx-0-days": "7",
        "rx-0-instructions": "sau ăn", "rx-1-code": "T.PARA500", "rx-1-dose": "1", "rx-1-frequency": "2",
        "rx-1-days": "2", "rx-1-quantity": "", "note": "Tái khám sau 7 ngày",
        "diagnosis_id": str(visit["diagnosis"].id)})
    assert response.status_code == 302
    [order] = _orders(db_session)
    assert [(li.item_code, int(li.quantity)) for li in order.lines] == [("T.AMOX500", 21), ("T.PARA500", 4)]
    slip = doctor.get(f"/orders/{order.id}/print").get_data(as_text=True)
    assert "Amoxicillin 500 mg" in slip and "Trần Thị Bình" in slip and "I10" in slip
    quantities = re.findall(r'class="rx-qty">([^<]+)<', slip)
    assert quantities == ["21", "04"]  # under 10: a leading zero
    assert "Tái khám sau 7 ngày" in slip and "Lê Minh Tâm" in slip and "window.print()" in slip
    db_session.commit()
    assert db_session.scalar(select(func.count()).select_from(AuditEvent)
                             .where(AuditEvent.action == "order.print")) == 1


def test_a_narcotic_prescription_is_an_n_prescription_in_three_copies(doctor, visit, db_session):
    assert _post(doctor, visit, {"kind": "prescription", "rx-0-code": "T.MORPH10", "rx-0-dose": "1",
                                 "rx-0-frequency": "1", "rx-0-days": "5", "rx-0-route": "Tiêm dưới da"}
                 ).status_code == 302
    [order] = _orders(db_session)
    slip = doctor.get(f"/orders/{order.id}/print").get_data(as_text=True)
    assert slip.count('class="sheet"') == 3 and "«N»" in slip
    assert '<span class="rx-qty">05</span> ống (năm)' in slip and "Tiêm dưới da" in slip


def test_a_refused_prescription_names_the_field_and_saves_nothing(doctor, visit, db_session):
    response = _post(doctor, visit, {"kind": "prescription", "rx-0-code": "T.AMOX500", "rx-0-dose": "1",
                                     "rx-0-frequency": "3", "rx-0-days": "7", "rx-1-code": "T.KHONGCO",
                                     "rx-1-dose": "1", "rx-1-frequency": "1", "rx-1-days": "1"})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert 'id="order-error" data-code="drug_unknown" data-field="items.1.code"' in html
    assert 'id="error-rx-1-code"' in html and 'value="T.KHONGCO"' in html  # typed values are kept
    assert _orders(db_session) == []


def test_cancel_start_complete_reverse_from_the_page(doctor, visit, db_session):
    _post(doctor, visit, {"kind": "imaging", "code": ["CDHA.XQN"]})
    [order] = _orders(db_session)
    token = csrf_token(doctor, _page(visit))
    assert doctor.post(f"/orders/{order.id}/start", data={"csrf_token": token}).status_code == 302
    assert _orders(db_session)[0].status == "in_progress"
    doctor.post(f"/orders/{order.id}/cancel", data={"csrf_token": token, "reason": "nhầm"})
    assert _orders(db_session)[0].status == "in_progress"  # carried out: only a reversal now
    doctor.post(f"/orders/{order.id}/complete", data={"csrf_token": token})
    doctor.post(f"/orders/{order.id}/reverse", data={"csrf_token": token, "reason": "Chụp nhầm người bệnh"})
    [order] = _orders(db_session)
    assert (order.status, order.reverse_reason) == ("reversed", "Chụp nhầm người bệnh")
    _post(doctor, visit, {"kind": "lab", "code": ["XN.GLU"]})
    second = _orders(db_session)[1]
    doctor.post(f"/orders/{second.id}/cancel", data={"csrf_token": token, "reason": "Người bệnh từ chối"})
    assert _orders(db_session)[1].status == "cancelled"


def test_a_nurse_sees_and_carries_out_orders_but_cannot_place_them(client, visit, make_user, db_session):
    make_user("dd.web", "nurse")
    login(client, "dd.web")
    assert client.get(_page(visit)).status_code == 200
    token = csrf_token(client, _page(visit))
    response = client.post(_page(visit), data={"csrf_token": token, "kind": "lab", "code": ["XN.GLU"]})
    assert response.status_code == 403 and _orders(db_session) == []


def test_no_order_form_on_a_finished_encounter(doctor, visit, db_session):
    encounter = visit["encounter"]
    encounters.set_status(db_session, DESK, encounter, "in_progress")
    encounters.set_status(db_session, DESK, encounter, "finished")
    db_session.commit()
    html = doctor.get(_page(visit)).get_data(as_text=True)
    assert 'id="prescription-form"' not in html
    response = _post(doctor, visit, {"kind": "lab", "code": ["XN.GLU"]})
    assert response.status_code == 422 and 'data-code="encounter_closed"' in response.get_data(as_text=True)


def test_the_api_lists_places_and_cancels(client, visit, make_user, db_session):
    user = make_user("his-bridge", "doctor", machine=True)
    token, _ = auth.create_token(db_session, Actor.system("test"), user, "bridge")
    db_session.commit()
    headers = {"Authorization": f"Bearer {token}"}
    url = f"/api/v1/encounters/{visit['encounter'].id}/orders"
    created = client.post(url, headers=headers, json={
        "kind": "prescription", "diagnosis_id": visit["diagnosis"].id, "chronic": True,
        "items": [{"code": "T.AMLO5", "dose": 1, "frequency": 1, "days": 60, "instructions": "buổi sáng"}]})
    assert created.status_code == 201
    body = created.get_json()
    assert body["status"] == "placed" and body["chronic"] is True
    assert body["lines"][0] | {"id": 0} == {
        "id": 0, "position": 1, "item_code": "T.AMLO5", "item_name": "Amlodipin 5 mg", "bhyt_code": None,
        "quantity": "60.000", "unit": "viên", "unit_price": "450.000", "payer": "fee", "dose": "1.000",
        "frequency": 1, "days": 60, "route": "Uống", "quantity_entered": False, "instructions": "buổi sáng"}
    bad = client.post(url, headers=headers, json={"kind": "lab", "items": [{"code": "XN.GLU", "quantity": 0}]})
    assert bad.status_code == 422
    assert bad.get_json()["error"] | {"message": ""} == {"code": "quantity_invalid", "field": "items.0.quantity",
                                                         "message": ""}
    assert client.post(url, headers=headers, data="not json").status_code == 422
    listed = client.get(url, headers=headers).get_json()["items"]
    assert [o["id"] for o in listed] == [body["id"]]
    cancel = f"/api/v1/orders/{body['id']}/cancel"
    assert client.post(cancel, headers=headers, json={}).get_json()["error"]["code"] == "reason_required"
    done = client.post(cancel, headers=headers, json={"reason": "Đổi thuốc"})
    assert done.status_code == 200 and done.get_json()["status"] == "cancelled"
    again = client.post(cancel, headers=headers, json={"reason": "Đổi thuốc"})
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "bad_transition"
    assert client.get("/api/v1/encounters/999999/orders", headers=headers).status_code == 404
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    assert {"get", "post"} <= set(paths["/encounters/{encounter_id}/orders"])
    assert "/orders/{order_id}/cancel" in paths and "/orders/{order_id}/reverse" in paths


def test_the_api_needs_the_order_permission(client, visit, make_user, db_session):
    user = make_user("desk-bridge", "receptionist", machine=True)
    token, _ = auth.create_token(db_session, Actor.system("test"), user, "desk")
    db_session.commit()
    response = client.post(f"/api/v1/encounters/{visit['encounter'].id}/orders",
                           headers={"Authorization": f"Bearer {token}"},
                           json={"kind": "lab", "items": [{"code": "XN.GLU"}]})
    assert response.status_code == 403 and _orders(db_session) == []


def test_errors_read_in_vietnamese(doctor, visit):
    """Passes once /tmp/vnhis-orders-vi.py is merged into the catalogue."""
    response = _post(doctor, visit, {"kind": "prescription", "rx-0-code": "T.AMOX500", "rx-0-dose": "1",
                                     "rx-0-frequency": "3", "rx-0-days": "31"})
    assert "Dòng 1: đơn thuốc chỉ được kê tối đa 30 ngày." in response.get_data(as_text=True)
    html = doctor.get(_page(visit)).get_data(as_text=True)
    assert "Chưa có chỉ định nào." in html and "Kê đơn thuốc" in html

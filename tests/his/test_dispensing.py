"""Dispensing a prescription: FEFO per line, all or nothing, never twice; the order is completed."""

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from his import dispensing, encounters, orders, patients, stock
from his.models.catalog import Drug
from his.models.pharmacy import StockMovement
from his.stock import StockError
from tests.his.conftest import DESK, TODAY


@pytest.fixture
def shop(db_session, clinic):
    from his import demo_catalog

    demo_catalog.seed(db_session, DESK)
    from his.models.pharmacy import Warehouse

    warehouse = Warehouse(code="NT", name="Quầy cấp phát", kind="dispensing", active=True)
    db_session.add(warehouse)
    db_session.flush()
    drugs = db_session.scalars(select(Drug).where(Drug.active, ~Drug.is_narcotic, ~Drug.is_psychotropic)
                               .order_by(Drug.code).limit(2)).all()
    for n, drug in enumerate(drugs):
        stock.receive(db_session, DESK, warehouse, supplier="Công ty Dược", invoice_number=f"HD-{n}",
                      invoice_date=TODAY, today=TODAY,
                      lines=[stock.ReceiptLine(drug, f"L{n}A", TODAY + timedelta(days=400), "30", "100"),
                             stock.ReceiptLine(drug, f"L{n}B", TODAY + timedelta(days=200), "10", "100")])
    patient = patients.register(db_session, DESK, {"full_name": "Lý Văn Tâm", "birth_year": 1970, "sex": "male"},
                                today=TODAY, confirm_possible_duplicate=True).patient
    visit = encounters.open_encounter(db_session, DESK, patient, kind="outpatient", day=TODAY, room=clinic["room"])
    return warehouse, drugs, visit


def _prescribe(session, visit, drugs, quantities):
    items = [{"code": d.code, "quantity": str(q), "dose": "1", "frequency": 1, "days": 5} for d, q in
             zip(drugs, quantities, strict=True)]
    return orders.place_order(session, DESK, visit, "prescription", items, on=TODAY)


def test_dispense_a_prescription_fefo_once(db_session, shop):
    warehouse, drugs, visit = shop
    order = _prescribe(db_session, visit, drugs, [15, 4])
    dispensing.dispense_prescription(db_session, DESK, warehouse, order, today=TODAY)
    assert order.status == "completed"
    assert [s.remaining for s in dispensing.line_statuses(db_session, order)] == [Decimal(0), Decimal(0)]
    lots = db_session.execute(select(StockMovement.quantity).where(StockMovement.reference_type == "prescription_line")
                              .order_by(StockMovement.id)).scalars().all()
    assert lots == [Decimal(-10), Decimal(-5), Decimal(-4)]  # the lot expiring first went first
    with pytest.raises(StockError) as info:
        dispensing.dispense_prescription(db_session, DESK, warehouse, order, today=TODAY)
    assert info.value.code == "prescription_closed"


def test_a_line_short_of_stock_dispenses_nothing(db_session, shop):
    warehouse, drugs, visit = shop
    order = _prescribe(db_session, visit, drugs, [5, 99])
    before = db_session.scalar(select(func.count()).select_from(StockMovement))
    with pytest.raises(StockError) as info, db_session.begin_nested():  # the edge rolls back on the error
        dispensing.dispense_prescription(db_session, DESK, warehouse, order, today=TODAY)
    assert info.value.code == "insufficient_stock"
    assert db_session.scalar(select(func.count()).select_from(StockMovement)) == before
    assert db_session.get(type(order), order.id, populate_existing=True).status == "placed"


def test_the_pharmacist_screen(client, make_user, db_session, shop):
    from tests.conftest import csrf_token, login

    warehouse, drugs, visit = shop
    order = _prescribe(db_session, visit, drugs, [3, 2])
    db_session.commit()
    make_user("duocsi.web", "pharmacist")
    login(client, "duocsi.web")
    html = client.get(f"/pharmacy/prescriptions?q={visit.code}").get_data(as_text=True)
    assert f'id="prescription-{order.id}"' in html
    token = csrf_token(client, f"/pharmacy/prescriptions?q={visit.code}")
    response = client.post(f"/pharmacy/prescriptions/{order.id}/dispense",
                           data={"warehouse": warehouse.code, "q": visit.code, "csrf_token": token})
    assert response.status_code == 302
    assert db_session.get(type(order), order.id, populate_existing=True).status == "completed"

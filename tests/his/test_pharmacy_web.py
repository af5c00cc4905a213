"""Pharmacy screens and JSON API over HTTP (Flask test client, PostgreSQL)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from his import stock
from his.models.pharmacy import GoodsReceipt, PharmacyStock, StockMovement
from his.stock import ReceiptLine
from his.web._helpers import today as local_today
from tests.conftest import csrf_token, login
from tests.his.test_pharmacy import PHARMACIST, make_drug, make_warehouse


@pytest.fixture
def stocked(app, db_session):
    with app.app_context():
        day = local_today()
    drug = make_drug(db_session)
    pharmacy = make_warehouse(db_session)
    store = make_warehouse(db_session, "KHO", "Kho chính", "main_store")
    stock.receive(db_session, PHARMACIST, pharmacy,
                  [ReceiptLine(drug, "SOON", day + timedelta(days=30), 5, 300),
                   ReceiptLine(drug, "LATE", day + timedelta(days=700), 20, 300)],
                  supplier="NCC", invoice_number="HD-W1", today=day)
    db_session.commit()
    return {"drug": drug, "pharmacy": pharmacy, "store": store, "today": day}


@pytest.fixture
def pharmacist(client, make_user):
    make_user("duocsi.web", "pharmacist")
    login(client, "duocsi.web")
    return client


def _counts(db_session):
    db_session.expire_all()
    return (db_session.scalar(select(func.count()).select_from(StockMovement)),
            db_session.scalar(select(func.sum(PharmacyStock.on_hand))),
            db_session.scalar(select(func.count()).select_from(GoodsReceipt)))


def test_stock_screen_lists_lots_first_expiry_first_and_searches(pharmacist, stocked):
    html = pharmacist.get("/pharmacy?w=NT").get_data(as_text=True)
    assert "Paracetamol 500 mg" in html and html.index("SOON") < html.index("LATE")
    assert "Paracetamol" not in pharmacist.get("/pharmacy?w=NT&q=amox").get_data(as_text=True).split("<tbody>")[1]
    assert "Paracetamol 500 mg" in pharmacist.get("/pharmacy?w=NT&q=para").get_data(as_text=True)


def test_dispense_form_takes_fefo_and_warns_near_expiry(pharmacist, stocked, db_session):
    token = csrf_token(pharmacist, "/pharmacy/dispense")
    response = pharmacist.post("/pharmacy/dispense", data={
        "csrf_token": token, "warehouse": "NT", "drug": "T.PARA500", "quantity": "7",
        "reference_type": "prescription_line", "reference_id": "55"})
    assert response.status_code == 302
    html = pharmacist.get(response.headers["Location"]).get_data(as_text=True)
    assert "SOON (5)" in html and "LATE (2)" in html
    assert "flash-warning" in html  # SOON expires within the near-expiry window
    rows = db_session.scalars(select(StockMovement).where(StockMovement.kind == "dispense")).all()
    assert sorted((m.lot.lot_number, m.quantity, m.reference_id) for m in rows) == [("LATE", -2, 55), ("SOON", -5, 55)]


def test_dispensing_more_than_the_stock_over_http_changes_nothing(pharmacist, stocked, db_session):
    before = _counts(db_session)
    token = csrf_token(pharmacist, "/pharmacy/dispense")
    response = pharmacist.post("/pharmacy/dispense", data={"csrf_token": token, "warehouse": "NT",
                                                          "drug": "T.PARA500", "quantity": "26"})
    assert response.status_code == 422
    assert 'id="dispense-error"' in response.get_data(as_text=True)
    assert _counts(db_session) == before
    api = pharmacist.post("/api/v1/pharmacy/dispense", json={"warehouse": "NT", "drug": "T.PARA500", "quantity": "26"},
                          headers={"X-CSRFToken": token})
    assert api.status_code == 422
    assert api.json["error"]["code"] == "insufficient_stock" and api.json["error"]["field"] == "quantity"
    assert api.json["error"]["params"] == {"requested": "26.000", "available": "25.000"}
    assert "Paracetamol 500 mg" in api.json["error"]["message"]
    assert _counts(db_session) == before


def test_receipt_form_saves_lots_and_a_bad_line_saves_nothing(pharmacist, stocked, db_session):
    token = csrf_token(pharmacist, "/pharmacy/receipts/new")
    expiry = (stocked["today"] + timedelta(days=400)).strftime("%d/%m/%Y")
    form = {"csrf_token": token, "rows": "6", "warehouse": "KHO", "supplier": "Công ty Dược Hậu Giang",
            "invoice_number": "0001234", "invoice_date": stocked["today"].strftime("%d/%m/%Y"),
            "lines-0-drug": "T.PARA500", "lines-0-lot_number": "k100", "lines-0-expiry_date": expiry,
            "lines-0-quantity": "1000", "lines-0-unit_cost": "280",
            "lines-2-drug": "T.PARA500", "lines-2-lot_number": "K101", "lines-2-expiry_date": "31/02/2027",
            "lines-2-quantity": "10", "lines-2-unit_cost": "280"}
    before = _counts(db_session)
    bad = pharmacist.post("/pharmacy/receipts", data=form)
    assert bad.status_code == 422
    html = bad.get_data(as_text=True)
    assert 'value="K101"' in html and 'value="k100"' in html  # what was typed comes back
    assert _counts(db_session) == before
    form["lines-2-expiry_date"] = expiry
    ok = pharmacist.post("/pharmacy/receipts", data=form)
    assert ok.status_code == 302 and "w=KHO" in ok.headers["Location"]
    assert "K100" in pharmacist.get(ok.headers["Location"]).get_data(as_text=True)
    receipt = db_session.scalar(select(GoodsReceipt).where(GoodsReceipt.invoice_number == "0001234"))
    assert receipt.total_cost == 1010 * 280 and len(receipt.lines) == 2


def test_return_screen_puts_units_back_into_their_lot(pharmacist, stocked, db_session):
    result = stock.dispense(db_session, PHARMACIST, stocked["pharmacy"], stocked["drug"], 3, today=stocked["today"],
                            reference_type="prescription_line", reference_id=77)
    db_session.commit()
    movement = result.movements[0]
    html = pharmacist.get("/pharmacy/returns?w=NT&reference_id=77").get_data(as_text=True)
    assert f"/pharmacy/movements/{movement.id}/return" in html
    token = csrf_token(pharmacist, "/pharmacy/returns?w=NT")
    too_much = pharmacist.post(f"/pharmacy/movements/{movement.id}/return",
                               data={"csrf_token": token, "quantity": "4", "reason": "Thừa"})
    assert too_much.status_code == 422
    ok = pharmacist.post(f"/pharmacy/movements/{movement.id}/return",
                         data={"csrf_token": token, "quantity": "2", "reason": "Người bệnh trả lại"})
    assert ok.status_code == 302
    db_session.expire_all()
    assert stock.returnable(db_session, movement) == 1
    api = pharmacist.post(f"/api/v1/pharmacy/movements/{movement.id}/return", json={"quantity": "1"},
                          headers={"X-CSRFToken": token})
    assert api.status_code == 200 and api.json["kind"] == "return" and api.json["lot_number"] == "SOON"


def test_expiry_report_screen_and_api(pharmacist, stocked):
    html = pharmacist.get("/pharmacy/expiry?days=60").get_data(as_text=True)
    assert "SOON" in html and "LATE" not in html
    rows = pharmacist.get("/api/v1/pharmacy/expiry?days=60").json
    assert [(r["lot_number"], r["days_left"], r["expired"]) for r in rows] == [("SOON", 30, False)]


def test_json_api_receipt_stock_transfer_and_openapi(pharmacist, stocked):
    token = csrf_token(pharmacist, "/pharmacy")
    headers = {"X-CSRFToken": token}
    expiry = (stocked["today"] + timedelta(days=300)).isoformat()
    created = pharmacist.post("/api/v1/pharmacy/receipts", headers=headers, json={
        "warehouse": "KHO", "supplier": "NCC", "invoice_number": "HD-API",
        "lines": [{"drug": "T.PARA500", "lot_number": "API1", "expiry_date": expiry, "quantity": "50",
                   "unit_cost": "310.5"}]})
    assert created.status_code == 201 and created.json["total_cost"] == "15525.000"
    again = pharmacist.post("/api/v1/pharmacy/receipts", headers=headers, json={
        "warehouse": "KHO", "supplier": "NCC", "invoice_number": "HD-API",
        "lines": [{"drug": "T.PARA500", "lot_number": "API2", "expiry_date": expiry, "quantity": "5",
                   "unit_cost": "1"}]})
    assert again.status_code == 422 and again.json["error"]["code"] == "duplicate_invoice"
    moved = pharmacist.post("/api/v1/pharmacy/transfer", headers=headers,
                            json={"source": "KHO", "destination": "NT", "drug": "T.PARA500", "quantity": "10"})
    assert moved.status_code == 200 and [m["quantity"] for m in moved.json] == ["-10.000", "10.000"]
    nt = pharmacist.get("/api/v1/pharmacy/warehouses/NT/stock").json
    assert nt[0]["usable"] == "35.000" and [lot["lot_number"] for lot in nt[0]["lots"]] == ["SOON", "API1", "LATE"]
    assert pharmacist.get("/api/v1/pharmacy/warehouses/NOPE/stock").status_code == 404
    bad = pharmacist.post("/api/v1/pharmacy/dispense", headers=headers,
                          json={"warehouse": "NT", "drug": "T.PARA500", "quantity": "abc"})
    assert bad.status_code == 422 and bad.json["error"]["field"] == "quantity"
    paths = pharmacist.get("/api/v1/openapi.json").json["paths"]
    assert {"/pharmacy/dispense", "/pharmacy/receipts", "/pharmacy/expiry",
            "/pharmacy/warehouses/{code}/stock"} <= set(paths)


def test_only_the_pharmacy_may_dispense(client, make_user, stocked, db_session):
    make_user("tiepdon.ph", "receptionist")
    login(client, "tiepdon.ph")
    assert client.get("/pharmacy").status_code == 403
    token = csrf_token(client, "/reception")
    before = _counts(db_session)
    assert client.post("/pharmacy/dispense", data={"csrf_token": token, "warehouse": "NT", "drug": "T.PARA500",
                                                   "quantity": "1"}).status_code == 403
    assert _counts(db_session) == before


def test_nav_entry_for_pharmacists(pharmacist, stocked):
    assert 'href="/pharmacy"' in pharmacist.get("/").get_data(as_text=True)


def test_parse_day():
    from his.web.pharmacy import parse_day

    assert parse_day("31/12/2027") == date(2027, 12, 31) == parse_day("2027-12-31")
    assert parse_day(" ") is None
    with pytest.raises(ValueError):
        parse_day("31/02/2027")

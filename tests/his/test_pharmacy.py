"""Pharmacy stock operations on PostgreSQL: receipts, FEFO dispensing, expired lots, returns,
transfers, the reports, and bad input that changes nothing."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from core.audit import Actor
from his import stock
from his.catalog import search_form
from his.models.catalog import Drug
from his.models.pharmacy import GoodsReceipt, Lot, PharmacyStock, StockMovement, Warehouse
from his.stock import ReceiptLine, StockError

PHARMACIST = Actor(id=None, name="duocsi", ip="10.0.0.9")
TODAY = date(2026, 12, 1)


def make_drug(session, code="T.PARA500", name="Paracetamol 500 mg", unit="viên") -> Drug:
    drug = Drug(code=code, name=name, name_folded=search_form(name), unit=unit, active_ingredient=name.split()[0],
                active=True)
    session.add(drug)
    session.flush()
    return drug


def make_warehouse(session, code="NT", name="Quầy cấp phát ngoại trú", kind="dispensing") -> Warehouse:
    warehouse = Warehouse(code=code, name=name, kind=kind, active=True)
    session.add(warehouse)
    session.flush()
    return warehouse


@pytest.fixture
def drug(db_session):
    return make_drug(db_session)


@pytest.fixture
def pharmacy(db_session):
    return make_warehouse(db_session)


def receive(session, warehouse, drug, lots, invoice="HD001"):
    """lots: [(lot number, expiry, quantity)] at 300 ₫ a unit."""
    return stock.receive(session, PHARMACIST, warehouse,
                         [ReceiptLine(drug, n, e, q, "300") for n, e, q in lots],
                         supplier="Công ty Dược phẩm Trung ương 1", invoice_number=invoice, today=TODAY)


def on_hand(session, warehouse, lot_number) -> Decimal:
    return session.scalar(select(PharmacyStock.on_hand).join(Lot).where(
        PharmacyStock.warehouse_id == warehouse.id, Lot.lot_number == lot_number).execution_options(
        populate_existing=True))


def snapshot(session) -> tuple:
    session.expire_all()
    return (sorted((s.id, s.on_hand) for s in session.scalars(select(PharmacyStock))),
            session.scalar(select(func.count()).select_from(StockMovement)),
            session.scalar(select(func.count()).select_from(GoodsReceipt)),
            session.scalar(select(func.count()).select_from(Lot)))


def test_receipt_creates_lots_stock_and_a_ledger_that_adds_up(db_session, pharmacy, drug):
    receipt = receive(db_session, pharmacy, drug, [("a1", date(2027, 6, 30), "100"), ("B2", date(2027, 3, 31), 50)])
    assert receipt.total_cost == Decimal("45000.000") and [line.line_no for line in receipt.lines] == [1, 2]
    assert on_hand(db_session, pharmacy, "A1") == 100  # lot numbers are kept upper case
    assert on_hand(db_session, pharmacy, "B2") == 50
    # A second receipt of the same lot adds to the same row.
    receive(db_session, pharmacy, drug, [("A1", date(2027, 6, 30), 20)], invoice="HD002")
    assert on_hand(db_session, pharmacy, "A1") == 120
    for row in db_session.scalars(select(PharmacyStock)):
        ledger = db_session.scalar(select(func.coalesce(func.sum(StockMovement.quantity), 0))
                                   .where(StockMovement.stock_id == row.id))
        assert ledger == row.on_hand
    assert db_session.scalar(select(func.count()).select_from(Lot)) == 2


def test_dispense_picks_first_expiry_first(db_session, pharmacy, drug, monkeypatch):
    emitted = []
    monkeypatch.setattr(stock.events, "emit",
                        lambda session, name, payload, actor=None: emitted.append((name, payload)))
    receive(db_session, pharmacy, drug, [("LATE", date(2028, 1, 31), 100), ("SOON", date(2027, 9, 30), 10),
                                         ("MID", date(2027, 12, 31), 10)])
    result = stock.dispense(db_session, PHARMACIST, pharmacy, drug, 15, today=TODAY,
                            reference_type="prescription_line", reference_id=42)
    assert [(m.lot.lot_number, m.quantity) for m in result.movements] == [("SOON", -10), ("MID", -5)]
    assert result.quantity == 15 and result.warnings == []
    assert on_hand(db_session, pharmacy, "SOON") == 0 and on_hand(db_session, pharmacy, "MID") == 5
    assert on_hand(db_session, pharmacy, "LATE") == 100
    (name, payload), = emitted
    assert name == "his.stock.dispensed"
    assert payload["reference_type"] == "prescription_line" and payload["reference_id"] == 42
    assert [(line["lot_number"], line["quantity"]) for line in payload["lines"]] == [("SOON", "10.000"),
                                                                                    ("MID", "5.000")]
    assert all(m.reference_id == 42 and m.on_hand_after >= 0 for m in result.movements)


def test_an_expired_lot_is_never_picked(db_session, pharmacy, drug):
    receive(db_session, pharmacy, drug, [("OLD", date(2027, 1, 31), 50), ("NEW", date(2028, 1, 31), 5)])
    later = date(2027, 2, 1)  # OLD expired yesterday, and would be first by FEFO
    result = stock.dispense(db_session, PHARMACIST, pharmacy, drug, 5, today=later)
    assert [m.lot.lot_number for m in result.movements] == ["NEW"]
    with pytest.raises(StockError) as err:
        stock.dispense(db_session, PHARMACIST, pharmacy, drug, 1, today=later)
    assert err.value.code == "insufficient_stock" and err.value.params == {"requested": "1.000", "available": "0.000"}
    assert on_hand(db_session, pharmacy, "OLD") == 50
    # On its expiry date a lot may still be used.
    assert stock.dispense(db_session, PHARMACIST, pharmacy, drug, 1, today=date(2027, 1, 31)).movements[0].lot \
        .lot_number == "OLD"


def test_near_expiry_lots_are_dispensed_with_a_warning(db_session, pharmacy, drug):
    soon = TODAY + timedelta(days=stock.NEAR_EXPIRY_DAYS - 1)
    receive(db_session, pharmacy, drug, [("SOON", soon, 3), ("FAR", date(2029, 1, 1), 10)])
    result = stock.dispense(db_session, PHARMACIST, pharmacy, drug, 5, today=TODAY)
    assert len(result.warnings) == 1
    assert "SOON" in str(result.warnings[0]) and f"(in {stock.NEAR_EXPIRY_DAYS - 1} days)" in str(result.warnings[0])


def test_dispensing_more_than_the_stock_is_refused_in_vietnamese_and_changes_nothing(app, db_session, pharmacy, drug):
    receive(db_session, pharmacy, drug, [("L1", date(2027, 6, 30), 12), ("L2", date(2027, 8, 31), "8.5")])
    db_session.commit()
    before = snapshot(db_session)
    with pytest.raises(StockError) as err:
        stock.dispense(db_session, PHARMACIST, pharmacy, drug, 30, today=TODAY, reference_type="prescription_line",
                       reference_id=7)
    assert (err.value.code, err.value.field) == ("insufficient_stock", "quantity")
    assert err.value.params == {"requested": "30.000", "available": "20.500"}
    with app.test_request_context():
        assert str(err.value) == ("Không đủ tồn kho Paracetamol 500 mg tại Quầy cấp phát ngoại trú: yêu cầu 30 viên, "
                                  "chỉ còn 20,5 viên dùng được.")
    db_session.rollback()
    assert snapshot(db_session) == before
    assert not db_session.info.get("vnhis.audit.pending")


@pytest.mark.parametrize("quantity, code", [(0, "invalid_quantity"), (-3, "invalid_quantity"),
                                            ("abc", "invalid_quantity"), ("1.0005", "invalid_quantity")])
def test_bad_dispense_quantities_change_nothing(db_session, pharmacy, drug, quantity, code):
    receive(db_session, pharmacy, drug, [("L1", date(2027, 6, 30), 12)])
    before = snapshot(db_session)
    with pytest.raises(StockError) as err:
        stock.dispense(db_session, PHARMACIST, pharmacy, drug, quantity, today=TODAY)
    assert (err.value.code, err.value.field) == (code, "quantity")
    assert snapshot(db_session) == before


def test_fractional_quantities_are_exact(db_session, pharmacy, drug):
    receive(db_session, pharmacy, drug, [("L1", date(2027, 6, 30), "1")])
    for _ in range(10):
        stock.dispense(db_session, PHARMACIST, pharmacy, drug, "0,1", today=TODAY)
    assert on_hand(db_session, pharmacy, "L1") == Decimal("0")


def test_a_return_goes_back_to_its_lot_and_never_more_than_was_dispensed(db_session, pharmacy, drug):
    receive(db_session, pharmacy, drug, [("A", date(2027, 3, 31), 4), ("B", date(2027, 9, 30), 10)])
    result = stock.dispense(db_session, PHARMACIST, pharmacy, drug, 6, today=TODAY, reference_type="prescription_line",
                            reference_id=9)
    from_b = result.movements[1]
    assert (from_b.lot.lot_number, from_b.quantity) == ("B", -2)
    back = stock.return_dispensed(db_session, PHARMACIST, from_b, 1, reason="Người bệnh đổi thuốc")
    assert (back.kind, back.lot_id, back.quantity, back.reference_id) == ("return", from_b.lot_id, 1, 9)
    assert on_hand(db_session, pharmacy, "B") == 9 and on_hand(db_session, pharmacy, "A") == 0
    before = snapshot(db_session)
    with pytest.raises(StockError) as err:
        stock.return_dispensed(db_session, PHARMACIST, from_b, 2)
    assert err.value.code == "return_too_large" and err.value.params == {"left": "1.000"}
    assert snapshot(db_session) == before
    stock.return_dispensed(db_session, PHARMACIST, from_b, 1)
    assert stock.returnable(db_session, from_b) == 0
    with pytest.raises(StockError) as err:
        stock.return_dispensed(db_session, PHARMACIST, back, 1)
    assert err.value.code == "not_a_dispense"


def test_transfer_moves_lots_first_expiry_first_between_warehouses(db_session, pharmacy, drug):
    store = make_warehouse(db_session, "KHO", "Kho chính", "main_store")
    receive(db_session, store, drug, [("A", date(2027, 3, 31), 4), ("B", date(2027, 9, 30), 10),
                                      ("X", date(2026, 1, 1) + timedelta(days=400), 5)])
    pairs = stock.transfer(db_session, PHARMACIST, store, pharmacy, drug, 12, today=TODAY, reason="Bổ sung quầy")
    # X (expiry 05/02/2027) goes first, then A, then 3 of B.
    assert [(o.lot.lot_number, o.quantity, i.quantity) for o, i in pairs] == [("X", -5, 5), ("A", -4, 4), ("B", -3, 3)]
    assert on_hand(db_session, pharmacy, "B") == 3 and on_hand(db_session, store, "B") == 7
    result = stock.dispense(db_session, PHARMACIST, pharmacy, drug, 12, today=TODAY)
    assert result.quantity == 12
    with pytest.raises(StockError) as err:
        stock.transfer(db_session, PHARMACIST, store, pharmacy, drug, 8, today=TODAY)
    assert err.value.code == "insufficient_stock" and err.value.params["available"] == "7.000"
    with pytest.raises(StockError) as err:
        stock.transfer(db_session, PHARMACIST, store, store, drug, 1, today=TODAY)
    assert err.value.code == "same_warehouse"


def test_adjust_and_destroy(db_session, pharmacy, drug):
    receive(db_session, pharmacy, drug, [("A", date(2027, 3, 31), 10)])
    lot = db_session.scalar(select(Lot).where(Lot.lot_number == "A"))
    with pytest.raises(StockError) as err:
        stock.adjust(db_session, PHARMACIST, pharmacy, lot, 8, reason=" ")
    assert err.value.field == "reason"
    movement = stock.adjust(db_session, PHARMACIST, pharmacy, lot, 8, reason="Kiểm kê tháng 12")
    assert (movement.kind, movement.quantity, movement.on_hand_after) == ("adjustment", -2, 8)
    assert stock.adjust(db_session, PHARMACIST, pharmacy, lot, 8, reason="Kiểm kê lại") is None
    with pytest.raises(StockError) as err:
        stock.destroy(db_session, PHARMACIST, pharmacy, lot, 9, reason="Vỡ")
    assert err.value.code == "insufficient_stock"
    stock.destroy(db_session, PHARMACIST, pharmacy, lot, 8, reason="Vỡ")
    assert on_hand(db_session, pharmacy, "A") == 0


@pytest.mark.parametrize("line, code, field", [
    ({"lot_number": " "}, "lot_required", "lines-1-lot_number"),
    ({"expiry_date": None}, "expiry_required", "lines-1-expiry_date"),
    ({"expiry_date": TODAY - timedelta(days=1)}, "expired_on_receipt", "lines-1-expiry_date"),
    ({"expiry_date": date(2027, 7, 1)}, "lot_expiry_mismatch", "lines-1-expiry_date"),
    ({"quantity": "0"}, "invalid_quantity", "lines-1-quantity"),
    ({"unit_cost": "-1"}, "invalid_cost", "lines-1-unit_cost"),
    ({"drug": None}, "unknown_drug", "lines-1-drug"),
    ({"lot_number": "OK1"}, "duplicate_line", "lines-1-lot_number"),
])
def test_a_bad_receipt_line_saves_nothing(db_session, pharmacy, drug, line, code, field):
    receive(db_session, pharmacy, drug, [("OLD", date(2027, 6, 30), 5)])
    before = snapshot(db_session)
    good = ReceiptLine(drug, "OK1", date(2027, 6, 30), 10, 100)
    values = {"drug": drug, "lot_number": "OLD", "expiry_date": date(2027, 6, 30), "quantity": 3, "unit_cost": 1}
    values.update(line)
    if code == "duplicate_line":
        values["expiry_date"] = good.expiry_date
    with pytest.raises(StockError) as err:
        stock.receive(db_session, PHARMACIST, pharmacy, [good, ReceiptLine(**values)], supplier="NCC",
                      invoice_number="HD-X", today=TODAY)
    assert (err.value.code, err.value.field) == (code, field)
    assert snapshot(db_session) == before


def test_the_same_invoice_cannot_be_received_twice(db_session, pharmacy, drug):
    receive(db_session, pharmacy, drug, [("A", date(2027, 6, 30), 5)], invoice="HD7")
    before = snapshot(db_session)
    with pytest.raises(StockError) as err:
        receive(db_session, pharmacy, drug, [("B", date(2027, 6, 30), 5)], invoice="HD7")
    assert (err.value.code, err.value.field) == ("duplicate_invoice", "invoice_number")
    assert snapshot(db_session) == before


def test_the_database_refuses_negative_stock_whatever_the_code_does(db_session, pharmacy, drug):
    receive(db_session, pharmacy, drug, [("A", date(2027, 6, 30), 5)])
    with pytest.raises(IntegrityError, match="ck_pharmacy_stock_on_hand"), db_session.begin_nested():
        db_session.execute(text("UPDATE pharmacy_stock SET on_hand = on_hand - 6"))


def test_reports(db_session, pharmacy, drug):
    other = make_drug(db_session, "T.AMOX500", "Amoxicillin 500 mg")
    # Lots that expired before today cannot be received: receive them while they were valid.
    stock.receive(db_session, PHARMACIST, pharmacy, [ReceiptLine(drug, "OLD", date(2026, 11, 30), 3, 1)],
                  supplier="NCC", invoice_number="HD-OLD", today=date(2026, 10, 1))
    receive(db_session, pharmacy, drug, [("SOON", date(2027, 1, 15), 4), ("FAR", date(2028, 1, 1), 10)])
    receive(db_session, pharmacy, other, [("AM1", date(2027, 5, 1), 20)], invoice="HD2")
    rows = stock.expiry_report(db_session, today=TODAY, within_days=60)
    assert [(r.stock.lot.lot_number, r.days_left, r.expired) for r in rows] == [("OLD", -1, True), ("SOON", 45, False)]
    report = stock.stock_on_hand(db_session, pharmacy, today=TODAY)
    assert [e.drug.code for e in report] == ["T.AMOX500", "T.PARA500"]
    para = report[1]
    assert (para.on_hand, para.usable, para.expired, para.next_expiry) == (17, 14, 3, date(2027, 1, 15))
    assert [s.lot.lot_number for s in para.lots] == ["OLD", "SOON", "FAR"]
    assert [e.drug.code for e in stock.stock_on_hand(db_session, pharmacy, today=TODAY, query="amox")] == ["T.AMOX500"]
    assert stock.usable_quantity(db_session, pharmacy, drug, today=TODAY) == 14


def test_format_quantity():
    assert [stock.format_quantity(Decimal(v)) for v in ("1200", "2.5", "0.125", "20.500", "-3")] == [
        "1.200", "2,5", "0,125", "20,5", "-3"]


def test_demo_seed_stocks_the_store_and_the_pharmacy_once(db_session):
    from his import demo_catalog, demo_pharmacy

    demo_catalog.seed(db_session, PHARMACIST)
    demo_pharmacy.seed(db_session, PHARMACIST, today=TODAY)
    before = snapshot(db_session)
    demo_pharmacy.seed(db_session, PHARMACIST, today=TODAY)
    assert snapshot(db_session) == before
    houses = {w.code: w for w in db_session.scalars(select(Warehouse))}
    assert {"KHO", "NT", "TT-KNOI"} <= set(houses)
    drugs = db_session.scalar(select(func.count()).select_from(Drug))
    assert len(stock.stock_on_hand(db_session, houses["NT"], today=TODAY)) == drugs
    near = stock.expiry_report(db_session, today=TODAY)
    assert near and all(not r.expired for r in near)
    for row in db_session.scalars(select(PharmacyStock)):
        ledger = db_session.scalar(select(func.coalesce(func.sum(StockMovement.quantity), 0))
                                   .where(StockMovement.stock_id == row.id))
        assert ledger == row.on_hand

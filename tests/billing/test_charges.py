"""Charges from what his recorded: completed orders, dispensed drugs and returns, reversals, bed days,
supplies and adjustments; priced on the service day; a missing price is kept and named, never lost."""

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from billing import bills, charges
from billing.charges import ChargeError
from billing.models import Charge, DepartmentBedService
from core.db import utcnow
from core.models import AuditEvent
from his import admission, catalog, dispensing, orders, stock
from his.models.catalog import Drug, Service
from his.models.pharmacy import Warehouse
from tests.billing.conftest import LEVEL, SYSTEM, today_local
from tests.his.conftest import DESK, TODAY

D = Decimal


def _count(session, model=Charge):
    return session.scalar(select(func.count()).select_from(model))


def _lab(session, visit, *codes):
    order = orders.place_order(session, DESK, visit["encounter"], "lab", [{"code": c, "quantity": "1"} for c in codes],
                               on=TODAY)
    orders.complete(session, DESK, order)
    return order


def test_a_completed_lab_order_is_charged_at_the_price_of_the_service_day(db_session, visit):
    ctm = db_session.scalar(select(Service).where(Service.code == "XN.CTM"))
    catalog.set_price(db_session, DESK, ctm, D("50000"), today_local(), "bhyt")  # new price from today
    order = orders.place_order(db_session, DESK, visit["encounter"], "lab", [{"code": "XN.CTM", "quantity": "1"}],
                               on=TODAY - timedelta(days=2))
    assert order.lines[0].unit_price == D("46200")  # the order day's snapshot
    assert _count(db_session) == 0  # nothing is charged before it is done
    orders.complete(db_session, DESK, order)
    (charge,) = charges.of_encounter(db_session, visit["encounter"].id)
    assert (charge.item_code, charge.bhyt_code, charge.cost_group, charge.payer) == ("XN.CTM", "22.0120.1370", 1,
                                                                                     "bhyt")
    assert (charge.unit_price, charge.amount, charge.status, charge.order_id) == (D("50000"), D("50000.00"), "priced",
                                                                                 order.id)
    assert charge.service_day == today_local()


def test_the_same_event_twice_charges_once(db_session, visit):
    order = _lab(db_session, visit, "XN.GLU")
    payload = {"kind": "lab", "order_id": order.id, "executed_at": None}
    charges._order_completed(db_session, payload)
    assert _count(db_session) == 1


def test_a_price_missing_on_the_service_day_is_kept_with_its_reason(db_session, visit):
    service = Service(code="XN.MOI", bhyt_code="23.9999.0000", name="Xét nghiệm mới", name_folded="xet nghiem moi",
                      unit="lần", group="Xét nghiệm", active=True)
    db_session.add(service)
    db_session.flush()
    catalog.set_price(db_session, DESK, service, D("30000"), TODAY - timedelta(days=30), "bhyt")
    catalog.set_price(db_session, DESK, service, D("30000"), TODAY - timedelta(days=30), "fee")
    row = catalog.price_row(db_session, service, TODAY, "bhyt")
    row.valid_to = today_local() - timedelta(days=1)  # the price list ended yesterday
    _lab(db_session, visit, "XN.MOI", "XN.GLU")
    missing = db_session.scalar(select(Charge).where(Charge.item_code == "XN.MOI"))
    day = today_local().strftime("%d/%m/%Y")
    assert (missing.status, missing.unit_price, missing.amount) == ("unpriced", None, None)
    assert missing.problem == f"No BHYT price for «XN.MOI» on {day}."
    view = bills.compute(db_session, SYSTEM, visit["encounter"], LEVEL)
    assert view.unpriced == [missing] and view.bill.total == D("21500.00")  # the priced line only
    with pytest.raises(ChargeError) as err:
        charges.reprice(db_session, DESK, missing)
    assert (err.value.code, str(err.value)) == ("price_missing", f"No BHYT price for «XN.MOI» on {day}.")
    assert missing.status == "unpriced"
    catalog.set_price(db_session, DESK, service, D("32000"), today_local(), "bhyt")
    charges.reprice(db_session, DESK, missing)
    assert (missing.status, missing.amount, missing.problem) == ("priced", D("32000.00"), None)


def test_a_reversed_order_is_credited(db_session, visit):
    order = _lab(db_session, visit, "XN.GLU", "XN.URE")
    orders.reverse(db_session, DESK, order, "Chỉ định nhầm")
    rows = charges.of_encounter(db_session, visit["encounter"].id)
    assert sorted((r.item_code, r.quantity, r.amount) for r in rows) == [
        ("XN.GLU", D("-1.000"), D("-21500.00")), ("XN.GLU", D("1.000"), D("21500.00")),
        ("XN.URE", D("-1.000"), D("-21500.00")), ("XN.URE", D("1.000"), D("21500.00"))]
    assert {r.reason for r in rows if r.credit_of_id} == {"Chỉ định nhầm"}
    assert bills.compute(db_session, SYSTEM, visit["encounter"], LEVEL).bill.total == D("0.00")


def test_dispensed_drugs_are_charged_per_lot_and_returns_credited(db_session, visit):
    warehouse = Warehouse(code="NT", name="Quầy cấp phát", kind="dispensing", active=True)
    db_session.add(warehouse)
    db_session.flush()
    drug = db_session.scalar(select(Drug).where(Drug.code == "T.AMOX500"))
    stock.receive(db_session, DESK, warehouse, supplier="Công ty Dược", invoice_number="HD-1", today=TODAY,
                  lines=[stock.ReceiptLine(drug, "A1", TODAY + timedelta(days=100), "4", "900"),
                         stock.ReceiptLine(drug, "B1", TODAY + timedelta(days=300), "20", "900")])
    order = orders.place_order(db_session, DESK, visit["encounter"], "prescription",
                               [{"code": "T.AMOX500", "quantity": "10", "dose": "1", "frequency": 2, "days": 5}],
                               on=TODAY)
    results = dispensing.dispense_prescription(db_session, DESK, warehouse, order, today=TODAY)
    rows = charges.of_encounter(db_session, visit["encounter"].id)
    assert [(r.item_code, r.quantity, r.amount, r.cost_group) for r in rows] == [
        ("T.AMOX500", D("4.000"), D("4400.00"), 4), ("T.AMOX500", D("6.000"), D("6600.00"), 4)]
    stock.return_dispensed(db_session, DESK, results[0].movements[1], "2", reason="Thừa")
    credit = charges.of_encounter(db_session, visit["encounter"].id)[-1]
    assert (credit.quantity, credit.amount, credit.credit_of_id) == (D("-2.000"), D("-2200.00"), rows[1].id)


def test_bed_days_from_the_stays(db_session, clinic):
    from tests.billing.conftest import make_visit, make_ward

    ward = make_ward(db_session)
    made = make_visit(db_session, clinic, kind="inpatient")
    encounter = made["encounter"]
    start = utcnow() - timedelta(days=3)
    encounter.started_at = start - timedelta(hours=1)
    admission.admit(db_session, DESK, encounter, department=ward["department"], bed=ward["bed"], reason="Viêm phổi",
                    at=start)
    found = charges.charge_bed_days(db_session, DESK, encounter, until=start + timedelta(hours=2))
    assert [(c.status, c.problem) for c in found] == [("unpriced", "Department «NOI» has no bed-day service.")]
    service = db_session.scalar(select(Service).where(Service.code == "GB.NOI"))
    db_session.add(DepartmentBedService(department_id=ward["department"].id, service_id=service.id))
    db_session.flush()
    charges.reprice(db_session, DESK, found[0])
    assert (found[0].item_code, found[0].amount, found[0].bed_code) == ("GB.NOI", D("199100.00"), "H001")
    admission.discharge(db_session, DESK, encounter, discharge_type="home", outcome="cured",
                        at=start + timedelta(days=3))
    beds = [c for c in charges.of_encounter(db_session, encounter.id) if c.item_kind == "bed"]
    assert len(beds) == len(charges.bed_days(start, start + timedelta(days=3))) == 3
    assert {(c.cost_group, c.amount) for c in beds} == {(15, D("199100.00"))}


def test_supplies_and_manual_adjustments(db_session, visit):
    encounter = visit["encounter"]
    supply = charges.add_supply(db_session, DESK, encounter, "VT.KL22", "2")
    assert (supply.item_kind, supply.amount, supply.cost_group) == ("supply", D("19000.00"), 10)
    with pytest.raises(ChargeError) as err:
        charges.add_supply(db_session, DESK, encounter, "VT.KHONGCO", "1")
    assert str(err.value) == "Supply «VT.KHONGCO» is not in the catalogue."
    before = _count(db_session)
    audits = _count(db_session, AuditEvent)
    for amount, reason, code in [("-5000", "", "reason_required"), ("abc", "Giảm trừ", "bad_amount"),
                                 ("0", "Giảm trừ", "bad_amount")]:
        with pytest.raises(ChargeError) as err:
            charges.adjust(db_session, DESK, encounter, amount, reason)
        assert err.value.code == code
    assert str(ChargeError("x", None, "y")) == "y"
    assert (_count(db_session), _count(db_session, AuditEvent)) == (before, audits)
    line = charges.adjust(db_session, DESK, encounter, "-5.000", "Giảm trừ theo quyết định của giám đốc")
    assert (line.amount, line.in_list, line.reason) == (D("-5000.00"), False, "Giảm trừ theo quyết định của giám đốc")

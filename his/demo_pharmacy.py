"""Demo pharmacy stock: a main store, an outpatient dispensing pharmacy and a ward cabinet; two goods
receipts of the demo drugs with two or three lots each (some expiring within the near-expiry
window), and a first transfer from the store to the pharmacy. Lot numbers, suppliers and costs are
made up for the demo. Running `seed` again changes nothing.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import Actor
from his import demo_catalog, stock
from his.models.catalog import Drug
from his.models.org import Department
from his.models.pharmacy import Warehouse
from his.stock import ReceiptLine

# code, name, kind, department code
WAREHOUSES = [("KHO", "Kho chính Khoa Dược", "main_store", "KDUOC"),
              ("NT", "Quầy cấp phát thuốc ngoại trú", "dispensing", "KDUOC"),
              ("TT-KNOI", "Tủ trực Khoa Nội tổng hợp", "ward_cabinet", "KNOI")]
SUPPLIERS = [("Công ty CP Dược phẩm Trung ương 1 (demo)", "DEMO-0001"),
             ("Công ty TNHH Dược phẩm Hà Nội (demo)", "DEMO-0002")]
COST_SHARE = Decimal("0.85")  # demo purchase cost: 85 % of the demo sale price


def _quantity(unit: str, n: int) -> int:
    base = {"viên": 2000, "lít": 50000, "chai": 200, "lọ": 150, "ống": 300}.get(unit, 500)
    return base * (n + 1)


def seed(session: Session, actor: Actor, *, today: date | None = None) -> None:
    if session.scalar(select(Warehouse.id).where(Warehouse.code == "KHO")) is not None:
        return
    today = today or date.today()
    depts = {d.code: d.id for d in session.scalars(select(Department))}
    houses = {}
    for code, name, kind, dept in WAREHOUSES:
        houses[code] = Warehouse(code=code, name=name, kind=kind, department_id=depts.get(dept), active=True)
        session.add(houses[code])
    session.flush()
    prices = {row[0]: Decimal(row[11]) for row in demo_catalog.DRUGS}
    drugs = session.scalars(select(Drug).where(Drug.code.in_(list(prices))).order_by(Drug.code)).all()
    # Receipt 1: a lot near expiry (every third drug) and a lot a year out; receipt 2: a later lot.
    first, second = [], []
    for i, drug in enumerate(drugs):
        cost = (prices[drug.code] * COST_SHARE).quantize(Decimal("1"))
        tag = drug.code.removeprefix("T.")[:6]
        if i % 3 == 0:
            first.append(ReceiptLine(drug, f"{tag}-N{i:02d}", today + timedelta(days=20 + 5 * (i % 10)),
                                     _quantity(drug.unit, 0) // 4, cost))
        first.append(ReceiptLine(drug, f"{tag}-A{i:02d}", today + timedelta(days=300 + 7 * i),
                                 _quantity(drug.unit, 1), cost))
        second.append(ReceiptLine(drug, f"{tag}-B{i:02d}", today + timedelta(days=700 + 3 * i),
                                  _quantity(drug.unit, 0), cost))
    for (supplier, invoice), lines in zip(SUPPLIERS, (first, second), strict=True):
        if lines:
            stock.receive(session, actor, houses["KHO"], lines, supplier=supplier, invoice_number=invoice,
                          invoice_date=today, today=today, note="Dữ liệu minh họa")
    for drug in drugs:  # stock the pharmacy and the ward cabinet from the store, first expiry first
        stock.transfer(session, actor, houses["KHO"], houses["NT"], drug, _quantity(drug.unit, 0) // 2, today=today,
                       reason="Dữ liệu minh họa")
        if drug.unit in ("chai", "lọ", "ống"):
            stock.transfer(session, actor, houses["KHO"], houses["TT-KNOI"], drug, 20, today=today,
                           reason="Dữ liệu minh họa")

"""The stock invariants with real commits: concurrent dispenses of the last units never oversell, and
a failure after the decrement rolls the decrement and its movements back together."""

from __future__ import annotations

import threading
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import close_all_sessions

from core.db import make_engine, make_session_factory
from core.models import AuditEvent
from his import stock
from his.models.catalog import Drug
from his.models.pharmacy import PharmacyStock, StockMovement, Warehouse
from his.stock import ReceiptLine, StockError
from tests.his.test_pharmacy import PHARMACIST, TODAY, make_drug, make_warehouse


@pytest.fixture
def committed(committed_db_url):
    engine = make_engine(committed_db_url, pool_size=20, max_overflow=5)
    factory = make_session_factory(engine)
    with factory() as session:
        drug, pharmacy = make_drug(session), make_warehouse(session)
        # Three lots of which one expired: only 4 + 6 = 10 units may go out.
        stock.receive(session, PHARMACIST, pharmacy, [ReceiptLine(drug, "OLD", date(2026, 12, 5), 50, 1)],
                      supplier="NCC", invoice_number="HD-OLD", today=date(2026, 11, 1))
        stock.receive(session, PHARMACIST, pharmacy, [ReceiptLine(drug, "A", date(2027, 3, 31), 4, 1),
                                                      ReceiptLine(drug, "B", date(2027, 9, 30), 6, 1)],
                      supplier="NCC", invoice_number="HD-1", today=TODAY)
        session.commit()
        ids = (drug.id, pharmacy.id)
    yield factory, ids
    close_all_sessions()
    engine.dispose()


def _totals(factory, pharmacy_id):
    with factory() as session:
        rows = session.scalars(select(PharmacyStock).where(PharmacyStock.warehouse_id == pharmacy_id)).all()
        ledger = {r.id: session.scalar(select(func.sum(StockMovement.quantity))
                                       .where(StockMovement.stock_id == r.id)) for r in rows}
        dispensed = -(session.scalar(select(func.sum(StockMovement.quantity))
                                     .where(StockMovement.kind == "dispense")) or 0)
        return {r.lot.lot_number: r.on_hand for r in rows}, ledger, {r.id: r.on_hand for r in rows}, dispensed


@pytest.mark.parametrize("each, threads", [(1, 24), (3, 16)])
def test_concurrent_dispenses_of_the_last_units_never_oversell(committed, each, threads):
    factory, (drug_id, pharmacy_id) = committed
    later = date(2026, 12, 10)  # lot OLD expired on 05/12: its 50 units must never be touched
    barrier = threading.Barrier(threads)
    won, lost, errors, lock = [], [], [], threading.Lock()

    def take():
        try:
            with factory() as session:
                drug, pharmacy = session.get(Drug, drug_id), session.get(Warehouse, pharmacy_id)
                barrier.wait()
                try:
                    result = stock.dispense(session, PHARMACIST, pharmacy, drug, each, today=later,
                                            reference_type="prescription_line", reference_id=1)
                    session.commit()
                    with lock:
                        won.append(result.quantity)
                except StockError as exc:
                    session.rollback()
                    with lock:
                        lost.append(exc)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=take) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert errors == []
    expected_winners = 10 // each
    assert len(won) == expected_winners and len(lost) == threads - expected_winners
    by_lot, ledger, rows, dispensed = _totals(factory, pharmacy_id)
    assert dispensed == sum(won) == expected_winners * each <= 10
    assert by_lot == {"OLD": 50, "A": 0, "B": Decimal(10 - expected_winners * each)}
    assert ledger == rows and all(v >= 0 for v in rows.values())
    left = Decimal(10 - expected_winners * each)
    for exc in lost:  # every loser saw what was really left when its turn came, never a stale figure
        assert exc.code == "insufficient_stock"
        assert exc.params == {"requested": f"{each}.000", "available": f"{left}.000"}
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)
                              .where(AuditEvent.action == "stock.dispense")) == expected_winners


def test_a_failure_after_the_decrement_rolls_back_both(committed):
    factory, (drug_id, pharmacy_id) = committed
    before = _totals(factory, pharmacy_id)
    with factory() as session, pytest.raises(RuntimeError), session.begin():
        result = stock.dispense(session, PHARMACIST, session.get(Warehouse, pharmacy_id),
                                session.get(Drug, drug_id), 7, today=TODAY)
        assert result.quantity == 7
        raise RuntimeError("the printer of the issue slip failed")  # anything after the dispense
    assert _totals(factory, pharmacy_id) == before
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(StockMovement)
                              .where(StockMovement.kind == "dispense")) == 0
        assert session.scalar(select(func.count()).select_from(AuditEvent)
                              .where(AuditEvent.action == "stock.dispense")) == 0


def test_concurrent_receipts_and_transfers_do_not_deadlock(committed):
    """Receipts into the store and transfers both ways between two warehouses, at once."""
    factory, (drug_id, pharmacy_id) = committed
    with factory() as session:
        store = make_warehouse(session, "KHO", "Kho chính", "main_store")
        drug = session.get(Drug, drug_id)
        stock.receive(session, PHARMACIST, store, [ReceiptLine(drug, "A", date(2027, 3, 31), 100, 1),
                                                   ReceiptLine(drug, "B", date(2027, 9, 30), 100, 1)],
                      supplier="NCC", invoice_number="HD-2", today=TODAY)
        session.commit()
        store_id = store.id
    errors, barrier = [], threading.Barrier(8)

    def work(n):
        try:
            with factory() as session:
                drug = session.get(Drug, drug_id)
                a, b = session.get(Warehouse, store_id), session.get(Warehouse, pharmacy_id)
                barrier.wait()
                for i in range(10):
                    source, target = (a, b) if (n + i) % 2 else (b, a)
                    try:
                        stock.transfer(session, PHARMACIST, source, target, drug, 3, today=TODAY)
                        session.commit()
                    except StockError:
                        session.rollback()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert errors == []
    with factory() as session:
        total = session.scalar(select(func.sum(PharmacyStock.on_hand)))
        assert total == 50 + 10 + 200  # transfers move stock, never make or lose any

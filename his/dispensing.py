"""Dispensing a prescription: each line's remaining quantity leaves the pharmacy first-expiry-first-out,
and the prescription is completed — in one transaction, all lines or none.

What a line has already received is read from the stock movements that reference it (dispenses
less their returns), so a prescription can never be dispensed twice, and a partial dispense (a drug
short today) can be finished later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from core.audit import Actor
from his import orders, stock
from his.models.catalog import Drug
from his.models.orders import Order, OrderLine
from his.models.pharmacy import StockMovement, Warehouse
from his.stock import StockError

REFERENCE = "prescription_line"
OPEN = ("placed", "in_progress")


@dataclass
class LineStatus:
    line: OrderLine
    dispensed: Decimal

    @property
    def remaining(self) -> Decimal:
        return max(self.line.quantity - self.dispensed, Decimal(0))


def line_statuses(session: Session, order: Order) -> list[LineStatus]:
    """Each drug line with what it has received so far (net of returns)."""
    lines = [line for line in order.lines if line.drug_id is not None]
    if not lines:
        return []
    returned = aliased(StockMovement)
    given = dict(session.execute(
        select(StockMovement.reference_id, func.sum(-StockMovement.quantity))
        .where(StockMovement.kind == "dispense", StockMovement.reference_type == REFERENCE,
               StockMovement.reference_id.in_([line.id for line in lines]))
        .group_by(StockMovement.reference_id)).all())
    back = dict(session.execute(
        select(StockMovement.reference_id, func.sum(returned.quantity))
        .join(returned, returned.returns_movement_id == StockMovement.id)
        .where(StockMovement.reference_type == REFERENCE, StockMovement.reference_id.in_([line.id for line in lines]))
        .group_by(StockMovement.reference_id)).all())
    return [LineStatus(line, Decimal(given.get(line.id) or 0) - Decimal(back.get(line.id) or 0)) for line in lines]


def dispense_prescription(session: Session, actor: Actor, warehouse: Warehouse, order: Order, *,
                          today: date) -> list[stock.DispenseResult]:
    """Give out what the prescription still needs; StockError names the first line that cannot be met
    (and nothing is dispensed). The caller locks the order row."""
    if order.kind != "prescription":
        raise StockError("not_prescription", "order", _l("This order is not a prescription."))
    if order.status not in OPEN:
        raise StockError("prescription_closed", "order", _l("This prescription is closed (%(status)s).",
                                                             status=order.status))
    pending = [s for s in line_statuses(session, order) if s.remaining > 0]
    if not pending:
        raise StockError("already_dispensed", "order", _l("Everything on this prescription was already dispensed."))
    results = [stock.dispense(session, actor, warehouse, session.get(Drug, s.line.drug_id), s.remaining, today=today,
                              reference_type=REFERENCE, reference_id=s.line.id) for s in pending]
    orders.complete(session, actor, order)
    return results


def open_prescriptions(session: Session, encounter_ids: list[int]) -> list[Order]:
    return list(session.scalars(select(Order).where(Order.encounter_id.in_(encounter_ids), Order.kind == "prescription",
                                                    Order.status.in_(OPEN)).order_by(Order.ordered_at)))

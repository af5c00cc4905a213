"""Pharmacy stock operations: receive goods, dispense first-expiry-first-out, return a dispense to
its lot, transfer between warehouses, adjust, destroy; the expiry and stock-on-hand reports.

Every change locks the stock rows it touches (SELECT … FOR UPDATE), changes `on_hand` and writes its
movement rows in the caller's transaction, so a dispense and its decrement commit or vanish
together; nothing here commits. The rows a call locks are always locked in one order (stock id
ascending) so that two calls touching the same rows cannot deadlock. On SQLite the write lock taken
at BEGIN IMMEDIATE serialises everything instead.

Bad input raises StockError before anything is written: a call either does all of its work or none.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation

from flask_babel import lazy_gettext as _l
from sqlalchemy import case, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import audit, events
from core.audit import Actor
from his.catalog import search_form
from his.models.catalog import Drug
from his.models.pharmacy import GoodsReceipt, GoodsReceiptLine, Lot, PharmacyStock, StockMovement, Warehouse

# A lot expiring within this many days still goes out (FEFO picks it first) but with a warning.
NEAR_EXPIRY_DAYS = 90
QUANTUM = Decimal("0.001")  # the quantity and cost columns keep 3 decimals
DISPENSED_EVENT = "his.stock.dispensed"
RETURNED_EVENT = "his.stock.returned"


class StockError(ValueError):
    def __init__(self, code: str, field_name: str | None, message, **params):
        super().__init__(code)
        self.code, self.field, self.message, self.params = code, field_name, message, params

    def __str__(self) -> str:
        return str(self.message)


def format_quantity(value: Decimal | int | None) -> str:
    """Vietnamese number style without useless decimals: 1.200 ; 2,5 ; 0,125."""
    if value is None:
        return ""
    value = Decimal(value).quantize(QUANTUM)
    whole, _, frac = f"{abs(value):f}".partition(".")
    frac = frac.rstrip("0")
    text = f"{int(whole):,}".replace(",", ".") + (f",{frac}" if frac else "")
    return f"-{text}" if value < 0 else text


def _day(value: date) -> str:
    return value.strftime("%d/%m/%Y")


def parse_quantity(value, field_name: str = "quantity") -> Decimal:
    """A positive quantity with at most 3 decimals ('2,5' is read as 2.5)."""
    try:
        number = Decimal(str(value).strip().replace(",", ".")) if not isinstance(value, Decimal) else value
    except (InvalidOperation, ValueError):
        raise StockError("invalid_quantity", field_name, _l("Enter the quantity as a number.")) from None
    if not number.is_finite() or number <= 0:
        raise StockError("invalid_quantity", field_name, _l("The quantity must be greater than zero."))
    if number != number.quantize(QUANTUM):
        raise StockError("invalid_quantity", field_name, _l("The quantity may have at most 3 decimals."))
    if number >= Decimal("1e12"):
        raise StockError("invalid_quantity", field_name, _l("The quantity is too large."))
    return number.quantize(QUANTUM)


def parse_cost(value, field_name: str = "unit_cost") -> Decimal:
    try:
        number = Decimal(str(value).strip().replace(" ", "")) if not isinstance(value, Decimal) else value
    except (InvalidOperation, ValueError):
        raise StockError("invalid_cost", field_name, _l("Enter the unit cost as a number.")) from None
    if not number.is_finite() or number < 0 or number >= Decimal("1e12"):
        raise StockError("invalid_cost", field_name, _l("The unit cost must be zero or more."))
    return number.quantize(QUANTUM)


# --- locking and moving -------------------------------------------------------------------------

def _ensure_stock_rows(session: Session, warehouse: Warehouse, lots: Iterable[Lot]) -> None:
    """Create the (warehouse, lot) rows that do not exist yet, tolerating a concurrent creator."""
    for lot in lots:
        exists = session.scalar(select(PharmacyStock.id).where(PharmacyStock.warehouse_id == warehouse.id,
                                                               PharmacyStock.lot_id == lot.id))
        if exists is None:
            try:
                with session.begin_nested():
                    session.add(PharmacyStock(warehouse_id=warehouse.id, lot_id=lot.id, on_hand=Decimal(0)))
            except IntegrityError:
                pass  # another transaction created it meanwhile; it is locked below like any other


def _lock(session: Session, *conditions) -> list[PharmacyStock]:
    """The stock rows matching `conditions`, locked in stock-id order, with their committed quantities."""
    stmt = (select(PharmacyStock).join(Lot, Lot.id == PharmacyStock.lot_id).where(*conditions)
            .order_by(PharmacyStock.id).with_for_update(of=PharmacyStock)
            .execution_options(populate_existing=True))
    return list(session.scalars(stmt).unique())


def _move(session: Session, actor: Actor, stock: PharmacyStock, kind: str, delta: Decimal, **facts) -> StockMovement:
    """Change a locked row by `delta` and write its movement (the CHECK constraint is the last guard)."""
    stock.on_hand = stock.on_hand + delta
    movement = StockMovement(kind=kind, stock_id=stock.id, warehouse_id=stock.warehouse_id, lot_id=stock.lot_id,
                             quantity=delta, on_hand_after=stock.on_hand, actor_id=actor.id, actor_name=actor.name,
                             **facts)
    session.add(movement)
    return movement


def _usable(today: date):
    return Lot.expiry_date >= today  # a lot may be used up to and including its expiry date


def _fefo(rows: list[PharmacyStock]) -> list[PharmacyStock]:
    return sorted(rows, key=lambda s: (s.lot.expiry_date, s.lot.id))


def _pick(rows: list[PharmacyStock], quantity: Decimal) -> list[tuple[PharmacyStock, Decimal]]:
    picks, left = [], quantity
    for stock in _fefo(rows):
        if left <= 0:
            break
        take = min(stock.on_hand, left)
        if take > 0:
            picks.append((stock, take))
            left -= take
    return picks


def _not_enough(drug: Drug, warehouse: Warehouse, requested: Decimal, available: Decimal) -> StockError:
    return StockError(
        "insufficient_stock", "quantity",
        _l("Not enough stock of %(drug)s in %(warehouse)s: %(requested)s %(unit)s requested, only %(available)s "
           "%(unit)s usable.", drug=drug.name, warehouse=warehouse.name, requested=format_quantity(requested),
           available=format_quantity(available), unit=drug.unit),
        requested=str(requested), available=str(available.quantize(QUANTUM)))


def _near_expiry_warnings(picks, today: date) -> list:
    limit = today + timedelta(days=NEAR_EXPIRY_DAYS)
    return [_l("Lot %(lot)s of %(drug)s expires on %(expiry)s (in %(days)s days).", lot=s.lot.lot_number,
               drug=s.lot.drug.name, expiry=_day(s.lot.expiry_date), days=(s.lot.expiry_date - today).days)
            for s, _qty in picks if s.lot.expiry_date <= limit]


def _check_warehouse(warehouse: Warehouse | None, field_name: str = "warehouse") -> Warehouse:
    if warehouse is None or not warehouse.active:
        raise StockError("unknown_warehouse", field_name, _l("Choose an active warehouse."))
    return warehouse


def _check_drug(drug: Drug | None, field_name: str = "drug") -> Drug:
    if drug is None:
        raise StockError("unknown_drug", field_name, _l("Choose a drug from the catalogue."))
    return drug


# --- receipts -----------------------------------------------------------------------------------

@dataclass
class ReceiptLine:
    drug: Drug | None
    lot_number: str
    expiry_date: date | None
    quantity: object
    unit_cost: object


def _line_field(index: int, name: str) -> str:
    return f"lines-{index}-{name}"


def _validate_line(session: Session, index: int, line: ReceiptLine, today: date) -> tuple:
    drug = _check_drug(line.drug, _line_field(index, "drug"))
    lot_number = (line.lot_number or "").strip().upper()
    if not lot_number:
        raise StockError("lot_required", _line_field(index, "lot_number"), _l("Line %(n)s: enter the lot number.",
                                                                              n=index + 1))
    if len(lot_number) > 50:
        raise StockError("lot_too_long", _line_field(index, "lot_number"),
                         _l("Line %(n)s: the lot number is longer than 50 characters.", n=index + 1))
    if line.expiry_date is None:
        raise StockError("expiry_required", _line_field(index, "expiry_date"),
                         _l("Line %(n)s: enter the expiry date.", n=index + 1))
    if line.expiry_date < today:
        raise StockError("expired_on_receipt", _line_field(index, "expiry_date"),
                         _l("Line %(n)s: lot %(lot)s of %(drug)s expired on %(expiry)s and cannot be received.",
                            n=index + 1, lot=lot_number, drug=drug.name, expiry=_day(line.expiry_date)))
    quantity = parse_quantity(line.quantity, _line_field(index, "quantity"))
    cost = parse_cost(line.unit_cost, _line_field(index, "unit_cost"))
    lot = session.scalar(select(Lot).where(Lot.drug_id == drug.id, Lot.lot_number == lot_number))
    if lot is not None and lot.expiry_date != line.expiry_date:
        raise StockError("lot_expiry_mismatch", _line_field(index, "expiry_date"),
                         _l("Line %(n)s: lot %(lot)s of %(drug)s is already recorded with expiry date %(expiry)s.",
                            n=index + 1, lot=lot_number, drug=drug.name, expiry=_day(lot.expiry_date)))
    return drug, lot_number, line.expiry_date, quantity, cost


def _lot(session: Session, drug: Drug, lot_number: str, expiry: date, cost: Decimal) -> Lot:
    lot = session.scalar(select(Lot).where(Lot.drug_id == drug.id, Lot.lot_number == lot_number))
    if lot is None:
        try:
            with session.begin_nested():
                lot = Lot(drug_id=drug.id, lot_number=lot_number, expiry_date=expiry, unit_cost=cost)
                session.add(lot)
        except IntegrityError:
            lot = session.scalar(select(Lot).where(Lot.drug_id == drug.id, Lot.lot_number == lot_number))
    return lot


def receive(session: Session, actor: Actor, warehouse: Warehouse, lines: list[ReceiptLine], *, supplier: str,
            invoice_number: str, today: date, invoice_date: date | None = None,
            note: str | None = None) -> GoodsReceipt:
    """Record a goods receipt (phiếu nhập) and add its lines to the warehouse's stock, lot by lot."""
    _check_warehouse(warehouse)
    supplier, invoice_number = (supplier or "").strip(), (invoice_number or "").strip()
    if not supplier:
        raise StockError("supplier_required", "supplier", _l("Enter the supplier."))
    if not invoice_number:
        raise StockError("invoice_required", "invoice_number", _l("Enter the invoice number."))
    if len(supplier) > 300 or len(invoice_number) > 50:
        raise StockError("too_long", "invoice_number", _l("The supplier or invoice number is too long."))
    if invoice_date is not None and invoice_date > today:
        raise StockError("future_invoice", "invoice_date", _l("The invoice date is in the future."))
    if not lines:
        raise StockError("no_lines", "lines", _l("Add at least one line."))
    checked = [_validate_line(session, i, line, today) for i, line in enumerate(lines)]
    seen: dict[tuple, int] = {}
    for i, (drug, lot_number, *_rest) in enumerate(checked):
        if (drug.id, lot_number) in seen:
            raise StockError("duplicate_line", _line_field(i, "lot_number"),
                             _l("Line %(n)s repeats lot %(lot)s of line %(first)s.", n=i + 1, lot=lot_number,
                                first=seen[(drug.id, lot_number)] + 1))
        seen[(drug.id, lot_number)] = i
    if session.scalar(select(GoodsReceipt.id).where(GoodsReceipt.supplier == supplier,
                                                    GoodsReceipt.invoice_number == invoice_number)):
        raise StockError("duplicate_invoice", "invoice_number",
                         _l("Invoice %(invoice)s of %(supplier)s was already received.", invoice=invoice_number,
                            supplier=supplier))
    receipt = GoodsReceipt(warehouse_id=warehouse.id, supplier=supplier, invoice_number=invoice_number,
                           invoice_date=invoice_date, note=(note or "").strip() or None,
                           total_cost=sum((q * c for *_x, q, c in checked), Decimal(0)).quantize(QUANTUM),
                           received_by=actor.id)
    session.add(receipt)
    # New lots and stock rows are inserted in one order (drug, lot number / lot id) so that two receipts
    # of the same new lots wait for each other instead of deadlocking on each other's inserts.
    by_key = {}
    for drug, lot_number, expiry, _q, cost in sorted(checked, key=lambda c: (c[0].id, c[1])):
        by_key[(drug.id, lot_number)] = _lot(session, drug, lot_number, expiry, cost)
    lots = [by_key[(drug.id, lot_number)] for drug, lot_number, *_rest in checked]
    session.flush()
    _ensure_stock_rows(session, warehouse, sorted(lots, key=lambda lot: lot.id))
    locked = {s.lot_id: s for s in _lock(session, PharmacyStock.warehouse_id == warehouse.id,
                                         PharmacyStock.lot_id.in_([lot.id for lot in lots]))}
    for n, (lot, (_d, _l2, _e, quantity, cost)) in enumerate(zip(lots, checked, strict=True), start=1):
        session.add(GoodsReceiptLine(receipt_id=receipt.id, line_no=n, lot_id=lot.id, quantity=quantity,
                                     unit_cost=cost))
        _move(session, actor, locked[lot.id], "receipt", quantity, receipt_id=receipt.id,
              reference_type="goods_receipt", reference_id=receipt.id)
    session.flush()
    audit.record(session, actor, "stock.receive", receipt,
                 {"warehouse": warehouse.code, "supplier": supplier, "invoice": invoice_number,
                  "lines": [{"drug": d.code, "lot": ln, "expiry": e.isoformat(), "quantity": str(q), "cost": str(c)}
                            for d, ln, e, q, c in checked]})
    return receipt


# --- dispensing and returns ---------------------------------------------------------------------

@dataclass
class DispenseResult:
    movements: list[StockMovement]
    warnings: list = field(default_factory=list)

    @property
    def quantity(self) -> Decimal:
        return -sum((m.quantity for m in self.movements), Decimal(0))


def dispense(session: Session, actor: Actor, warehouse: Warehouse, drug: Drug, quantity, *, today: date,
             reference_type: str | None = None, reference_id: int | None = None) -> DispenseResult:
    """Issue `quantity` of `drug` from `warehouse`, taking the lots that expire first and never an
    expired one; more than the usable stock raises StockError(insufficient_stock) and changes nothing.

    The result carries one movement per lot used and the near-expiry warnings (which do not block).
    """
    _check_warehouse(warehouse)
    _check_drug(drug)
    quantity = parse_quantity(quantity)
    reference_type = (reference_type or "").strip() or None
    if reference_type is not None and len(reference_type) > 40:
        raise StockError("bad_reference", "reference_type", _l("The reference type is too long."))
    rows = _lock(session, PharmacyStock.warehouse_id == warehouse.id, Lot.drug_id == drug.id, _usable(today),
                 PharmacyStock.on_hand > 0)
    available = sum((s.on_hand for s in rows), Decimal(0))
    if available < quantity:
        raise _not_enough(drug, warehouse, quantity, available)
    picks = _pick(rows, quantity)
    movements = [_move(session, actor, stock, "dispense", -take, reference_type=reference_type,
                       reference_id=reference_id) for stock, take in picks]
    session.flush()
    lines = [{"movement_id": m.id, "lot_id": s.lot_id, "lot_number": s.lot.lot_number,
              "expiry_date": s.lot.expiry_date.isoformat(), "quantity": str(take), "unit_cost": str(s.lot.unit_cost)}
             for m, (s, take) in zip(movements, picks, strict=True)]
    audit.record(session, actor, "stock.dispense", ("pharmacy_warehouses", warehouse.id),
                 {"drug": drug.code, "quantity": str(quantity), "reference_type": reference_type,
                  "reference_id": reference_id, "lots": [(x["lot_number"], x["quantity"]) for x in lines]})
    events.emit(session, DISPENSED_EVENT, {"warehouse_id": warehouse.id, "warehouse_code": warehouse.code,
                                           "drug_id": drug.id, "drug_code": drug.code, "quantity": str(quantity),
                                           "unit": drug.unit, "reference_type": reference_type,
                                           "reference_id": reference_id, "lines": lines}, actor=actor)
    return DispenseResult(movements, _near_expiry_warnings(picks, today))


def returnable(session: Session, movement: StockMovement) -> Decimal:
    """How much of a dispense movement has not been returned yet."""
    returned = session.scalar(select(func.coalesce(func.sum(StockMovement.quantity), 0))
                              .where(StockMovement.returns_movement_id == movement.id, StockMovement.kind == "return"))
    return -movement.quantity - Decimal(returned)


def return_dispensed(session: Session, actor: Actor, movement: StockMovement | None, quantity, *,
                     reason: str | None = None) -> StockMovement:
    """Put (part of) a dispensed quantity back into the warehouse and lot it came from (hoàn trả)."""
    if movement is None or movement.kind != "dispense":
        raise StockError("not_a_dispense", "movement", _l("Choose a dispense line to return."))
    quantity = parse_quantity(quantity)
    # Locking the stock row first (the one lock order), then reading what is left to return, makes two
    # returns of the same line wait for each other.
    (stock,) = _lock(session, PharmacyStock.id == movement.stock_id)
    left = returnable(session, movement)
    if quantity > left:
        raise StockError("return_too_large", "quantity",
                         _l("Only %(left)s %(unit)s of this dispense can still be returned.",
                            left=format_quantity(left), unit=stock.lot.drug.unit), left=str(left))
    back = _move(session, actor, stock, "return", quantity, returns_movement_id=movement.id,
                 reference_type=movement.reference_type, reference_id=movement.reference_id,
                 reason=(reason or "").strip() or None)
    session.flush()
    audit.record(session, actor, "stock.return", back, {"dispense_movement_id": movement.id, "quantity": str(quantity),
                                                        "lot": stock.lot.lot_number, "reason": back.reason})
    events.emit(session, RETURNED_EVENT, {"movement_id": back.id, "dispense_movement_id": movement.id,
                                          "warehouse_id": stock.warehouse_id, "drug_id": stock.lot.drug_id,
                                          "drug_code": stock.lot.drug.code, "lot_id": stock.lot_id,
                                          "quantity": str(quantity), "reference_type": movement.reference_type,
                                          "reference_id": movement.reference_id}, actor=actor)
    return back


# --- transfers, adjustments, destruction --------------------------------------------------------

def transfer(session: Session, actor: Actor, source: Warehouse, destination: Warehouse, drug: Drug, quantity, *,
             today: date, reason: str | None = None) -> list[tuple[StockMovement, StockMovement]]:
    """Move `quantity` of `drug` from one warehouse to another, lot by lot, first expiry first."""
    _check_warehouse(source, "source")
    _check_warehouse(destination, "destination")
    if source.id == destination.id:
        raise StockError("same_warehouse", "destination", _l("Choose a different destination warehouse."))
    _check_drug(drug)
    quantity = parse_quantity(quantity)
    # The destination rows must exist before the single ordered lock over both warehouses.
    candidates = session.scalars(select(Lot).join(PharmacyStock, PharmacyStock.lot_id == Lot.id).where(
        PharmacyStock.warehouse_id == source.id, Lot.drug_id == drug.id, _usable(today),
        PharmacyStock.on_hand > 0)).all()
    _ensure_stock_rows(session, destination, sorted(candidates, key=lambda lot: lot.id))
    lot_ids = [lot.id for lot in candidates]
    locked = _lock(session, PharmacyStock.warehouse_id.in_((source.id, destination.id)),
                   PharmacyStock.lot_id.in_(lot_ids))
    from_rows = [s for s in locked if s.warehouse_id == source.id and s.on_hand > 0 and s.lot.expiry_date >= today]
    to_rows = {s.lot_id: s for s in locked if s.warehouse_id == destination.id}
    available = sum((s.on_hand for s in from_rows), Decimal(0))
    if available < quantity:
        raise _not_enough(drug, source, quantity, available)
    reason = (reason or "").strip() or None
    pairs = []
    for stock, take in _pick(from_rows, quantity):
        out = _move(session, actor, stock, "transfer_out", -take, counterpart_warehouse_id=destination.id,
                    reason=reason)
        into = _move(session, actor, to_rows[stock.lot_id], "transfer_in", take, counterpart_warehouse_id=source.id,
                     reason=reason)
        pairs.append((out, into))
    session.flush()
    audit.record(session, actor, "stock.transfer", ("pharmacy_warehouses", source.id),
                 {"from": source.code, "to": destination.code, "drug": drug.code, "quantity": str(quantity),
                  "lots": [(o.lot.lot_number, str(-o.quantity)) for o, _i in pairs]})
    return pairs


def _reason_required(reason: str | None) -> str:
    if not (reason or "").strip():
        raise StockError("reason_required", "reason", _l("Give the reason."))
    return reason.strip()


def _one_row(session: Session, warehouse: Warehouse, lot: Lot) -> PharmacyStock:
    _ensure_stock_rows(session, warehouse, [lot])
    (stock,) = _lock(session, PharmacyStock.warehouse_id == warehouse.id, PharmacyStock.lot_id == lot.id)
    return stock


def adjust(session: Session, actor: Actor, warehouse: Warehouse, lot: Lot, counted, *,
           reason: str) -> StockMovement | None:
    """Set a lot's on-hand quantity to what a stock count found (kiểm kê); None when it already matches."""
    _check_warehouse(warehouse)
    reason = _reason_required(reason)
    try:
        counted = Decimal(str(counted).replace(",", "."))
    except InvalidOperation:
        raise StockError("invalid_quantity", "quantity", _l("Enter the quantity as a number.")) from None
    if not counted.is_finite() or counted < 0 or counted != counted.quantize(QUANTUM):
        raise StockError("invalid_quantity", "quantity", _l("The counted quantity must be zero or more."))
    stock = _one_row(session, warehouse, lot)
    delta = counted.quantize(QUANTUM) - stock.on_hand
    if delta == 0:
        return None
    movement = _move(session, actor, stock, "adjustment", delta, reason=reason)
    session.flush()
    audit.record(session, actor, "stock.adjust", movement, {"warehouse": warehouse.code, "lot": lot.lot_number,
                                                            "delta": str(delta), "reason": reason})
    return movement


def destroy(session: Session, actor: Actor, warehouse: Warehouse, lot: Lot, quantity, *, reason: str) -> StockMovement:
    """Take expired or damaged units out of stock (xuất hủy), with the reason."""
    _check_warehouse(warehouse)
    reason = _reason_required(reason)
    quantity = parse_quantity(quantity)
    stock = _one_row(session, warehouse, lot)
    if stock.on_hand < quantity:
        raise StockError("insufficient_stock", "quantity",
                         _l("Lot %(lot)s holds only %(available)s %(unit)s in %(warehouse)s.", lot=lot.lot_number,
                            available=format_quantity(stock.on_hand), unit=lot.drug.unit, warehouse=warehouse.name),
                         requested=str(quantity), available=str(stock.on_hand))
    movement = _move(session, actor, stock, "destruction", -quantity, reason=reason)
    session.flush()
    audit.record(session, actor, "stock.destroy", movement, {"warehouse": warehouse.code, "lot": lot.lot_number,
                                                             "quantity": str(quantity), "reason": reason})
    return movement


# --- reports ------------------------------------------------------------------------------------

@dataclass
class DrugStock:
    drug: Drug
    on_hand: Decimal  # everything in the warehouse, expired included
    usable: Decimal
    expired: Decimal
    next_expiry: date | None  # of the usable lots
    lots: list[PharmacyStock]


def stock_on_hand(session: Session, warehouse: Warehouse, *, today: date, query: str | None = None,
                  include_empty: bool = False) -> list[DrugStock]:
    """What a warehouse holds, per drug (by name), with its lots in FEFO order; `query` searches the
    drug's code or folded name."""
    stmt = (select(PharmacyStock).join(Lot, Lot.id == PharmacyStock.lot_id).join(Drug, Drug.id == Lot.drug_id)
            .where(PharmacyStock.warehouse_id == warehouse.id))
    if not include_empty:
        stmt = stmt.where(PharmacyStock.on_hand > 0)
    text = (query or "").strip()
    if text:
        stmt = stmt.where(or_(Drug.code.startswith(text.upper(), autoescape=True),
                              Drug.name_folded.contains(search_form(text), autoescape=True)))
    rows = session.scalars(stmt.order_by(Drug.name, Lot.expiry_date, Lot.id)).unique().all()
    result: dict[int, DrugStock] = {}
    for stock in rows:
        entry = result.get(stock.lot.drug_id)
        if entry is None:
            entry = result[stock.lot.drug_id] = DrugStock(stock.lot.drug, Decimal(0), Decimal(0), Decimal(0), None, [])
        entry.lots.append(stock)
        entry.on_hand += stock.on_hand
        if stock.lot.expiry_date < today:
            entry.expired += stock.on_hand
        else:
            entry.usable += stock.on_hand
            if stock.on_hand > 0 and (entry.next_expiry is None or stock.lot.expiry_date < entry.next_expiry):
                entry.next_expiry = stock.lot.expiry_date
    return list(result.values())


def usable_quantity(session: Session, warehouse: Warehouse, drug: Drug, *, today: date) -> Decimal:
    return Decimal(session.scalar(
        select(func.coalesce(func.sum(PharmacyStock.on_hand), 0)).join(Lot, Lot.id == PharmacyStock.lot_id)
        .where(PharmacyStock.warehouse_id == warehouse.id, Lot.drug_id == drug.id, _usable(today))))


@dataclass
class ExpiryRow:
    stock: PharmacyStock
    days_left: int  # negative: expired that many days ago

    @property
    def expired(self) -> bool:
        return self.days_left < 0


def expiry_report(session: Session, *, today: date, within_days: int = NEAR_EXPIRY_DAYS,
                  warehouse: Warehouse | None = None) -> list[ExpiryRow]:
    """Lots with stock that expired already or expire within `within_days`, soonest first."""
    limit = today + timedelta(days=max(0, within_days))
    stmt = (select(PharmacyStock).join(Lot, Lot.id == PharmacyStock.lot_id)
            .where(PharmacyStock.on_hand > 0, Lot.expiry_date <= limit))
    if warehouse is not None:
        stmt = stmt.where(PharmacyStock.warehouse_id == warehouse.id)
    expired_first = case((Lot.expiry_date < today, 0), else_=1)
    rows = session.scalars(stmt.order_by(expired_first, Lot.expiry_date, PharmacyStock.warehouse_id, Lot.id)).unique()
    return [ExpiryRow(s, (s.lot.expiry_date - today).days) for s in rows]


def movements(session: Session, *, warehouse: Warehouse | None = None, kind: str | None = None,
              reference_type: str | None = None, reference_id: int | None = None,
              limit: int = 100) -> list[StockMovement]:
    """The newest movements first (the stock card), filtered."""
    stmt = select(StockMovement)
    if warehouse is not None:
        stmt = stmt.where(StockMovement.warehouse_id == warehouse.id)
    if kind:
        stmt = stmt.where(StockMovement.kind == kind)
    if reference_type:
        stmt = stmt.where(StockMovement.reference_type == reference_type)
    if reference_id is not None:
        stmt = stmt.where(StockMovement.reference_id == reference_id)
    return list(session.scalars(stmt.order_by(StockMovement.id.desc()).limit(limit)).unique())


# --- look-ups for the screens and the API ---------------------------------------------------------

def warehouses(session: Session, *, active_only: bool = True) -> list[Warehouse]:
    stmt = select(Warehouse).order_by(Warehouse.kind, Warehouse.code)
    if active_only:
        stmt = stmt.where(Warehouse.active)
    return list(session.scalars(stmt))


def warehouse_by_code(session: Session, code: str | None) -> Warehouse | None:
    code = (code or "").strip().upper()
    return session.scalar(select(Warehouse).where(Warehouse.code == code)) if code else None


def drug_by_code(session: Session, code: str | None) -> Drug | None:
    """The active drug with this facility code; 'T.PARA500 — Paracetamol…' (a picked list entry) also works."""
    code = (code or "").strip().split(" ", 1)[0]
    if not code:
        return None
    return session.scalar(select(Drug).where(Drug.code.in_({code, code.upper()}), Drug.active).limit(1))

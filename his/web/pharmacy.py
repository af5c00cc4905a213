"""Pharmacy screens: stock on hand per warehouse, goods receipt, dispensing, returns, the expiry report.

Each form posts to an operation of his.stock; the handler commits and redirects, or re-renders the
form with the precise message (422) after rolling back, so bad input changes nothing.
"""

from __future__ import annotations

from datetime import date, datetime

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from core.web import NavEntry, add_nav, current_actor, db_session
from core.web.security import require
from his import stock
from his.models.catalog import Drug
from his.models.pharmacy import StockMovement
from his.stock import ReceiptLine, StockError
from his.web._helpers import today

PERMISSION = "his.pharmacy.dispense"
RECEIPT_ROWS = 6  # empty line rows offered by the receipt form
REFERENCE_TYPES = {"prescription_line": _l("Prescription line"), "order": _l("Order"), "other": _l("Other")}
WAREHOUSE_KINDS = {"main_store": _l("Main store"), "dispensing": _l("Dispensing pharmacy"),
                   "ward_cabinet": _l("Ward cabinet")}
MOVEMENT_KINDS = {"receipt": _l("Receipt"), "dispense": _l("Dispense"), "return": _l("Return"),
                  "transfer_out": _l("Transfer out"), "transfer_in": _l("Transfer in"),
                  "adjustment": _l("Adjustment"), "destruction": _l("Destruction")}

bp = Blueprint("his_pharmacy", __name__, template_folder="../templates")


@bp.app_template_filter("qty")
def _qty(value) -> str:
    return stock.format_quantity(value)


@bp.app_template_global("warehouse_kind")
def _warehouse_kind(kind: str):
    return WAREHOUSE_KINDS.get(kind, kind)


@bp.app_template_global("movement_kind")
def _movement_kind(kind: str):
    return MOVEMENT_KINDS.get(kind, kind)


def parse_day(value) -> date | None:
    """dd/mm/yyyy (as typed) or yyyy-mm-dd (a date input); None when empty; ValueError when unreadable."""
    text = (value or "").strip()
    if not text:
        return None
    for fmt in ("%d/%m/%Y", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise ValueError(text)


def _warehouse_arg(name: str = "w"):
    """The warehouse chosen in the query string or form, else the first dispensing one."""
    houses = stock.warehouses(db_session())
    code = request.values.get(name)
    chosen = next((h for h in houses if h.code == code), None)
    if chosen is None:
        chosen = next((h for h in houses if h.kind == "dispensing"), houses[0] if houses else None)
    return houses, chosen


def _drugs() -> list[Drug]:
    return list(db_session().scalars(select(Drug).where(Drug.active).order_by(Drug.name)))


# --- stock on hand ------------------------------------------------------------------------------

@bp.get("/pharmacy")
@require(PERMISSION)
def stock_on_hand():
    houses, warehouse = _warehouse_arg()
    q = request.args.get("q", "")
    rows = stock.stock_on_hand(db_session(), warehouse, today=today(), query=q) if warehouse else []
    return render_template("his/pharmacy/stock.html", warehouses=houses, warehouse=warehouse, rows=rows, q=q,
                           today=today(), near_days=stock.NEAR_EXPIRY_DAYS)


# --- goods receipt ------------------------------------------------------------------------------

def _receipt_form(errors=None, error=None, values=None, status=200):
    houses, warehouse = _warehouse_arg("warehouse")
    rows = max(RECEIPT_ROWS, len((values or {}).get("lines", [])))
    return render_template("his/pharmacy/receipt.html", warehouses=houses, warehouse=warehouse, drugs=_drugs(),
                           rows=rows, values=values or {"lines": []}, errors=errors or {}, error=error), status


@bp.get("/pharmacy/receipts/new")
@require(PERMISSION)
def receipt_new():
    return _receipt_form()


def _typed_lines(form) -> list[dict]:
    """The non-empty line rows as typed (empty rows in between are dropped, so the numbers match)."""
    typed = []
    for i in range(min(200, form.get("rows", RECEIPT_ROWS, type=int) or RECEIPT_ROWS)):
        row = {k: (form.get(f"lines-{i}-{k}") or "").strip()
               for k in ("drug", "lot_number", "expiry_date", "quantity", "unit_cost")}
        if any(row.values()):
            typed.append(row)
    return typed


def _receipt_lines(typed: list[dict]) -> list[ReceiptLine]:
    lines = []
    for i, row in enumerate(typed):
        try:
            expiry = parse_day(row["expiry_date"])
        except ValueError:
            raise StockError("invalid_date", f"lines-{i}-expiry_date",
                             _l("Line %(n)s: write the expiry date as dd/mm/yyyy.", n=i + 1)) from None
        drug = stock.drug_by_code(db_session(), row["drug"])
        if drug is None and row["drug"]:
            raise StockError("unknown_drug", f"lines-{i}-drug",
                             _l("Line %(n)s: no drug has the code %(code)s.", n=i + 1, code=row["drug"]))
        lines.append(ReceiptLine(drug, row["lot_number"], expiry, row["quantity"], row["unit_cost"] or "0"))
    return lines


@bp.post("/pharmacy/receipts")
@require(PERMISSION)
def receipt_create():
    sess, form = db_session(), request.form
    values = {k: form.get(k, "") for k in ("supplier", "invoice_number", "invoice_date", "note")}
    values["lines"] = _typed_lines(form)
    try:
        lines = _receipt_lines(values["lines"])
        try:
            invoice_date = parse_day(values["invoice_date"])
        except ValueError:
            raise StockError("invalid_date", "invoice_date", _l("Write the invoice date as dd/mm/yyyy.")) from None
        warehouse = stock.warehouse_by_code(sess, form.get("warehouse"))
        receipt = stock.receive(sess, current_actor(), warehouse, lines, supplier=values["supplier"],
                                invoice_number=values["invoice_number"], invoice_date=invoice_date,
                                note=values["note"], today=today())
    except StockError as exc:
        sess.rollback()
        return _receipt_form({exc.field or "form": str(exc)}, str(exc), values, 422)
    sess.commit()
    flash(_("Goods receipt saved: invoice %(invoice)s, %(n)s lines.", invoice=receipt.invoice_number,
            n=len(receipt.lines)), "success")
    return redirect(url_for(".stock_on_hand", w=receipt.warehouse.code))


# --- dispensing ---------------------------------------------------------------------------------

def _dispense_page(errors=None, error=None, values=None, status=200):
    houses, warehouse = _warehouse_arg("warehouse")
    recent = stock.movements(db_session(), warehouse=warehouse, kind="dispense", limit=20) if warehouse else []
    return render_template("his/pharmacy/dispense.html", warehouses=houses, warehouse=warehouse, drugs=_drugs(),
                           reference_types=REFERENCE_TYPES, recent=recent, values=values or {},
                           errors=errors or {}, error=error), status


@bp.get("/pharmacy/dispense")
@require(PERMISSION)
def dispense_form():
    return _dispense_page()


def _reference_id(raw: str) -> int | None:
    raw = (raw or "").strip()
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise StockError("bad_reference", "reference_id", _l("The reference number is a whole number."))
    return int(raw)


@bp.post("/pharmacy/dispense")
@require(PERMISSION)
def dispense():
    sess, form = db_session(), request.form
    values = {k: form.get(k, "") for k in ("drug", "quantity", "reference_type", "reference_id")}
    try:
        reference_type = form.get("reference_type") if form.get("reference_type") in REFERENCE_TYPES else None
        result = stock.dispense(sess, current_actor(), stock.warehouse_by_code(sess, form.get("warehouse")),
                                stock.drug_by_code(sess, values["drug"]), values["quantity"], today=today(),
                                reference_type=reference_type, reference_id=_reference_id(values["reference_id"]))
    except StockError as exc:
        sess.rollback()
        return _dispense_page({exc.field or "form": str(exc)}, str(exc), values, 422)
    sess.commit()
    first = result.movements[0]
    flash(_("Dispensed %(quantity)s %(unit)s of %(drug)s from lots %(lots)s.",
            quantity=stock.format_quantity(result.quantity), unit=first.lot.drug.unit, drug=first.lot.drug.name,
            lots=", ".join(f"{m.lot.lot_number} ({stock.format_quantity(-m.quantity)})" for m in result.movements)),
          "success")
    for warning in result.warnings:
        flash(str(warning), "warning")
    return redirect(url_for(".dispense_form", warehouse=first.warehouse.code))


# --- returns ------------------------------------------------------------------------------------

def _returns_page(errors=None, error=None, status=200):
    sess = db_session()
    houses, warehouse = _warehouse_arg()
    ref = request.values.get("reference_id", "").strip()
    rows = []
    if warehouse is not None:
        found = stock.movements(sess, warehouse=warehouse, kind="dispense",
                                reference_id=int(ref) if ref.isdigit() and len(ref) < 19 else None, limit=50)
        rows = [(m, stock.returnable(sess, m)) for m in found]
    return render_template("his/pharmacy/returns.html", warehouses=houses, warehouse=warehouse, rows=rows,
                           reference_id=ref, errors=errors or {}, error=error), status


@bp.get("/pharmacy/returns")
@require(PERMISSION)
def returns():
    return _returns_page()


@bp.post("/pharmacy/movements/<int:movement_id>/return")
@require(PERMISSION)
def return_movement(movement_id: int):
    sess = db_session()
    movement = sess.get(StockMovement, movement_id)
    if movement is None:
        abort(404)
    try:
        back = stock.return_dispensed(sess, current_actor(), movement, request.form.get("quantity", ""),
                                      reason=request.form.get("reason"))
    except StockError as exc:
        sess.rollback()
        return _returns_page({f"{exc.field}-{movement_id}": str(exc)}, str(exc), 422)
    sess.commit()
    flash(_("Returned %(quantity)s %(unit)s to lot %(lot)s.", quantity=stock.format_quantity(back.quantity),
            unit=back.lot.drug.unit, lot=back.lot.lot_number), "success")
    return redirect(url_for(".returns", w=back.warehouse.code, reference_id=request.form.get("reference_id", "")))


# --- expiry report ------------------------------------------------------------------------------

@bp.get("/pharmacy/expiry")
@require(PERMISSION)
def expiry():
    houses = stock.warehouses(db_session())
    warehouse = next((h for h in houses if h.code == request.args.get("w")), None)  # none chosen: all warehouses
    days = request.args.get("days", stock.NEAR_EXPIRY_DAYS, type=int)
    days = stock.NEAR_EXPIRY_DAYS if days is None or not 0 <= days <= 3650 else days
    rows = stock.expiry_report(db_session(), today=today(), within_days=days, warehouse=warehouse)
    return render_template("his/pharmacy/expiry.html", warehouses=houses, warehouse=warehouse, rows=rows, days=days,
                           today=today())


@bp.record_once
def _nav(state) -> None:
    add_nav(state.app, NavEntry("his_pharmacy.stock_on_hand", _l("Pharmacy"), PERMISSION, _l("Pharmacy"), 500))

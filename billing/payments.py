"""Money taken and given back at the cashier's desk: payments, inpatient advances (tạm ứng), refunds
(hoàn ứng), card payments from the POS slip, and the cashier's shift with its closing report.

Cash and card need the cashier's open shift; a QR transfer confirmed by the bank is recorded without
one. A bill is paid when payments, advances and refunds balance the patient's share exactly and no
charge waits for a price (an advance larger than the share keeps it open until the refund).
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from billing import bills
from billing.bills import BillView, next_number
from billing.models import PAYMENT_METHODS, BankTransaction, CashierShift, Payment
from billing.split import ZERO, money
from core import audit
from core.audit import Actor
from core.db import utcnow

APPROVAL_RE = re.compile(r"^[0-9A-Z]{6}$")
TERMINAL_RE = re.compile(r"^[0-9A-Z]{4,16}$")
AMOUNT_RE = re.compile(r"\d+|\d{1,3}(\.\d{3})+")


class PaymentError(ValueError):
    def __init__(self, code: str, field_name: str | None, message):
        super().__init__(code)
        self.code, self.field, self.message = code, field_name, message

    def __str__(self) -> str:
        return str(self.message)


def _amount(raw) -> Decimal:
    """A typed amount in đồng ("1.250.000", "1250000 ₫") or a Decimal. A dot only groups thousands:
    "120000.5" is refused, not read as 1.200.005."""
    if isinstance(raw, Decimal | int):
        value = Decimal(raw)
    else:
        text = str(raw if raw is not None else "").strip().replace(" ", "").replace("₫", "")
        value = Decimal(text.replace(".", "")) if AMOUNT_RE.fullmatch(text) else Decimal(0)
    if not value.is_finite() or value <= 0 or value != value.to_integral_value():
        raise PaymentError("bad_amount", "amount", _l("Enter an amount in whole đồng greater than 0."))
    return money(value)


def _vnd(value: Decimal) -> str:
    return f"{value:,.0f}".replace(",", ".") + " ₫"


# --- shifts ---------------------------------------------------------------------------------------

def current_shift(session: Session, actor: Actor) -> CashierShift | None:
    if actor.id is None:
        return None
    return session.scalar(select(CashierShift).where(CashierShift.cashier_id == actor.id,
                                                     CashierShift.closed_at.is_(None)))


def open_shift(session: Session, actor: Actor, opening_float=0) -> CashierShift:
    if current_shift(session, actor) is not None:
        raise PaymentError("shift_open", "shift", _l("Your shift is already open."))
    value = ZERO if str(opening_float).strip() in ("", "0") else _amount(opening_float)
    shift = CashierShift(cashier_id=actor.id, opening_float=value, opened_at=utcnow())
    try:
        with session.begin_nested():
            session.add(shift)
            session.flush()
    except IntegrityError:
        raise PaymentError("shift_open", "shift", _l("Your shift is already open.")) from None
    audit.record(session, actor, "billing.shift.open", shift, {"opening_float": str(value)})
    return shift


def shift_report(session: Session, shift: CashierShift) -> dict:
    rows = session.scalars(select(Payment).where(Payment.shift_id == shift.id).order_by(Payment.id)).all()
    totals = {f"{kind}_{method}": ZERO for kind in ("payment", "advance", "refund") for method in PAYMENT_METHODS}
    for row in rows:
        totals[f"{row.kind}_{row.method}"] += row.amount
    cash_in = totals["payment_cash"] + totals["advance_cash"]
    expected = shift.opening_float + cash_in - totals["refund_cash"]
    return {"receipts": len(rows), "first_receipt": rows[0].receipt_number if rows else None,
            "last_receipt": rows[-1].receipt_number if rows else None,
            **{k: str(v) for k, v in totals.items()}, "opening_float": str(shift.opening_float),
            "expected_cash": str(expected)}


def close_shift(session: Session, actor: Actor, counted_cash) -> CashierShift:
    """Close the shift: the report of what came in and went out by method, and the counted difference."""
    shift = current_shift(session, actor)
    if shift is None:
        raise PaymentError("no_shift", "shift", _l("Open your shift first."))
    counted = ZERO if str(counted_cash).strip() == "0" else _amount(counted_cash)
    report = shift_report(session, shift)
    report["counted_cash"] = str(counted)
    report["difference"] = str(counted - Decimal(report["expected_cash"]))
    shift.closed_at, shift.counted_cash, shift.report = utcnow(), counted, report
    session.flush()
    audit.record(session, actor, "billing.shift.close", shift, report)
    return shift


# --- payments ---------------------------------------------------------------------------------------

def _receipt_number(session: Session, at: datetime) -> str:
    return f"BL{at.year}{next_number(session, f'receipt-{at.year}'):07d}"


def _record(session: Session, actor: Actor, view: BillView, kind: str, method: str, amount: Decimal,
            shift: CashierShift | None, **extra) -> Payment:
    now = utcnow()
    payment = Payment(bill=view.bill, kind=kind, method=method, amount=amount, shift_id=shift.id if shift else None,
                      receipt_number=_receipt_number(session, now), created_by=actor.id, created_at=now, **extra)
    session.add(payment)
    session.flush()
    if kind == "advance":
        view.advances += amount
    elif kind == "payment":
        view.paid += amount
    else:
        view.refunded += amount
    audit.record(session, actor, f"billing.{kind}", payment,
                 {"bill": view.bill.code, "encounter_id": view.bill.encounter_id, "patient_id": view.bill.patient_id,
                  "method": method, "amount": str(amount), "receipt": payment.receipt_number})
    bills.settle(session, actor, view)
    return payment


def _card_slip(method: str, approval: str | None, terminal: str | None) -> dict:
    if method != "card":
        return {}
    approval, terminal = (approval or "").strip().upper(), (terminal or "").strip().upper()
    if not APPROVAL_RE.match(approval):
        raise PaymentError("card_approval", "card_approval_code",
                           _l("Copy the 6-character approval code from the POS slip."))
    if not TERMINAL_RE.match(terminal):
        raise PaymentError("card_terminal", "card_terminal", _l("Copy the terminal id (TID) from the POS slip."))
    return {"card_approval_code": approval, "card_terminal": terminal}


def take_payment(session: Session, actor: Actor, view: BillView, method: str, amount=None, *,
                 card_approval_code: str | None = None, card_terminal: str | None = None) -> Payment:
    """The patient pays what is due (cash or card at the desk)."""
    if method not in ("cash", "card"):
        raise PaymentError("bad_method", "method", _l("Choose cash or card."))
    shift = _shift_or_error(session, actor)
    slip = _card_slip(method, card_approval_code, card_terminal)
    bills.relock(session, actor, view)
    _check_settleable(view)
    value = _amount(view.patient_due if amount in (None, "") else amount)
    if value > view.patient_due:
        raise PaymentError("more_than_due", "amount", _l("The patient owes %(due)s, not %(amount)s.",
                                                         due=_vnd(view.patient_due), amount=_vnd(value)))
    return _record(session, actor, view, "payment", method, value, shift, **slip)


def _check_settleable(view: BillView) -> None:
    if view.unpriced:
        raise PaymentError("unpriced_charges", "bill", _l("%(n)d charge(s) have no price yet: %(problem)s",
                                                          n=len(view.unpriced), problem=view.unpriced[0].problem))
    if view.patient_due <= 0:
        raise PaymentError("nothing_due", "bill", _l("Nothing is due on this bill."))


def _shift_or_error(session: Session, actor: Actor) -> CashierShift:
    shift = current_shift(session, actor)
    if shift is None:
        raise PaymentError("no_shift", "shift", _l("Open your shift first."))
    return shift


def take_advance(session: Session, actor: Actor, view: BillView, method: str, amount, *,
                 card_approval_code: str | None = None, card_terminal: str | None = None) -> Payment:
    """An inpatient advance (tạm ứng): any amount, settled against the bill at discharge."""
    if method not in ("cash", "card"):
        raise PaymentError("bad_method", "method", _l("Choose cash or card."))
    shift = _shift_or_error(session, actor)
    slip = _card_slip(method, card_approval_code, card_terminal)
    value = _amount(amount)
    bills.relock(session, actor, view)
    return _record(session, actor, view, "advance", method, value, shift, **slip)


def refund(session: Session, actor: Actor, view: BillView, amount=None) -> Payment:
    """Give back, in cash, what the patient paid beyond the bill (an advance larger than the share)."""
    shift = _shift_or_error(session, actor)
    bills.relock(session, actor, view)
    if view.unpriced:
        _check_settleable(view)
    owed_back = -view.patient_due
    if owed_back <= 0:
        raise PaymentError("nothing_to_refund", "amount", _l("The hospital owes this patient nothing."))
    value = _amount(owed_back if amount in (None, "") else amount)
    if value > owed_back:
        raise PaymentError("refund_too_large", "amount", _l("At most %(owed)s can be refunded.", owed=_vnd(owed_back)))
    return _record(session, actor, view, "refund", "cash", value, shift)


def record_transfer(session: Session, actor: Actor, view: BillView, txn: BankTransaction) -> Payment:
    """A QR transfer the bank confirmed; billing.bank has locked and recomputed the bill and decided that
    the amount is not more than what is due."""
    return _record(session, actor, view, "payment", "qr", txn.amount, None, bank_transaction_id=txn.id)

"""The cashier's desk: find an encounter, its bill with the BHYT split and the rule that applied, take
cash or card (from the POS slip), show a VietQR that turns "paid" when the bank's notification arrives,
advances and refunds, the shift and its closing report; the bank webhook and the reconciliation."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from billing import bank, bills, charges, payments, vietqr
from billing.charges import ChargeError
from billing.models import BankTransaction, Bill, Charge, Payment
from billing.payments import PaymentError
from billing.web import conf
from core import audit
from core.audit import Actor
from core.web import config, current_actor, db_session
from core.web.security import csrf, public, require
from his.models.encounters import Encounter
from his.models.patients import Patient
from his.stock import format_quantity

bp = Blueprint("billing_cashier", __name__, template_folder="../templates", static_folder="../static",
               static_url_path="/billing/static")
READ, TAKE = "billing.charge.read", "billing.payment.take"
ADJUST, REVIEW = "billing.charge.adjust", "billing.bank.review"
BANK = Actor.system("bank")
BILL_STATUS = {"open": _l("Unpaid"), "paid": _l("Paid")}
PAYMENT_KIND = {"payment": _l("Payment"), "advance": _l("Advance payment"), "refund": _l("Refund")}
METHOD = {"cash": _l("Cash"), "qr": _l("QR transfer"), "card": _l("Card")}
HOLD = {"amount_mismatch": _l("Amount differs from the bill"), "already_paid": _l("Bill already paid"),
        "unpriced_charges": _l("Charges without a price")}


@bp.app_context_processor
def _labels():
    return {"bill_status": lambda s: BILL_STATUS.get(s, s), "payment_kind": lambda s: PAYMENT_KIND.get(s, s),
            "payment_method": lambda s: METHOD.get(s, s), "hold_reason": lambda s: HOLD.get(s, s or ""),
            "quantity": format_quantity}


def _encounter_or_404(encounter_id: int) -> Encounter:
    encounter = db_session().get(Encounter, encounter_id)
    if encounter is None:
        abort(404)
    return encounter


def _view(encounter: Encounter) -> bills.BillView:
    if encounter.kind in bills.INPATIENT_KINDS and encounter.status == "admitted":
        charges.charge_bed_days(db_session(), current_actor(), encounter)  # days up to now
    return bills.compute(db_session(), current_actor(), encounter, conf().facility_level)


def _qr_text(view: bills.BillView) -> str | None:
    settings = conf()
    if not (settings.bank_bin and settings.bank_account) or view.patient_due <= 0 or view.unpriced:
        return None
    return vietqr.payload(settings.bank_bin, settings.bank_account, view.patient_due, bank.reference_of(view.bill),
                          merchant_name=settings.merchant_name)


@bp.get("/billing")
@require(TAKE)
def desk():
    """Encounters by code, patient code or name; without a query, today's encounters with a bill."""
    sess, query = db_session(), (request.args.get("q") or "").strip()
    stmt = (select(Encounter).options(selectinload(Encounter.patient)).join(Patient)
            .order_by(Encounter.started_at.desc()))
    if query:
        folded = f"%{query.lower()}%"
        stmt = stmt.where(or_(Encounter.code == query, Patient.code == query, Patient.name_folded.like(folded)))
    else:
        stmt = stmt.join(Bill, Bill.encounter_id == Encounter.id)
    rows = sess.scalars(stmt.limit(50)).all()
    audit.record(sess, current_actor(), "billing.desk.list", None,
                 {"query": query, "patients": [e.patient_id for e in rows]})
    return render_template("billing/desk.html", rows=rows, query=query,
                           shift=payments.current_shift(sess, current_actor()))


@bp.get("/billing/encounters/<int:encounter_id>")
@require(READ)
def bill(encounter_id: int):
    encounter = _encounter_or_404(encounter_id)
    view = _view(encounter)
    return render_template("billing/bill.html", encounter=encounter, view=view,
                           shift=payments.current_shift(db_session(), current_actor()),
                           qr_ready=_qr_text(view) is not None)


def _back(encounter_id: int):
    return redirect(url_for(".bill", encounter_id=encounter_id))


@bp.post("/billing/encounters/<int:encounter_id>/pay")
@require(TAKE)
def pay(encounter_id: int):
    sess, form = db_session(), request.form
    encounter = _encounter_or_404(encounter_id)
    kind, method = form.get("kind", "payment"), form.get("method", "cash")
    try:
        view = _view(encounter)
        slip = {"card_approval_code": form.get("card_approval_code"), "card_terminal": form.get("card_terminal")}
        if kind == "advance":
            payment = payments.take_advance(sess, current_actor(), view, method, form.get("amount"), **slip)
        elif kind == "refund":
            payment = payments.refund(sess, current_actor(), view, form.get("amount"))
        else:
            payment = payments.take_payment(sess, current_actor(), view, method, form.get("amount"), **slip)
        sess.commit()
    except PaymentError as exc:
        sess.rollback()
        flash(str(exc), "error")
        return _back(encounter_id)
    flash(_("Receipt %(number)s recorded.", number=payment.receipt_number), "success")
    return redirect(url_for(".receipt", payment_id=payment.id))


@bp.post("/billing/encounters/<int:encounter_id>/adjust")
@require(ADJUST)
def adjust(encounter_id: int):
    sess = db_session()
    try:
        charges.adjust(sess, current_actor(), _encounter_or_404(encounter_id), request.form.get("amount"),
                       request.form.get("reason"))
        sess.commit()
        flash(_("Saved."), "success")
    except ChargeError as exc:
        sess.rollback()
        flash(str(exc), "error")
    return _back(encounter_id)


@bp.post("/billing/charges/<int:charge_id>/reprice")
@require(TAKE)
def reprice(charge_id: int):
    sess = db_session()
    charge = sess.get(Charge, charge_id) or abort(404)
    try:
        charges.reprice(sess, current_actor(), charge)
        sess.commit()
        flash(_("Saved."), "success")
    except ChargeError as exc:
        sess.rollback()
        flash(str(exc), "error")
    return _back(charge.encounter_id)


@bp.get("/billing/bills/<int:bill_id>/qr")
@require(TAKE)
def qr(bill_id: int):
    bill_row = db_session().get(Bill, bill_id) or abort(404)
    view = _view(bill_row.encounter)
    text = _qr_text(view)
    return render_template("billing/qr.html", view=view, encounter=bill_row.encounter, text=text,
                           image=vietqr.svg(text) if text else None, reference=bank.reference_of(bill_row))


@bp.get("/billing/bills/<int:bill_id>/status")
@require(READ)
def status(bill_id: int):
    """What the QR page polls: paid yet?"""
    bill_row = db_session().get(Bill, bill_id) or abort(404)
    paid = sum((p.amount for p in bill_row.payments if p.kind != "refund"), 0)
    return jsonify(status=bill_row.status, code=bill_row.code, paid=str(paid),
                   paid_at=bill_row.paid_at.isoformat() if bill_row.paid_at else None)


@bp.get("/billing/payments/<int:payment_id>")
@require(READ)
def receipt(payment_id: int):
    payment = db_session().get(Payment, payment_id) or abort(404)
    audit.record(db_session(), current_actor(), "billing.receipt.read", payment,
                 {"bill": payment.bill.code, "patient_id": payment.bill.patient_id})
    view = _view(payment.bill.encounter)
    text = _qr_text(view)
    return render_template("billing/receipt.html", payment=payment, view=view, encounter=payment.bill.encounter,
                           image=vietqr.svg(text) if text else None)


@bp.route("/billing/shift", methods=["GET", "POST"])
@require(TAKE)
def shift():
    sess, actor = db_session(), current_actor()
    closed = None
    if request.method == "POST":
        try:
            if request.form.get("action") == "open":
                payments.open_shift(sess, actor, request.form.get("opening_float") or "0")
            else:
                closed = payments.close_shift(sess, actor, request.form.get("counted_cash") or "0")
            sess.commit()
        except PaymentError as exc:
            sess.rollback()
            flash(str(exc), "error")
    current = payments.current_shift(sess, actor)
    report = payments.shift_report(sess, current) if current else None
    return render_template("billing/shift.html", shift=current, report=report, closed=closed)


# --- the bank -----------------------------------------------------------------------------------

@bp.post("/billing/bank/notify")
@public
@csrf.exempt
def bank_notify():
    """The bank's credit notification: signed, recorded once, applied or held. 2xx only after the commit."""
    sess, body = db_session(), request.get_data(cache=False)
    if not bank.verify(conf().webhook_secret, body, request.headers.get(bank.SIGNATURE_HEADER)):
        sess.rollback()
        audit.record(sess, BANK, "billing.bank.bad_signature", None, {"ip": request.remote_addr, "bytes": len(body)})
        sess.commit()
        return jsonify(error={"code": "bad_signature", "message": "signature missing or invalid"}), 401
    try:
        note, raw = bank.parse(body)
    except bank.NotificationError as exc:
        return jsonify(error={"code": "malformed", "message": str(exc)}), 400
    txn, new = bank.receive(sess, BANK, note, raw, conf().facility_level)
    try:
        sess.commit()
    except IntegrityError:  # the same notification committed by a parallel delivery a moment ago
        sess.rollback()
        txn, new = sess.scalar(select(BankTransaction).where(BankTransaction.bank_txn_id == note.transaction_id)), False
    return jsonify(status=txn.status, hold_reason=txn.hold_reason, duplicate=not new), 200


@bp.get("/billing/bank")
@require(REVIEW)
def reconciliation():
    tz = config().tz
    try:
        day = datetime.strptime(request.args.get("day", ""), "%Y-%m-%d").date()
    except ValueError:
        day = datetime.now(tz).date()
    start = datetime.combine(day, time.min, tzinfo=tz)
    report = bank.reconcile(db_session(), current_actor(), start, start + timedelta(days=1))
    return render_template("billing/reconciliation.html", report=report, day=day)

"""The cashier's desk: find an encounter, its bill with the BHYT split and the rule that applied, take
cash or card (from the POS slip), show a VietQR that turns "paid" when the bank's notification arrives,
advances and refunds, the shift and its closing report; the bank webhook and the reconciliation."""

from __future__ import annotations

import logging
import time as clock
from datetime import datetime, time, timedelta

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from billing import bank, bills, charges, payments, vietqr
from billing.bank import ResolveError
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
from his.text import fold

log = logging.getLogger(__name__)

bp = Blueprint("billing_cashier", __name__, template_folder="../templates", static_folder="../static",
               static_url_path="/billing/static")
READ, TAKE = "billing.charge.read", "billing.payment.take"
ADJUST, REVIEW = "billing.charge.adjust", "billing.bank.review"
BANK = Actor.system("bank")
BILL_STATUS = {"open": _l("Unpaid"), "paid": _l("Paid")}
PAYMENT_KIND = {"payment": _l("Payment"), "advance": _l("Advance payment"), "refund": _l("Refund")}
METHOD = {"cash": _l("Cash"), "qr": _l("QR transfer"), "card": _l("Card")}
HOLD = {"amount_mismatch": _l("Amount differs from the bill"), "already_paid": _l("Bill already paid"),
        "unpriced_charges": _l("Charges without a price"), "wrong_account": _l("Credited to another account")}
RESOLUTION = {"refunded": _l("Refunded to the payer"), "dismissed": _l("Dismissed")}
BAD_SIGNATURE_AUDIT_EVERY = 60.0  # seconds
_bad_signatures = {"audited_at": None, "since": 0}


@bp.app_context_processor
def _labels():
    return {"bill_status": lambda s: BILL_STATUS.get(s, s), "payment_kind": lambda s: PAYMENT_KIND.get(s, s),
            "payment_method": lambda s: METHOD.get(s, s), "hold_reason": lambda s: HOLD.get(s, s or ""),
            "resolution": lambda s: RESOLUTION.get(s, s),
            "quantity": format_quantity}


def _encounter_or_404(encounter_id: int) -> Encounter:
    encounter = db_session().get(Encounter, encounter_id)
    if encounter is None:
        abort(404)
    return encounter


def _view(encounter: Encounter) -> bills.BillView:
    """For a screen (GET): computed now, nothing written but the audit of the read."""
    return bills.preview(db_session(), current_actor(), encounter, conf().facility_level)


def _updated(encounter: Encounter) -> bills.BillView:
    """For a POST: bed days charged up to now, the bill locked, recomputed and kept (settled when balanced)."""
    if encounter.kind in bills.INPATIENT_KINDS and encounter.status == "admitted":
        charges.charge_bed_days(db_session(), current_actor(), encounter)
    return bills.compute(db_session(), current_actor(), encounter, conf().facility_level)


def _qr_possible(view: bills.BillView) -> bool:
    settings = conf()
    return bool(settings.bank_bin and settings.bank_account) and view.patient_due > 0 and not view.unpriced


def _qr_text(view: bills.BillView) -> str | None:
    if not (view.bill.code and _qr_possible(view)):
        return None
    settings = conf()
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
        # A prefix of the folded name ("Nguyễn" finds "nguyen van an"), LIKE wildcards typed taken literally.
        prefix = fold(query).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(or_(Encounter.code == query, Patient.code == query,
                              Patient.name_folded.like(prefix, escape="\\")))
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
                           qr_ready=_qr_possible(view))


def _back(encounter_id: int):
    return redirect(url_for(".bill", encounter_id=encounter_id))


@bp.post("/billing/encounters/<int:encounter_id>/update")
@require(TAKE)
def update(encounter_id: int):
    """Open or bring the bill up to date (bed days so far); a bill with nothing left to pay is settled."""
    _updated(_encounter_or_404(encounter_id))
    db_session().commit()
    flash(_("The bill is up to date."), "success")
    return _back(encounter_id)


@bp.post("/billing/encounters/<int:encounter_id>/qr")
@require(TAKE)
def choose_qr(encounter_id: int):
    """The cashier chooses QR: the bill is opened (its code is the transfer reference) and brought up to date."""
    view = _updated(_encounter_or_404(encounter_id))
    db_session().commit()
    return redirect(url_for(".qr", bill_id=view.bill.id))


@bp.post("/billing/encounters/<int:encounter_id>/pay")
@require(TAKE)
def pay(encounter_id: int):
    sess, form = db_session(), request.form
    encounter = _encounter_or_404(encounter_id)
    kind, method = form.get("kind", "payment"), form.get("method", "cash")
    try:
        view = _updated(encounter)
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
    signature = request.headers.get(bank.SIGNATURE_HEADER)
    if not bank.verify(conf().webhook_secret, body, signature):
        sess.rollback()
        _bad_signature(sess, signature, len(body))
        return jsonify(error={"code": "bad_signature", "message": "signature missing or invalid"}), 401
    try:
        note, raw = bank.parse(body)
    except bank.NotificationError as exc:
        return jsonify(error={"code": "malformed", "message": str(exc)}), 400
    txn, new = bank.receive(sess, BANK, note, raw, conf().facility_level, conf().bank_account)
    try:
        sess.commit()
    except IntegrityError:  # the same notification committed by a parallel delivery a moment ago
        sess.rollback()
        txn, new = sess.scalar(select(BankTransaction).where(BankTransaction.bank_txn_id == note.transaction_id)), False
    return jsonify(status=txn.status, hold_reason=txn.hold_reason, duplicate=not new), 200


def _bad_signature(sess, signature: str | None, size: int) -> None:
    """Every refusal is logged and counted; the audit chain gets at most one event a minute, and only for a
    well-formed signature (a wrong key at the bank or a forger who knows the protocol). Anyone can post here
    without logging in, so auditing each request would let a flood fill the chain."""
    _bad_signatures["since"] += 1
    log.warning("bank webhook: bad signature from %s (%d bytes, %d since the last audit)", request.remote_addr,
                size, _bad_signatures["since"])
    now, last = clock.monotonic(), _bad_signatures["audited_at"]
    if not bank.well_formed(signature) or (last is not None and now - last < BAD_SIGNATURE_AUDIT_EVERY):
        return
    audit.record(sess, BANK, "billing.bank.bad_signature", None,
                 {"ip": request.remote_addr, "bytes": size, "refused_since_last": _bad_signatures["since"]})
    sess.commit()
    _bad_signatures["audited_at"], _bad_signatures["since"] = now, 0


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


@bp.post("/billing/bank/<int:txn_id>/resolve")
@require(REVIEW)
def resolve(txn_id: int):
    """A held or unmatched credit: apply it to a bill, record its refund, or dismiss it with a reason."""
    sess, form = db_session(), request.form
    txn = sess.get(BankTransaction, txn_id) or abort(404)
    code = (form.get("bill") or "").strip().upper()
    target = sess.scalar(select(Bill).where(Bill.code == code)) if code else None
    day = txn.credited_at.astimezone(config().tz).date().isoformat()
    try:
        if code and target is None:
            raise ResolveError("no_bill", _l("No bill has the code %(code)s.", code=code))
        bank.resolve(sess, current_actor(), txn, form.get("action", ""), target, form.get("reason"),
                     facility_level=conf().facility_level)
        sess.commit()
    except ResolveError as exc:
        sess.rollback()
        flash(str(exc), "error")
    else:
        flash(_("Credit %(txn)s resolved.", txn=txn.bank_txn_id), "success")
    return redirect(url_for(".reconciliation", day=day))

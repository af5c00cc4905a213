"""The pharmacy counter: find a patient's open prescriptions and dispense them."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from core import audit
from core.web import current_actor, db_session
from core.web.security import require
from his import dispensing, stock
from his.models.encounters import Encounter
from his.models.orders import Order
from his.models.patients import Patient
from his.stock import StockError
from his.web._helpers import today

bp = Blueprint("his_dispensing", __name__, template_folder="../templates")


def _encounters_for(q: str) -> list[Encounter]:
    """By encounter code, or every visit of the patient with that code."""
    sess = db_session()
    by_code = sess.scalars(select(Encounter).where(Encounter.code == q)).all()
    if by_code:
        return list(by_code)
    patient = sess.scalar(select(Patient).where(Patient.code == q))
    return list(sess.scalars(select(Encounter).where(Encounter.patient_id == patient.id))) if patient else []


def _page(status: int = 200, error: str | None = None):
    q = request.values.get("q", "").strip()
    sess = db_session()
    found = dispensing.open_prescriptions(sess, [e.id for e in _encounters_for(q)]) if q else []
    rows = [(order, dispensing.line_statuses(sess, order)) for order in found]
    if found:
        audit.record(sess, current_actor(), "prescription.view", None,
                     {"orders": [o.id for o in found], "patients": sorted({o.patient_id for o in found})})
    return render_template("his/pharmacy/prescriptions.html", q=q, rows=rows, error=error,
                           warehouses=stock.warehouses(sess)), status


@bp.get("/pharmacy/prescriptions")
@require("his.pharmacy.dispense")
def prescriptions():
    return _page()


@bp.post("/pharmacy/prescriptions/<int:order_id>/dispense")
@require("his.pharmacy.dispense")
def dispense(order_id: int):
    sess = db_session()
    # Locked: the same prescription dispensed at two counters at once is dispensed once.
    order = sess.get(Order, order_id, with_for_update={"of": Order}, populate_existing=True)
    warehouse = stock.warehouse_by_code(sess, request.form.get("warehouse", "")) if request.form.get("warehouse") \
        else None
    if order is None:
        abort(404)
    try:
        if warehouse is None:
            raise StockError("bad_warehouse", "warehouse", _("Choose an active warehouse."))
        results = dispensing.dispense_prescription(sess, current_actor(), warehouse, order, today=today())
    except StockError as exc:
        sess.rollback()
        response = _page(422, str(exc))
        sess.commit()  # the audit of the list shown with the error
        return response
    sess.commit()
    for result in results:
        for warning in result.warnings:
            flash(str(warning), "warning")
    flash(_("Prescription dispensed."), "success")
    return redirect(url_for(".prescriptions", q=request.form.get("q", "")))

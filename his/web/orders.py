"""The doctor's order screens: an encounter's orders (list, status actions), forms to order tests,
imaging and procedures from the service catalogue and to write a prescription from the drug
catalogue, and the printable prescription."""

from __future__ import annotations

from decimal import Decimal

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from core.web import config, current_actor, db_session
from core.web.security import require
from his import catalog, orders, prescriptions
from his.models.encounters import Encounter
from his.models.orders import Order
from his.orders import OrderError
from his.web._helpers import flag, today

bp = Blueprint("his_orders", __name__, template_folder="../templates", static_folder="../static",
               static_url_path="/his/orders/static")

RX_ROWS = 5
KIND_LABELS = {"lab": _l("Laboratory test"), "imaging": _l("Imaging"), "procedure": _l("Procedure"),
               "prescription": _l("Prescription")}
STATUS_LABELS = {"placed": _l("Ordered"), "in_progress": _l("In progress"), "completed": _l("Completed"),
                 "cancelled": _l("Cancelled"), "reversed": _l("Reversed")}
PAYER_LABELS = {"bhyt": _l("BHYT"), "fee": _l("Fee"), "on_demand": _l("On demand")}


def number(value) -> str:
    """1 → '1', 0.500 → '0,5' (Vietnamese decimal comma)."""
    if value is None:
        return ""
    return format(Decimal(value).normalize(), "f").replace(".", ",")


@bp.app_context_processor
def _labels():
    return {"order_kind": lambda k: KIND_LABELS.get(k, k), "order_status": lambda s: STATUS_LABELS.get(s, s),
            "order_payer": lambda p: PAYER_LABELS.get(p, p), "order_number": number}


def _encounter_or_404(encounter_id: int) -> Encounter:
    encounter = db_session().get(Encounter, encounter_id)
    if encounter is None:
        abort(404)
    return encounter


def _page(encounter: Encounter, *, errors: dict | None = None, error=None, form=None, status: int = 200):
    sess, actor = db_session(), current_actor()
    day = today()
    kind = request.values.get("kind") if request.values.get("kind") in orders.SERVICE_KINDS else "lab"
    services, drugs, service_prices, drug_prices = [], [], {}, {}
    service_query, drug_query = (request.args.get("sq") or "").strip(), (request.args.get("dq") or "").strip()
    if service_query:
        services, _total = catalog.search_services(sess, service_query, on=day, per_page=20)
        service_prices = catalog.prices_in_force(sess, services, day)
    if drug_query:
        drugs, _total = catalog.search_drugs(sess, drug_query, on=day, per_page=20)
        drug_prices = catalog.prices_in_force(sess, drugs, day)
    return render_template(
        "his/orders/encounter_orders.html", encounter=encounter, orders=orders.of_encounter(sess, actor, encounter),
        kind=kind, kinds=orders.SERVICE_KINDS, services=services, service_prices=service_prices, drugs=drugs,
        drug_prices=drug_prices, service_query=service_query, drug_query=drug_query, rx_rows=RX_ROWS,
        errors=errors or {}, error=error, form=form or {}, open_encounter=encounter.status not in (
            "cancelled", *orders.CLOSED_ENCOUNTER)), status


@bp.get("/encounters/<int:encounter_id>/orders")
@require("his.encounter.read")
def encounter_orders(encounter_id: int):
    return _page(_encounter_or_404(encounter_id))


def _service_items(form) -> list[dict]:
    items = [{"code": code, "quantity": form.get(f"quantity.{code}", "1"), "payer": form.get(f"payer.{code}") or None}
             for code in form.getlist("code")]
    typed = (form.get("code_typed") or "").replace(",", " ").split()
    items += [{"code": code, "quantity": "1"} for code in typed]
    return items


def _drug_items(form) -> list[dict]:
    names = ("code", "dose", "frequency", "days", "quantity", "route", "instructions")
    return [{name: form.get(f"rx-{i}-{name}", "") for name in names} for i in range(RX_ROWS)]


@bp.post("/encounters/<int:encounter_id>/orders")
@require("his.order.create")
def place(encounter_id: int):
    sess, actor = db_session(), current_actor()
    encounter = _encounter_or_404(encounter_id)
    form = request.form
    kind = form.get("kind", "")
    items = _drug_items(form) if kind == "prescription" else _service_items(form)
    try:
        order = orders.place_order(sess, actor, encounter, kind, items, on=today(),
                                   diagnosis_id=form.get("diagnosis_id"), note=form.get("note"),
                                   chronic=flag(form, "chronic"), weight_kg=form.get("weight_kg"),
                                   guardian_name=form.get("guardian_name"))
    except OrderError as exc:
        sess.rollback()
        field = exc.field or "kind"
        if kind == "prescription" and exc.index is not None:
            field = f"rx-{exc.index}-{field.rsplit('.', 1)[-1]}"
        return _page(encounter, errors={field: str(exc)}, error=exc, form=form, status=422)
    sess.commit()
    flash(_("Order placed: %(kind)s, %(n)d item(s).", kind=KIND_LABELS[order.kind], n=len(order.lines)), "success")
    return redirect(url_for(".encounter_orders", encounter_id=encounter_id))


def _order_or_404(order_id: int) -> Order:
    # Locked: a start and a cancel at the same moment happen one after the other, not both.
    order = db_session().get(Order, order_id, with_for_update={"of": Order}, populate_existing=True)
    if order is None:
        abort(404)
    return order


def _change(order_id: int, action):
    sess, actor = db_session(), current_actor()
    order = _order_or_404(order_id)
    try:
        action(sess, actor, order)
        sess.commit()
        flash(_("Saved."), "success")
    except OrderError as exc:
        sess.rollback()
        flash(str(exc), "error")
    return redirect(url_for(".encounter_orders", encounter_id=order.encounter_id))


@bp.post("/orders/<int:order_id>/cancel")
@require("his.order.create")
def cancel(order_id: int):
    return _change(order_id, lambda s, a, o: orders.cancel(s, a, o, request.form.get("reason")))


@bp.post("/orders/<int:order_id>/reverse")
@require("his.order.create")
def reverse(order_id: int):
    return _change(order_id, lambda s, a, o: orders.reverse(s, a, o, request.form.get("reason")))


@bp.post("/orders/<int:order_id>/start")
@require(orders.PERFORM)
def start(order_id: int):
    return _change(order_id, lambda s, a, o: orders.start(s, a, o, machine_code=request.form.get("machine_code")))


@bp.post("/orders/<int:order_id>/complete")
@require(orders.PERFORM)
def complete(order_id: int):
    return _change(order_id, lambda s, a, o: orders.complete(s, a, o, machine_code=request.form.get("machine_code")))


@bp.get("/orders/<int:order_id>/print")
@require("his.encounter.read")
def print_prescription(order_id: int):
    order = orders.get(db_session(), current_actor(), order_id, action="order.print")
    if order is None or order.kind != "prescription":
        abort(404)
    encounter = order.encounter
    day = order.ordered_at.astimezone(config().tz).date()
    months = orders.age_in_months(encounter.patient, day)
    years = months // 12 if months is not None else day.year - encounter.patient.birth_year
    category = {prescriptions.category(line.drug) for line in order.lines if line.drug}
    special = "N" if "narcotic" in category else "H" if "psychotropic" in category else None
    return render_template("his/orders/prescription_print.html", order=order, encounter=encounter,
                           patient=encounter.patient, lines=prescriptions.toxic_first(order.lines), day=day,
                           months=months if months is not None and months < orders.CHILD_MONTHS else None,
                           years=years, special=special, copies=3 if special else 1, label=prescriptions.drug_label,
                           quantity_text=prescriptions.quantity_text, number_words=prescriptions.number_words,
                           card=encounter.bhyt_card)


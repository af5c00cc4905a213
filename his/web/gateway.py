"""BHYT card checks on screen: the result box (polled while the portal has not answered), the list of
encounters still waiting for a verified card (cashier, insurance officer), a repeat of the lookup,
the result on the encounter and patient pages, and the log of exchanges with the portal."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from core import audit
from core.web import NavEntry, add_nav, current_actor, db_session, safe_next
from core.web.security import require
from his.gateway import cards
from his.gateway.client import GatewayClient, GatewayNotConfigured, GatewaySettings
from his.models.gateway import CARD_CHECK_STATUSES, CardCheck, GatewayExchange
from his.web import panels

bp = Blueprint("his_gateway", __name__, template_folder="../templates", static_folder="../static",
               static_url_path="/his/gateway/static")

STATUS_LABELS = {"verified": _l("Verified"), "refused": _l("Card not usable"), "pending": _l("Not verified"),
                 "failed": _l("Not verified — check by hand")}
EXCHANGE_PAGE = 100


def desk_client() -> GatewayClient | None:
    """The portal client of this installation, or None when it is not connected to a portal."""
    try:
        return GatewayClient.from_config(current_app.extensions["vnhis.config"])
    except GatewayNotConfigured:
        return None


@bp.app_context_processor
def _helpers():
    return {"card_check_label": lambda check: STATUS_LABELS[cards.state(check)], "card_check_state": cards.state,
            "card_check_message": cards.message, "card_check_warnings": cards.warning_texts,
            "gateway_connected": lambda: GatewaySettings.from_config(current_app.extensions["vnhis.config"])
            is not None}


def _check_or_404(check_id: int) -> CardCheck:
    check = db_session().get(CardCheck, check_id)
    if check is None:
        abort(404)
    audit.record(db_session(), current_actor(), "bhyt.card_check.read", check, {"patient_id": check.patient_id})
    return check


@bp.get("/card-checks")
@require("his.gateway.checks")
def check_list():
    sess = db_session()
    status = request.args.get("status", "pending")
    if status not in CARD_CHECK_STATUSES:
        status = "pending"
    if status == "pending":
        rows = cards.pending_checks(sess)
    else:
        rows = list(sess.scalars(select(CardCheck).where(CardCheck.status == status, CardCheck.superseded_at.is_(None))
                                 .order_by(CardCheck.requested_at.desc()).limit(200)))
    audit.record(sess, current_actor(), "bhyt.card_check.list", None,
                 {"status": status, "patients": sorted({c.patient_id for c in rows})})
    sess.commit()
    return render_template("his/gateway/checks.html", rows=rows, status=status, labels=STATUS_LABELS)


@bp.get("/card-checks/<int:check_id>")
@require("his.gateway.checks")
def check_box(check_id: int):
    """The result box alone: the desk page asks for it again while the check is pending."""
    check = _check_or_404(check_id)
    db_session().commit()
    return render_template("his/gateway/_check_box.html", check=check)


@bp.post("/card-checks/<int:check_id>/retry")
@require("his.gateway.checks")
def check_retry(check_id: int):
    sess, actor = db_session(), current_actor()
    check = _check_or_404(check_id)
    sess.refresh(check, with_for_update=True)  # not at the same moment as the retry job
    if check.status == "pending" and check.superseded_at is None:
        client = desk_client()
        cards.check_now(sess, actor, check, client)
        sess.commit()
        flash(str(cards.message(check)), "success" if check.status == "verified" else "warning")
    return redirect(safe_next(request.form.get("next"), url_for(".check_list")))


@bp.get("/gateway/exchanges")
@require("his.gateway.exchanges")
def exchanges():
    sess = db_session()
    stmt = select(GatewayExchange).order_by(GatewayExchange.id.desc()).limit(EXCHANGE_PAGE)
    subject, operation = request.args.get("subject", "").strip(), request.args.get("operation", "").strip()
    if subject:
        stmt = stmt.where(GatewayExchange.subject == subject)
    if operation:
        stmt = stmt.where(GatewayExchange.operation == operation)
    rows = sess.scalars(stmt).all()
    audit.record(sess, current_actor(), "gateway.exchange.list", None, {"subject": subject, "operation": operation})
    sess.commit()
    return render_template("his/gateway/exchanges.html", rows=rows, subject=subject, operation=operation)


@bp.get("/gateway/exchanges/<int:exchange_id>")
@require("his.gateway.exchanges")
def exchange(exchange_id: int):
    sess = db_session()
    row = sess.get(GatewayExchange, exchange_id)
    if row is None:
        abort(404)
    audit.record(sess, current_actor(), "gateway.exchange.read", row, {"subject": row.subject})
    sess.commit()
    return render_template("his/gateway/exchange.html", row=row)


def _encounter_panel(encounter) -> str:
    check = cards.current_check(db_session(), encounter)
    return render_template("his/gateway/encounter_panel.html", check=check, encounter=encounter)


def _patient_panel(patient) -> str:
    checks = db_session().scalars(select(CardCheck).where(CardCheck.patient_id == patient.id)
                                  .order_by(CardCheck.id.desc()).limit(10)).all()
    return render_template("his/gateway/patient_panel.html", checks=checks)


@bp.record_once
def _setup(state) -> None:
    GatewaySettings.from_config(state.app.extensions["vnhis.config"])  # a wrong setting stops the start
    panels.add(state.app, "encounter", "bhyt_card_check", _encounter_panel, order=100,
               permission="his.encounter.read")
    panels.add(state.app, "patient", "bhyt_card_checks", _patient_panel, order=100, permission="his.gateway.checks")
    add_nav(state.app, NavEntry("his_gateway.check_list", _l("BHYT card checks"), "his.gateway.checks",
                                _l("Patients"), 120))
    add_nav(state.app, NavEntry("his_gateway.exchanges", _l("BHYT portal exchanges"), "his.gateway.exchanges",
                                _l("Patients"), 130))

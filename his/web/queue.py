"""Queues: the desk that calls numbers, the public waiting-room board, the printed ticket."""

from __future__ import annotations

from datetime import datetime

import segno
from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from markupsafe import Markup

from core import audit
from core.web import NavEntry, add_nav, config, current_actor, db_session
from core.web.security import public, require
from his import tickets
from his.models.tickets import Ticket
from his.tickets import TicketError
from his.web._helpers import active_points, point_or_404, today

bp = Blueprint("his_queue", __name__, template_folder="../templates", static_folder="../static",
               static_url_path="/his/static")

# How often the board asks for changes; short polling keeps no request open on the server.
BOARD_POLL_MS = 2000


@bp.get("/queue")
@require("his.queue.manage")
def points():
    return render_template("his/queue_points.html", points=active_points())


@bp.get("/queue/<code>")
@require("his.queue.manage")
def desk(code: str):
    point = point_or_404(code)
    view = tickets.board(db_session(), point, today(), show=30)
    shown = [t.patient_id for t in view.called + view.waiting if t.patient_id]
    audit.record(db_session(), current_actor(), "queue.view", point, {"patients": shown})
    return render_template("his/queue_desk.html", point=point, view=view)


def _ticket_of(point_code: str, ticket_id: int) -> Ticket:
    # Locked: two desks acting on one ticket at once are served one after the other.
    ticket = db_session().get(Ticket, ticket_id, with_for_update=True, populate_existing=True)
    if ticket is None or ticket.service_point.code != point_code:
        abort(404)
    return ticket


@bp.post("/queue/<code>/next")
@require("his.queue.manage")
def call_next(code: str):
    point = point_or_404(code)
    ticket = tickets.call_next(db_session(), current_actor(), point, day=today())
    db_session().commit()
    if ticket is None:
        flash(str(_l("Nobody is waiting.")), "info")
    return redirect(url_for(".desk", code=code))


@bp.post("/queue/<code>/tickets/<int:ticket_id>/<action>")
@require("his.queue.manage")
def ticket_action(code: str, ticket_id: int, action: str):
    ticket = _ticket_of(code, ticket_id)
    sess, actor = db_session(), current_actor()
    try:
        if action == "recall":
            tickets.recall(sess, actor, ticket)
        elif action == "skip":
            tickets.skip(sess, actor, ticket)
        elif action == "done":
            tickets.done(sess, actor, ticket)
        elif action == "serve":
            tickets.serve(sess, actor, ticket)
        elif action == "call":
            tickets.call(sess, actor, ticket, request.form.get("reason", ""))
        elif action == "transfer":
            tickets.transfer(sess, actor, ticket, point_or_404(request.form.get("to", "")), day=today())
        else:
            abort(404)
        sess.commit()
    except TicketError as exc:
        sess.rollback()
        flash(str(exc), "error")
    return redirect(url_for(".desk", code=code))


def _clock() -> dict:
    """The hospital's time for the board's clock: the screen's browser may be set to another zone (or be
    wrong), so it shows the server's time in VNHIS_TIMEZONE and ticks on from it."""
    now = datetime.now(config().tz)
    return {"now_ms": int(now.timestamp() * 1000), "utc_offset_minutes": int(now.utcoffset().total_seconds()) // 60,
            "time": f"{now:%H:%M}"}


@bp.get("/board/<code>")
@public
def board(code: str):
    """The waiting-room screen: numbers only (no names on a public screen), refreshed without reload."""
    point = point_or_404(code)
    return render_template("his/board.html", point=point, view=tickets.board(db_session(), point, today()),
                           poll_ms=BOARD_POLL_MS, clock=_clock())


@bp.get("/board/<code>/state")
@public
def board_state(code: str):
    point = point_or_404(code)
    view = tickets.board(db_session(), point, today())
    return jsonify(version=view.version, point=point.name, waiting_count=view.waiting_count, clock=_clock(),
                   called=[t.display_number for t in view.called],
                   waiting=[{"number": t.display_number, "priority": t.is_priority} for t in view.waiting])


@bp.get("/tickets/<int:ticket_id>/print")
@require("his.queue.manage")
def ticket_print(ticket_id: int):
    """An 80 mm thermal-printer slip; its QR carries the ticket's identity for a kiosk or a scanner."""
    ticket = db_session().get(Ticket, ticket_id)
    if ticket is None:
        abort(404)
    payload = f"VNHIS-TICKET|{ticket.service_point.code}|{ticket.day:%Y%m%d}|{ticket.number}|{ticket.id}"
    qr_svg = Markup(segno.make(payload, error="m").svg_inline(scale=3, border=1))  # noqa: S704 (segno's own SVG)
    waiting_before = tickets.board(db_session(), ticket.service_point, ticket.day).waiting_count
    audit.record(db_session(), current_actor(), "ticket.print", ticket, {"patient_id": ticket.patient_id})
    return render_template("his/ticket_print.html", ticket=ticket, qr_svg=qr_svg, waiting_before=waiting_before)


@bp.record_once
def _nav(state) -> None:
    add_nav(state.app, NavEntry("his_queue.points", _l("Queues"), "his.queue.manage", _l("Patients"), 120))

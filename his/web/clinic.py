"""The doctor's side: today's worklist of a room, an encounter with its diagnoses and status."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from core import audit
from core.audit import Actor
from core.web import NavEntry, add_nav, current_actor, db_session
from core.web.security import require
from his import encounters
from his.catalog import CatalogError
from his.encounters import EncounterError
from his.models.encounters import Encounter
from his.models.org import Room
from his.models.tickets import Ticket
from his.web._helpers import day_start, today

bp = Blueprint("his_clinic", __name__, template_folder="../templates")

KIND_LABELS = {"outpatient": _l("Outpatient"), "emergency": _l("Emergency"), "inpatient": _l("Inpatient"),
               "day_treatment": _l("Day treatment")}
STATUS_LABELS = {"registered": _l("Waiting"), "in_progress": _l("Being examined"), "finished": _l("Finished"),
                 "admitted": _l("Admitted"), "discharged": _l("Discharged"), "cancelled": _l("Cancelled")}


@bp.app_context_processor
def _labels():
    return {"encounter_kind": lambda k: KIND_LABELS.get(k, k), "encounter_status": lambda s: STATUS_LABELS.get(s, s)}


@bp.get("/worklist")
@require("his.encounter.read")
def worklist():
    sess = db_session()
    rooms = sess.scalars(select(Room).where(Room.active, Room.kind == "exam").order_by(Room.code)).all()
    room = next((r for r in rooms if r.code == request.args.get("room")), rooms[0] if rooms else None)
    rows = []
    if room is not None:
        rows = sess.execute(
            select(Encounter, Ticket).outerjoin(Ticket, Ticket.encounter_id == Encounter.id)
            .options(selectinload(Encounter.patient))  # one query for the list's patients, not one each
            .where(Encounter.room_id == room.id, Encounter.started_at >= day_start(today()),
                   Encounter.status != "cancelled")
            .order_by(Ticket.number.nulls_last(), Encounter.id)).all()
    audit.record(sess, current_actor(), "worklist.view", room, {"patients": [e.patient_id for e, _t in rows]})
    return render_template("his/worklist.html", rooms=rooms, room=room, rows=rows)


def _encounter_or_404(encounter_id: int, actor: Actor) -> Encounter:
    encounter = db_session().get(Encounter, encounter_id)
    if encounter is None:
        abort(404)
    audit.record(db_session(), actor, "encounter.read", encounter, {"patient_id": encounter.patient_id})
    return encounter


@bp.get("/encounters/<int:encounter_id>")
@require("his.encounter.read")
def encounter(encounter_id: int):
    return render_template("his/encounter.html", encounter=_encounter_or_404(encounter_id, current_actor()))


@bp.post("/encounters/<int:encounter_id>/diagnoses")
@require("his.encounter.write")
def diagnosis_add(encounter_id: int):
    sess, actor = db_session(), current_actor()
    record = _encounter_or_404(encounter_id, actor)
    position = "principal" if request.form.get("position") == "principal" else "secondary"
    try:
        _row, warnings = encounters.add_diagnosis(sess, actor, record, request.form.get("icd10", ""),
                                                  position=position, on=today())
        sess.commit()
        for warning in warnings:
            flash(str(warning), "warning")
    except (CatalogError, EncounterError) as exc:
        sess.rollback()
        flash(str(exc), "error")
    return redirect(url_for(".encounter", encounter_id=encounter_id))


@bp.post("/encounters/<int:encounter_id>/status")
@require("his.encounter.write")
def status(encounter_id: int):
    sess, actor = db_session(), current_actor()
    record = _encounter_or_404(encounter_id, actor)
    try:
        if request.form.get("status") == "cancelled":
            encounters.cancel(sess, actor, record, request.form.get("reason", ""))
        else:
            encounters.set_status(sess, actor, record, request.form.get("status", ""))
        sess.commit()
        flash(_("Saved."), "success")
    except EncounterError as exc:
        sess.rollback()
        flash(str(exc), "error")
    return redirect(url_for(".encounter", encounter_id=encounter_id))


@bp.record_once
def _nav(state) -> None:
    add_nav(state.app, NavEntry("his_clinic.worklist", _l("Worklist"), "his.encounter.write", _l("Clinic"), 200))

"""Reception and the patient index: scan a CCCD QR or search, register, give a queue number; patient
records with their cards and visits; merge and unmerge."""

from __future__ import annotations

import logging

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from marshmallow import ValidationError
from sqlalchemy import select

from core import audit
from core.web import NavEntry, add_nav, current_actor, db_session
from core.web.security import require
from his import geo, patients, reception
from his.gateway import cards
from his.gateway.cards import CardCheckError
from his.identity import IdentityError
from his.models.encounters import Encounter
from his.models.gateway import CardCheck
from his.models.org import ServicePoint
from his.models.patients import BhytCard, Patient, PatientMerge
from his.models.tickets import Ticket
from his.patients import PatientError
from his.schemas import CardSchema, PatientSchema, error_messages
from his.tickets import TicketError
from his.web._helpers import active_points, day_start, flag, today
from his.web.gateway import desk_client

bp = Blueprint("his_reception", __name__, template_folder="../templates")
log = logging.getLogger(__name__)

PRIORITY_FLAGS = ("pregnant", "disabled", "merit", "emergency")


def _point_from_form() -> ServicePoint | None:
    point = db_session().get(ServicePoint, request.form.get("service_point_id", type=int) or 0)
    return point if point is not None and point.active else None


def _page(status: int = 200, ticket_id: int | None = None, **context):
    q = request.args.get("q", "").strip()
    results, more = patients.search(db_session(), current_actor(), q) if q else ([], False)
    ticket = None
    ticket_id = ticket_id or request.args.get("ticket", type=int)
    if ticket_id:
        ticket = db_session().get(Ticket, ticket_id)
        if ticket is not None and ticket.patient_id:
            audit.record(db_session(), current_actor(), "patient.read", ("patients", ticket.patient_id),
                         {"via": "reception ticket"})
    context.setdefault("selected_point", request.values.get("service_point_id", type=int))
    return render_template("his/reception.html", q=q, results=results, more=more, ticket=ticket,
                           card_check=_card_check_shown(ticket),
                           points=active_points(("exam_room", "lab_collection", "imaging", "cashier", "pharmacy")),
                           **context), status


def _card_check_shown(ticket: Ticket | None) -> CardCheck | None:
    """The check asked for in the address (just made), else the current check of the ticket's visit."""
    sess = db_session()
    check = sess.get(CardCheck, request.args.get("check", type=int) or 0)
    visit = sess.get(Encounter, ticket.encounter_id) if ticket is not None and ticket.encounter_id else None
    if check is None and visit is not None:
        check = cards.current_check(sess, visit)
    if check is None or ticket is None or check.patient_id != ticket.patient_id:
        return None
    audit.record(sess, current_actor(), "bhyt.card_check.read", check, {"patient_id": check.patient_id})
    return check


@bp.get("/reception")
@require("his.patient.write", "his.queue.manage")
def desk():
    return _page()


def _checked_in(arrival):
    for warning in arrival.warnings:
        flash(str(warning), "warning")
    if arrival.already_queued:
        flash(_("%(name)s already has number %(n)s here today.", name=arrival.patient.full_name,
                n=arrival.ticket.display_number), "info")
    elif arrival.patient_created:
        flash(_("New patient %(name)s registered (code %(code)s).", name=arrival.patient.full_name,
                code=arrival.patient.code), "success")
    check = arrival.card_check.id if arrival.card_check is not None else None
    return redirect(url_for(".desk", ticket=arrival.ticket.id, service_point_id=arrival.ticket.service_point_id,
                            check=check))


def _flags() -> dict:
    return {name: flag(request.form, name) for name in PRIORITY_FLAGS}


def _card_wanted() -> bool:
    """The desk asked for the card to be checked on the portal (and this installation is connected)."""
    typed = bool(request.form.get("bhyt_number", "").strip())
    return desk_client() is not None and (flag(request.form, "bhyt") or typed)


def _check_arrival_card(arrival, day) -> None:
    """After the visit and the ticket are committed: look the card up in a transaction of its own, so
    the portal's wait holds no lock of the arrival and no failure of the lookup undoes it (an
    unexpected one leaves the check not verified, for the retry job). A malformed number of an
    emergency patient does not stop the visit (checked before arrival for everybody else)."""
    sess, actor = db_session(), current_actor()
    number, emergency = request.form.get("bhyt_number"), flag(request.form, "emergency")
    try:
        reception.check_card(sess, actor, arrival, desk_client(), day=day, number=number, emergency=emergency)
    except (IdentityError, CardCheckError) as exc:
        sess.rollback()
        _bad_card_input(exc)
        flash(_("The BHYT card was not looked up: %(reason)s", reason=str(exc)), "warning")
        return
    except Exception:
        sess.rollback()
        log.exception("the card check of ticket %s failed; the retry job will look it up", arrival.ticket.id)
        reception.card_check_failed(sess, actor, arrival, day=day, number=number, emergency=emergency)
    sess.commit()


def _bad_card_input(exc) -> None:
    """A card lookup refused at the desk is recorded (what was wrong, not a saved visit)."""
    sess = db_session()
    audit.record(sess, current_actor(), "bhyt.card_check.bad_input", None,
                 {"code": exc.code, "field": exc.field, "path": request.path})
    sess.commit()  # only this audit event is pending: the handler refuses or has committed the arrival


@bp.post("/reception/scan")
@require("his.patient.write", "his.queue.manage")
def scan():
    point = _point_from_form()
    if point is None:
        return _page(422, error=_("Choose where the patient goes."), qr=request.form.get("qr", ""))
    day = today()
    card = _card_wanted()
    if card and not flag(request.form, "emergency"):
        try:
            cards.parse_number(request.form.get("bhyt_number"))  # a typo is fixed before anything is saved
        except IdentityError as exc:
            _bad_card_input(exc)
            return _page(422, error=str(exc), qr=request.form.get("qr", ""),
                         bhyt_number=request.form.get("bhyt_number"))
    try:
        arrival = reception.scan(db_session(), current_actor(), request.form.get("qr", ""), point, day=day,
                                 day_start=day_start(day), **_flags())
    except (IdentityError, PatientError, TicketError) as exc:
        db_session().rollback()
        return _page(422, error=str(exc), qr=request.form.get("qr", ""), bhyt_number=request.form.get("bhyt_number"))
    db_session().commit()  # the patient, the visit and the ticket, before the portal is asked
    if card:
        _check_arrival_card(arrival, day)
    return _checked_in(arrival)


@bp.post("/reception/check-in/<int:patient_id>")
@require("his.patient.write", "his.queue.manage")
def check_in(patient_id: int):
    patient = db_session().get(Patient, patient_id)
    point = _point_from_form()
    if patient is None or patient.merged_into_id is not None:
        abort(404)
    if point is None:
        return _page(422, error=_("Choose where the patient goes."))
    day = today()
    try:
        arrival = reception.check_in(db_session(), current_actor(), patient, point, day=day, day_start=day_start(day),
                                     **_flags())
    except (PatientError, TicketError) as exc:
        db_session().rollback()
        return _page(422, error=str(exc))
    db_session().commit()  # the visit and the ticket, before the portal is asked
    if _card_wanted():
        _check_arrival_card(arrival, day)
    return _checked_in(arrival)


@bp.post("/reception/card-check/<int:ticket_id>")
@require("his.patient.write", "his.gateway.checks")
def card_check(ticket_id: int):
    """Look the card of the ticket's patient up again, e.g. after the spelling of the name was corrected."""
    sess = db_session()
    ticket = sess.get(Ticket, ticket_id)
    if ticket is None or ticket.patient is None:
        abort(404)
    form = request.form
    visit = sess.get(Encounter, ticket.encounter_id) if ticket.encounter_id else None
    try:
        birth = cards.parse_birth(form.get("birth", ""))
        check = cards.request_check(sess, current_actor(), ticket.patient, visit_date=today(), encounter=visit,
                                    number=form.get("bhyt_number"), full_name=form.get("full_name"), birth=birth,
                                    emergency=bool(visit and visit.is_emergency))
    except (IdentityError, CardCheckError) as exc:
        sess.rollback()
        _bad_card_input(exc)
        return _page(422, ticket_id=ticket.id, card_error=str(exc), card_form=form)
    cards.check_now(sess, current_actor(), check, desk_client())
    sess.commit()
    return redirect(url_for(".desk", ticket=ticket.id, service_point_id=ticket.service_point_id, check=check.id))


@bp.route("/patients/new", methods=["GET", "POST"])
@require("his.patient.write")
def patient_new():
    form, errors, candidates = dict(request.form), {}, []
    if request.method == "POST":
        try:
            data = PatientSchema().load({k: v for k, v in request.form.items() if k in PatientSchema().fields})
            registration = patients.register(db_session(), current_actor(), data, today=today(),
                                             confirm_possible_duplicate=flag(request.form, "confirm_duplicate"))
            db_session().commit()
            for warning in registration.warnings:
                flash(str(warning), "warning")
            flash(_("New patient %(name)s registered (code %(code)s).", name=registration.patient.full_name,
                    code=registration.patient.code), "success")
            return redirect(url_for(".patient", patient_id=registration.patient.id))
        except ValidationError as exc:
            errors = error_messages(exc)
        except IdentityError as exc:
            errors = {exc.field: str(exc)}
        except PatientError as exc:
            db_session().rollback()
            errors = {exc.field or "full_name": str(exc)}
            candidates = [db_session().get(Patient, i) for i in exc.extra.get("candidates", [])]
        return render_template("his/patient_new.html", form=form, errors=errors, candidates=candidates,
                               provinces=geo.provinces("post2025")), 422
    return render_template("his/patient_new.html", form=form, errors=errors, candidates=candidates,
                           provinces=geo.provinces("post2025"))


@bp.get("/patients")
@require("his.patient.read")
def patient_search():
    q = request.args.get("q", "").strip()
    page = max(1, request.args.get("page", 1, type=int) or 1)
    rows, more = patients.search(db_session(), current_actor(), q, page=page) if q else ([], False)
    return render_template("his/patients.html", q=q, results=rows, more=more, page=page)


@bp.get("/patients/<int:patient_id>")
@require("his.patient.read")
def patient(patient_id: int):
    record = patients.get(db_session(), current_actor(), patient_id)
    if record is None:
        abort(404)
    return _patient_page(record)


def _patient_page(record: Patient, status: int = 200, card_errors: dict | None = None, card_form: dict | None = None):
    sess = db_session()
    cards = sess.scalars(select(BhytCard).where(BhytCard.patient_id == record.id).order_by(BhytCard.id.desc())).all()
    visits = sess.scalars(select(Encounter).where(Encounter.patient_id == record.id)
                          .order_by(Encounter.started_at.desc()).limit(20)).all()
    merges = sess.scalars(select(PatientMerge).where((PatientMerge.survivor_id == record.id)
                                                     | (PatientMerge.duplicate_id == record.id))
                          .order_by(PatientMerge.id.desc())).all()
    survivor = sess.get(Patient, record.merged_into_id) if record.merged_into_id else None
    ward = geo.lookup_ward(record.ward_code, record.address_scheme or "post2025") if record.ward_code else None
    province = geo.province(record.province_code, record.address_scheme or "post2025") if record.province_code else None
    address = ", ".join(part for part in (record.street, ward.name if ward else None,
                                          province.name if province else None) if part)
    possible = patients.similar_patients(sess, record.full_name, record.birth_year, record.sex, exclude_id=record.id)
    return render_template("his/patient.html", patient=record, cards=cards, visits=visits, merges=merges,
                           survivor=survivor, address=address, possible=possible, card_errors=card_errors or {},
                           card_form=card_form or {}), status


@bp.post("/patients/<int:patient_id>/cards")
@require("his.patient.write")
def card_add(patient_id: int):
    """The card the patient shows at the desk: a new number replaces the current one (history kept)."""
    sess = db_session()
    record = sess.get(Patient, patient_id)
    if record is None:
        abort(404)
    try:
        data = CardSchema().load({k: v for k, v in request.form.items() if k in CardSchema().fields})
        warnings = patients.add_card(sess, current_actor(), record, data, today=today())
    except ValidationError as exc:
        errors = error_messages(exc)
    except (IdentityError, PatientError) as exc:
        sess.rollback()
        errors = {exc.field or "bhyt_number": str(exc)}
    else:
        sess.commit()
        for warning in warnings:
            flash(str(warning), "warning")
        flash(_("Saved."), "success")
        return redirect(url_for(".patient", patient_id=patient_id))
    audit.record(sess, current_actor(), "patient.read", record)
    response = _patient_page(record, 422, errors, request.form)
    sess.commit()  # keeps the audit of the page shown with the error; nothing else is pending
    return response


@bp.post("/patients/<int:patient_id>/merge")
@require("his.patient.merge")
def patient_merge(patient_id: int):
    sess = db_session()
    survivor = sess.get(Patient, patient_id)
    duplicate = sess.scalar(select(Patient).where(Patient.code == request.form.get("duplicate_code", "").strip()))
    if survivor is None:
        abort(404)
    if duplicate is None:
        flash(_("No patient has the code %(code)s.", code=request.form.get("duplicate_code", "")), "error")
        return redirect(url_for(".patient", patient_id=patient_id))
    try:
        patients.merge(sess, current_actor(), survivor, duplicate, request.form.get("reason", ""))
        sess.commit()
        flash(_("Record %(dup)s was merged into %(code)s.", dup=duplicate.code, code=survivor.code), "success")
    except PatientError as exc:
        sess.rollback()
        flash(str(exc), "error")
    return redirect(url_for(".patient", patient_id=patient_id))


@bp.post("/patient-merges/<int:merge_id>/undo")
@require("his.patient.merge")
def merge_undo(merge_id: int):
    sess = db_session()
    record = sess.get(PatientMerge, merge_id)
    if record is None:
        abort(404)
    try:
        patients.unmerge(sess, current_actor(), record, request.form.get("reason", ""))
        sess.commit()
        flash(_("The merge was undone: both records are as they were."), "success")
    except PatientError as exc:
        sess.rollback()
        flash(str(exc), "error")
    return redirect(url_for(".patient", patient_id=record.survivor_id))


@bp.record_once
def _nav(state) -> None:
    section = _l("Patients")
    add_nav(state.app, NavEntry("his_reception.desk", _l("Reception"), "his.patient.write", section, 100))
    add_nav(state.app, NavEntry("his_reception.patient_search", _l("Patients"), "his.patient.read", section, 110))

"""Screens of the medical record: the record's timeline, form entry, a document with its versions and
signature checks, sign, cancel/restore, the emergency-access prompt, print and export, the access
history, overdue documents and the review of emergency accesses. Parse → operation → commit → render.
"""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import or_, select

from core import audit
from core.models import AuditEvent
from core.permissions import has_permission
from core.web import NavEntry, add_nav, config, current_actor, current_user, db_session
from core.web.security import require
from ehr import access, exchange, overdue, printing, records, retention, signing
from ehr.access import AccessDenied
from ehr.form_defs import FORMS, RECORD_FORMS
from ehr.forms import as_input
from ehr.models import BreakGlass, Document, MedicalRecord
from ehr.records import RecordError
from ehr.tsa import TimeStampError
from his.models.encounters import Encounter
from his.web._helpers import today

bp = Blueprint("ehr", __name__, template_folder="templates", url_prefix="/ehr")
STATUS_LABELS = {"active": _l("In treatment"), "closed": _l("Closed"), "archived": _l("Archived"),
                 "destroyed": _l("Destroyed")}


@bp.app_context_processor
def _helpers():
    return {"ehr_forms": FORMS, "ehr_record_status": lambda s: STATUS_LABELS.get(s, s),
            "ehr_class_label": lambda c: retention.CLASS_LABELS.get(c, c or "")}


@bp.errorhandler(AccessDenied)
def _denied(exc: AccessDenied):
    sess = db_session()
    sess.rollback()
    audit.record(sess, current_actor(), "ehr.access_denied", None,
                 {"reason": exc.code, "path": request.path, "method": request.method})
    sess.commit()
    record_id = request.view_args.get("record_id") if request.view_args else None
    return render_template("ehr/denied.html", message=str(exc), break_glass=exc.break_glass,
                           record_id=record_id or _record_id_of_document()), 403


@bp.errorhandler(RecordError)
def _integrity(exc: RecordError):
    """A version whose stored content differs from its signed bytes (the one RecordError no screen catches):
    shown as such, never its content, and audited."""
    if exc.code != "tampered":
        raise exc
    sess = db_session()
    sess.rollback()
    audit.record(sess, current_actor(), "ehr.integrity_error", None, {"path": request.path, "error": exc.code})
    sess.commit()
    return render_template("ehr/integrity.html", message=str(exc)), 409


def _record_id_of_document() -> int | None:
    document_id = (request.view_args or {}).get("document_id")
    document = db_session().get(Document, document_id) if document_id else None
    return document.record_id if document else None


def _record(record_id: int) -> MedicalRecord:
    record = db_session().get(MedicalRecord, record_id)
    if record is None:
        abort(404)
    return record


def _document(document_id: int) -> Document:
    document = db_session().get(Document, document_id)
    if document is None:
        abort(404)
    return document


def _raw(form) -> dict:
    return {f.name: request.form.get(f.name, "") for f in form.fields()}


def _clinical_time() -> datetime | None:
    raw = request.form.get("clinical_time", "").strip()
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw).replace(tzinfo=config().tz)
    except ValueError:
        raise RecordError("invalid", _l("The time of the act is not a date and time."),
                          {"clinical_time": _("The time of the act is not a date and time.")}) from None


@bp.get("/encounters/<int:encounter_id>")
@require("ehr.record.read")
def encounter_record(encounter_id: int):
    encounter = db_session().get(Encounter, encounter_id)
    if encounter is None:
        abort(404)
    record = records.of_encounter(db_session(), encounter_id)
    if record is not None:
        return redirect(url_for(".record", record_id=record.id))
    forms = {code: f for code, f in RECORD_FORMS.items() if encounter.kind in f.for_kinds}
    return render_template("ehr/open.html", encounter=encounter, forms=forms, default=records.default_form(encounter))


@bp.post("/encounters/<int:encounter_id>")
@require("ehr.record.write")
def open_record(encounter_id: int):
    sess = db_session()
    encounter = sess.get(Encounter, encounter_id)
    if encounter is None:
        abort(404)
    try:
        record = records.open_record(sess, current_actor(), encounter, request.form.get("form_code"))
        sess.commit()
    except RecordError as exc:
        sess.rollback()
        flash(str(exc), "error")
        return redirect(url_for(".encounter_record", encounter_id=encounter_id))
    return redirect(url_for(".record", record_id=record.id))


@bp.get("/records/<int:record_id>")
@require("ehr.record.read")
def record(record_id: int):
    sess = db_session()
    rec = _record(record_id)
    how = records.view(sess, current_actor(), rec, config())
    encounter = sess.get(Encounter, rec.encounter_id)
    has_main = any(d.form_code == rec.form_code and d.status == "active" for d in rec.documents)
    choices = [f for f in FORMS.values() if f.entered and (f.kind != "record" or (f.code == rec.form_code
                                                                                   and not has_main))]
    return render_template("ehr/record.html", record=rec, encounter=encounter, relation=how, choices=choices,
                           record_form=RECORD_FORMS[rec.form_code])


def _form_page(rec: MedicalRecord, form, values: dict, errors: dict, document: Document | None = None,
               status: int = 200):
    return render_template("ehr/document_form.html", record=rec, form=form, values=values, errors=errors,
                           document=document), status


@bp.route("/records/<int:record_id>/new", methods=["GET", "POST"])
@require("ehr.record.write")
def new_document(record_id: int):
    sess, actor = db_session(), current_actor()
    rec = _record(record_id)
    form = FORMS.get(request.values.get("form", ""))
    if form is None or not form.entered:
        abort(404)
    records.authorise(sess, actor, rec, "create", config())
    if request.method == "GET":
        return _form_page(rec, form, {}, {})
    try:
        document = records.add_document(sess, actor, rec, form.code, _raw(form), clinical_time=_clinical_time(),
                                        on=today(), cfg=config())
        sess.commit()
    except RecordError as exc:
        sess.rollback()
        flash(str(exc.message if not exc.field_errors else _("The form has errors; see the marked fields.")), "error")
        return _form_page(rec, form, dict(request.form), exc.field_errors, status=422)
    flash(_("Saved as version 1 (not signed yet)."), "success")
    return redirect(url_for(".document", document_id=document.id))


@bp.get("/documents/<int:document_id>")
@require("ehr.record.read")
def document(document_id: int):
    sess = db_session()
    doc = _document(document_id)
    records.view(sess, current_actor(), doc.record, config(), document=doc)
    number = request.args.get("version", type=int) or doc.current_version
    version = next((v for v in doc.versions if v.number == number), None)
    if version is None:
        abort(404)
    return render_template("ehr/document.html", doc=doc, record=doc.record, shown=printing.document_view(sess, doc,
                                                                                                        version),
                           signed_by_me=any(s.signer_id == current_user().id for s in version.signatures))


@bp.route("/documents/<int:document_id>/edit", methods=["GET", "POST"])
@require("ehr.record.write")
def edit_document(document_id: int):
    sess, actor = db_session(), current_actor()
    doc = _document(document_id)
    form = FORMS[doc.form_code]
    records.authorise(sess, actor, doc.record, "edit", config())
    if request.method == "GET":  # the form shows the content: a read like any other
        records.view(sess, actor, doc.record, config(), document=doc)
        content = records.signed_content(records.current(sess, doc))
        return _form_page(doc.record, form, {f.name: as_input(f, content) for f in form.fields()}, {}, doc)
    try:
        version = records.edit(sess, actor, doc, _raw(form), expected_version=request.form.get("expected_version",
                                                                                                type=int) or 0,
                               reason=request.form.get("amend_reason"), on=today(), cfg=config())
        sess.commit()
    except RecordError as exc:
        sess.rollback()
        flash(str(exc.message if not exc.field_errors else _("The form has errors; see the marked fields.")), "error")
        return _form_page(doc.record, form, dict(request.form), exc.field_errors, doc, status=422)
    flash(_("Saved as version %(n)d (not signed yet).", n=version.number), "success")
    return redirect(url_for(".document", document_id=doc.id))


@bp.post("/documents/<int:document_id>/sign")
@require("ehr.record.sign")
def sign(document_id: int):
    sess = db_session()
    doc = _document(document_id)
    version = records.current(sess, doc)
    if request.form.get("version", type=int) != version.number:
        flash(_("The document changed since you opened it: check the newest version before signing."), "error")
        return redirect(url_for(".document", document_id=doc.id))
    try:
        signing.sign(sess, current_actor(), version, current_app.extensions["ehr.keys"],
                     stamper=current_app.extensions.get("ehr.tsa"), cfg=config())
        sess.commit()
        flash(_("Version %(n)d signed.", n=version.number), "success")
    except RecordError as exc:
        sess.rollback()
        flash(str(exc), "error")
    except TimeStampError:
        sess.rollback()
        flash(_("The time-stamping service did not answer; nothing was signed. Try again."), "error")
    return redirect(url_for(".document", document_id=doc.id))


@bp.post("/documents/<int:document_id>/cancel")
@require("ehr.record.write")
def cancel(document_id: int):
    return _change(document_id, records.cancel, _("Document cancelled."))


@bp.post("/documents/<int:document_id>/restore")
@require("ehr.record.restore")
def restore(document_id: int):
    return _change(document_id, records.restore, _("Document restored."))


def _change(document_id: int, operation, done: str):
    sess = db_session()
    doc = _document(document_id)
    try:
        operation(sess, current_actor(), doc, request.form.get("reason"), config())
        sess.commit()
        flash(done, "success")
    except RecordError as exc:
        sess.rollback()
        flash(str(exc), "error")
    return redirect(url_for(".document", document_id=document_id))


def _file(body: bytes, fmt: str, name: str) -> Response:
    return Response(body, mimetype=exchange.FORMATS[fmt],
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@bp.get("/documents/<int:document_id>/pdf")
@require("ehr.record.export")
def document_pdf(document_id: int):
    sess, actor = db_session(), current_actor()
    doc = _document(document_id)
    records.authorise(sess, actor, doc.record, "print", config())
    body = printing.record_pdf(sess, doc.record, printed_by=current_user().full_name,
                               facility=exchange.facility(config()), document=doc)
    audit.record(sess, actor, "ehr.document.print", doc, {"record_id": doc.record_id,
                                                          "patient_id": doc.record.patient_id})
    return _file(body, "pdf", f"document-{doc.id}.pdf")


@bp.get("/records/<int:record_id>/export/<fmt>")
@require("ehr.record.export")
def export(record_id: int, fmt: str):
    if fmt not in exchange.FORMATS:
        abort(404)
    rec = _record(record_id)
    try:
        body = exchange.export(db_session(), current_actor(), rec, fmt, config())
    except RecordError as exc:
        flash(str(exc), "error")
        return redirect(url_for(".record", record_id=record_id))
    suffix = {"fhir": "fhir.json", "json": "json", "xml": "xml", "pdf": "pdf"}[fmt]
    return _file(body, fmt, f"hsba-{rec.id}.{suffix}")


@bp.post("/records/<int:record_id>/close")
@require("ehr.record.write")
def close(record_id: int):
    sess = db_session()
    rec = _record(record_id)
    try:
        retention.close(sess, current_actor(), rec, on=today(), cfg=config())
        sess.commit()
        flash(_("Record closed; kept until %(day)s.", day=rec.retention_until.strftime("%d/%m/%Y")
                if rec.retention_until else _("forever")), "success")
    except RecordError as exc:
        sess.rollback()
        flash(str(exc), "error")
    return redirect(url_for(".record", record_id=record_id))


@bp.route("/records/<int:record_id>/break-glass", methods=["GET", "POST"])
@require("ehr.record.break_glass")
def break_glass(record_id: int):
    sess = db_session()
    rec = _record(record_id)
    if request.method == "POST":
        try:
            access.open_break_glass(sess, current_actor(), current_user(), rec, request.form.get("reason", ""),
                                    config())
            sess.commit()
            flash(_("Emergency access opened for %(h)d hours. It is recorded and will be reviewed.",
                    h=access.break_glass_hours(config())), "warning")
            return redirect(url_for(".record", record_id=record_id))
        except AccessDenied as exc:
            if exc.code != "reason_required":
                raise
            sess.rollback()
            return render_template("ehr/break_glass.html", record=rec, error=str(exc)), 422
    return render_template("ehr/break_glass.html", record=rec, error=None)


@bp.get("/records/<int:record_id>/history")
@require("ehr.record.read")
def history(record_id: int):
    sess, actor = db_session(), current_actor()
    rec = _record(record_id)
    if not has_permission(current_user(), "ehr.record.review"):
        records.authorise(sess, actor, rec, "view", config())
    doc_ids = [str(d.id) for d in rec.documents]
    events = sess.scalars(select(AuditEvent).where(or_(
        (AuditEvent.target_type == "ehr_records") & (AuditEvent.target_id == str(rec.id)),
        (AuditEvent.target_type == "ehr_documents") & AuditEvent.target_id.in_(doc_ids or ["-"])))
        .order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc()).limit(500)).all()
    audit.record(sess, actor, "ehr.record.history", rec, {"patient_id": rec.patient_id})
    return render_template("ehr/history.html", record=rec, events=events)


@bp.get("/overdue")
@require("ehr.record.read")
def overdue_list():
    # A clinician sees their own late entries; the whole hospital's list is for who reviews records.
    mine = None if has_permission(current_user(), "ehr.record.review") else current_user().id
    late = overdue.overdue(db_session(), config(), author_id=mine)
    audit.record(db_session(), current_actor(), "ehr.overdue.view", None,
                 {"documents": sum(len(v) for v in late.values()), "author_id": mine,
                  "patient_ids": sorted({item.encounter.patient_id for items in late.values() for item in items})})
    return render_template("ehr/overdue.html", late=late)


@bp.get("/review")
@require("ehr.record.review")
def review():
    rows = db_session().scalars(select(BreakGlass).order_by(BreakGlass.reviewed_at.isnot(None),
                                                            BreakGlass.opened_at.desc()).limit(200)).all()
    audit.record(db_session(), current_actor(), "ehr.break_glass.list", None, {"shown": len(rows)})
    return render_template("ehr/review.html", rows=rows)


@bp.post("/review/<int:break_glass_id>")
@require("ehr.record.review")
def reviewed(break_glass_id: int):
    sess = db_session()
    row = sess.get(BreakGlass, break_glass_id)
    if row is None:
        abort(404)
    access.review_break_glass(sess, current_actor(), row)
    sess.commit()
    return redirect(url_for(".review"))


def panel(encounter) -> str:
    """The encounter page's link to its record (his.web.panels)."""
    rec = records.of_encounter(db_session(), encounter.id)
    return render_template("ehr/_panel.html", encounter=encounter, record=rec)


def patient_panel(patient) -> str:
    """The patient page's list of their records, newest first (his.web.panels)."""
    rows = db_session().scalars(select(MedicalRecord).where(MedicalRecord.patient_id == patient.id)
                                .order_by(MedicalRecord.opened_at.desc()).limit(50)).all()
    return render_template("ehr/_patient_panel.html", records=rows)


@bp.record_once
def _nav(state) -> None:
    add_nav(state.app, NavEntry("ehr.overdue_list", _l("Overdue records"), "ehr.record.sign", _l("Clinic"), 260))
    add_nav(state.app, NavEntry("ehr.review", _l("Emergency accesses"), "ehr.record.review", _l("Administration"),
                                900))

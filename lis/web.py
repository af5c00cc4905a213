"""Lab screens: worklist, reception by barcode scan, a specimen's results with technical and medical
validation, labels and the printed report, the unmatched inbox, analyser profiles, and the panel
on the encounter page with the released results and critical values to acknowledge."""

from __future__ import annotations

from datetime import date

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from core import audit
from core.permissions import has_permission
from core.web import NavEntry, add_nav, current_actor, current_user, db_session
from core.web.security import require
from his.models.encounters import Encounter
from his.models.patients import Patient
from his.web import panels
from lis import (
    analysers,
    catalog,
    catalog_edit,
    catalog_excel,
    inbox,
    manual,
    printing,
    results,
    specimens,
    validation,
)
from lis.models import (
    STAGES,
    VALUE_TYPES,
    Analyser,
    AnalyserCode,
    CriticalAlert,
    LabTest,
    Message,
    PanelMember,
    Report,
    Specimen,
)
from lis.specimens import SpecimenError
from lis.validation import ValidationError

bp = Blueprint("lis", __name__, url_prefix="/lis", template_folder="templates")

READ, COLLECT, ENTER = "lis.result.read", "lis.specimen.collect", "lis.result.enter"
TECHNICAL, MEDICAL, ADMIN = "lis.result.validate_technical", "lis.result.validate_medical", "lis.admin"
ACKNOWLEDGE = "lis.critical.acknowledge"
SPECIMEN_STATUS = {"ordered": _l("Ordered"), "collected": _l("Collected"), "received": _l("Received at the lab"),
                   "rejected": _l("Rejected"), "resulted": _l("Results in"), "released": _l("Released")}
STAGE_LABELS = {"preliminary": _l("Awaiting technical validation"),
                "technically_validated": _l("Awaiting medical validation"),
                "medically_validated": _l("Medically validated"), "released": _l("Released")}
MESSAGE_STATUS = {"unmatched": _l("Unknown specimen"), "error": _l("Cannot be applied"),
                  "rejected": _l("Rejected"), "applied": _l("Applied"), "resolved": _l("Resolved")}
SPECIMEN_TYPES = {"WB": _l("Whole blood (EDTA)"), "SER": _l("Serum"), "UR": _l("Urine"), "PLAS": _l("Plasma")}
# What a stored message's HL7 error code (table 0357; ASTM refusals use the same codes) means, for lab staff.
# The protocol's own English text, sent to the analyser in ERR, stays shown beside it.
PROBLEMS = {"100": _l("Wrong message structure"), "101": _l("A required field is missing"),
            "102": _l("A value has the wrong data type"), "103": _l("A code is not in our tables"),
            "200": _l("Message type not supported"), "201": _l("Event not supported"),
            "202": _l("Processing id not supported"), "203": _l("HL7 version not supported"),
            "204": _l("Specimen id not registered"), "207": _l("Cannot be applied")}
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
WORKLIST_FILTERS = ("ordered", "collected", "received", "resulted", "released", "rejected")


@bp.app_context_processor
def _labels():
    return {"lis_specimen_status": lambda s: SPECIMEN_STATUS.get(s, s),
            "lis_stage": lambda s: STAGE_LABELS.get(s, s),
            "lis_message_status": lambda s: MESSAGE_STATUS.get(s, s),
            "lis_problem": lambda m: PROBLEMS.get(m.error_code or "", ""),
            "lis_specimen_type": lambda s: SPECIMEN_TYPES.get(s, s),
            "lis_can_acknowledge": lambda: has_permission(current_user(), ACKNOWLEDGE)}


def _specimen_or_404(specimen_id: int) -> Specimen:
    specimen = db_session().get(Specimen, specimen_id)
    if specimen is None:
        abort(404)
    return specimen


def _read(specimen: Specimen, action: str = "lis.specimen.read") -> None:
    audit.record(db_session(), current_actor(), action, specimen,
                 {"barcode": specimen.barcode, "patient_id": specimen.patient_id})


# --- worklist and reception -------------------------------------------------------------------

@bp.get("/")
@require(READ)
def worklist():
    sess = db_session()
    status = request.args.get("status") or "received"
    if status not in WORKLIST_FILTERS:
        status = "received"
    stmt = select(Specimen).where(Specimen.status == status).order_by(Specimen.created_at.desc()).limit(200)
    rows = list(sess.scalars(stmt))
    patients = {p.id: p for p in sess.scalars(select(Patient).where(Patient.id.in_({s.patient_id for s in rows})))}
    audit.record(sess, current_actor(), "lis.worklist.read", None, {"status": status, "count": len(rows)})
    return render_template("lis/worklist.html", specimens=rows, patients=patients, status=status,
                           filters=WORKLIST_FILTERS)


@bp.route("/reception", methods=["GET", "POST"])
@require(COLLECT)
def reception():
    sess, received, error = db_session(), None, None
    if request.method == "POST":
        try:
            received = specimens.receive(sess, current_actor(), request.form.get("barcode", ""))
            sess.commit()
        except SpecimenError as exc:
            sess.rollback()
            error = exc
    patient = sess.get(Patient, received.patient_id) if received else None
    return render_template("lis/reception.html", received=received, patient=patient, error=error), \
        422 if error else 200


@bp.post("/specimens/<int:specimen_id>/collect")
@require(COLLECT)
def collect(specimen_id: int):
    return _specimen_action(specimen_id, lambda s: specimens.collect(db_session(), current_actor(), s),
                            _l("Specimen collected."))


@bp.post("/specimens/<int:specimen_id>/reject")
@require(COLLECT)
def reject(specimen_id: int):
    return _specimen_action(specimen_id, lambda s: specimens.reject(db_session(), current_actor(), s,
                                                                    request.form.get("reason")),
                            _l("Specimen rejected."))


def _specimen_action(specimen_id: int, action, done):
    specimen = _specimen_or_404(specimen_id)
    try:
        action(specimen)
    except (SpecimenError, ValidationError) as exc:
        db_session().rollback()
        flash(str(exc), "error")
    else:
        db_session().commit()
        flash(str(done), "success")
    return redirect(request.form.get("next") or url_for("lis.specimen", specimen_id=specimen_id))


# --- results and validation -------------------------------------------------------------------

@bp.get("/specimens/<int:specimen_id>")
@require(READ)
def specimen(specimen_id: int):
    return _specimen_page(_specimen_or_404(specimen_id))


def _specimen_page(found: Specimen, entry: dict | None = None, entry_error: manual.EntryError | None = None):
    sess = db_session()
    _read(found)
    current = results.current_of(sess, found)
    history = {r.test_id: results.history_of(sess, found, r.test_id)[1:] for r in current}
    reports = list(sess.scalars(select(Report).where(Report.specimen_id == found.id).order_by(Report.id.desc())))
    return render_template("lis/specimen.html", specimen=found, patient=sess.get(Patient, found.patient_id),
                           results=current, history=history, reports=reports, stages=STAGES,
                           current={r.test_id: r for r in current}, enterable=manual.ENTERABLE,
                           entry=entry or {}, entry_error=entry_error), 422 if entry_error else 200


@bp.post("/specimens/<int:specimen_id>/results")
@require(ENTER)
def enter_results(specimen_id: int):
    """Results typed in for the specimen's tests, recorded as an analyser's would be."""
    sess = db_session()
    found = _specimen_or_404(specimen_id)
    values = {r.test_id: request.form.get(f"value-{r.test_id}", "") for r in found.requests}
    try:
        made = manual.enter(sess, current_actor(), found, values)
    except manual.EntryError as exc:
        sess.rollback()
        return _specimen_page(_specimen_or_404(specimen_id), values, exc)
    sess.commit()
    flash(_("%(n)d results saved, awaiting technical validation.", n=made.count), "success")
    return redirect(url_for("lis.specimen", specimen_id=specimen_id))


@bp.post("/specimens/<int:specimen_id>/validate-technical")
@require(TECHNICAL)
def validate_technical(specimen_id: int):
    return _specimen_action(specimen_id, lambda s: validation.validate_technical(db_session(), current_actor(), s),
                            _l("Results technically validated."))


@bp.post("/specimens/<int:specimen_id>/release")
@require(MEDICAL)
def release(specimen_id: int):
    return _specimen_action(specimen_id, lambda s: validation.release(db_session(), current_actor(), s),
                            _l("Results validated and released to the record."))


@bp.get("/specimens/<int:specimen_id>/label")
@require(COLLECT)
def label(specimen_id: int):
    found = _specimen_or_404(specimen_id)
    html = _label_html(found)
    if request.args.get("format") == "pdf":
        return Response(printing.pdf(html, request.url_root), mimetype="application/pdf",
                        headers={"Content-Disposition": f'inline; filename="nhan-{found.barcode}.pdf"'})
    return html


def _label_html(found: Specimen) -> str:
    sess = db_session()
    _read(found, "lis.specimen.label")
    return render_template("lis/label.html", specimen=found, patient=sess.get(Patient, found.patient_id),
                           barcode_svg=printing.code128_svg(found.barcode))


@bp.get("/reports/<int:report_id>.pdf")
@require(READ)
def report_pdf(report_id: int):
    sess = db_session()
    report = sess.get(Report, report_id)
    if report is None:
        abort(404)
    found = sess.get(Specimen, report.specimen_id)
    _read(found, "lis.report.print")
    html = render_template("lis/report.html", report=report, specimen=found,
                           patient=sess.get(Patient, found.patient_id), encounter=sess.get(Encounter,
                                                                                           found.encounter_id))
    return Response(printing.pdf(html, request.url_root), mimetype="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="ket-qua-{found.barcode}.pdf"'})


# --- critical values --------------------------------------------------------------------------

@bp.get("/alerts")
@require(READ)
def alerts():
    sess = db_session()
    user = current_user()
    mine = request.args.get("all") != "1"
    rows = validation.open_alerts(sess, user_id=user.id if mine else None)
    audit.record(sess, current_actor(), "lis.critical.list", None, {"count": len(rows), "mine": mine})
    patients = {p.id: p for p in sess.scalars(select(Patient).where(Patient.id.in_({a.patient_id for a in rows})))}
    return render_template("lis/alerts.html", alerts=rows, patients=patients, mine=mine)


@bp.post("/alerts/<int:alert_id>/acknowledge")
@require(ACKNOWLEDGE)
def acknowledge(alert_id: int):
    sess = db_session()
    alert = sess.get(CriticalAlert, alert_id)
    if alert is None:
        abort(404)
    try:
        validation.acknowledge(sess, current_actor(), alert, request.form.get("note"))
    except ValidationError as exc:
        sess.rollback()
        flash(str(exc), "error")
    else:
        sess.commit()
        flash(_("Critical value acknowledged."), "success")
    return redirect(request.form.get("next") or url_for("lis.alerts"))


# --- the unmatched inbox ----------------------------------------------------------------------

@bp.get("/inbox")
@require(ENTER)
def inbox_list():
    sess = db_session()
    rows = inbox.unmatched(sess)
    audit.record(sess, current_actor(), "lis.inbox.read", None, {"count": len(rows)})
    return render_template("lis/inbox.html", messages=rows)


@bp.get("/inbox/<int:message_id>")
@require(ENTER)
def message(message_id: int):
    sess = db_session()
    row = sess.get(Message, message_id)
    if row is None:
        abort(404)
    audit.record(sess, current_actor(), "lis.message.read", row, {"sender": row.sender})
    return render_template("lis/message.html", message=row, text=row.raw.decode("utf-8", "replace"))


@bp.post("/inbox/<int:message_id>/reprocess")
@require(ENTER)
def reprocess(message_id: int):
    sess = db_session()
    row = sess.get(Message, message_id)
    if row is None:
        abort(404)
    barcode = (request.form.get("barcode") or "").strip() or None
    try:
        outcome = inbox.reprocess(sess, current_actor(), row, barcode=barcode)
    except inbox.InboxError as exc:
        sess.rollback()
        flash(str(exc.text), "error")
        return redirect(url_for("lis.message", message_id=message_id))
    sess.commit()
    if outcome == "AA":
        flash(_("The results of the message were applied."), "success")
        return redirect(url_for("lis.inbox_list"))
    flash(_("The message still cannot be applied: %(reason)s", reason=row.error_reason), "error")
    return redirect(url_for("lis.message", message_id=message_id))


# --- analyser profiles ------------------------------------------------------------------------

@bp.get("/analysers")
@require(ADMIN)
def analyser_list():
    rows = list(db_session().scalars(select(Analyser).order_by(Analyser.code)))
    return render_template("lis/analysers.html", analysers=rows)


@bp.route("/analysers/new", methods=["GET", "POST"], defaults={"analyser_id": None})
@bp.route("/analysers/<int:analyser_id>", methods=["GET", "POST"])
@require(ADMIN)
def analyser_edit(analyser_id: int | None):
    sess = db_session()
    row = sess.get(Analyser, analyser_id) if analyser_id is not None else None
    if analyser_id is not None and row is None:
        abort(404)
    errors, form = {}, None
    if request.method == "POST":
        form = request.form.to_dict()
        try:
            row = analysers.save(sess, current_actor(), row, form)
        except analysers.ProfileError as exc:
            sess.rollback()
            errors = exc.errors
        else:
            sess.commit()
            flash(_("Analyser profile saved."), "success")
            return redirect(url_for("lis.analyser_edit", analyser_id=row.id))
    values = form or analysers.form_values(row)
    return render_template("lis/analyser.html", analyser=row, values=values, errors=errors,
                           fields=analysers.SPECIMEN_FIELD_CHOICES), 422 if errors else 200


# --- the lab catalogue ---------------------------------------------------------------------------

def _months(value: int | None) -> str:
    if value is None:
        return ""
    return _("%(n)d y", n=value // 12) if value % 12 == 0 else _("%(n)d m", n=value)


@bp.get("/catalogue")
@require(ADMIN)
def catalogue():
    """Tests and panels with their ranges by sex and age band, critical limits, each analyser's code
    and the billing service code; the Excel export and import."""
    return _catalogue_page()


def _catalogue_page(import_report: catalog_excel.ImportReport | None = None, import_error=None):
    sess = db_session()
    tests = list(sess.scalars(select(LabTest).order_by(LabTest.is_panel.desc(), LabTest.position, LabTest.code)))
    members: dict[int, list[LabTest]] = {}
    for row in sess.scalars(select(PanelMember).order_by(PanelMember.position)):
        members.setdefault(row.panel_id, []).append(row.test)
    codes: dict[int, list[tuple[str, str]]] = {}
    for row in sess.scalars(select(AnalyserCode).join(AnalyserCode.analyser).order_by(Analyser.code)):
        codes.setdefault(row.test_id, []).append((row.analyser.code, row.code))
    audit.record(sess, current_actor(), "lis.catalogue.read", None, {"tests": len(tests)})
    failed = import_error is not None or bool(import_report and import_report.errors)
    return render_template("lis/catalogue.html", tests=tests, members=members, codes=codes,
                           range_text=catalog.range_text, months=_months, plain=lambda d: format(d.normalize(), "f"),
                           import_report=import_report, import_error=import_error), 422 if failed else 200


RANGE_FIELDS = tuple(catalog_edit.RANGE_READERS)
BLANK_RANGE_ROWS = 3
MAX_RANGE_ROWS = 200


def _test_form_values(sess, test: LabTest | None) -> dict:
    """The form as strings, from what is stored."""
    if test is None:
        return {"value_type": "NM", "specimen_type": "SER", "active": "1", "position": "0",
                "ranges": [{} for _i in range(BLANK_RANGE_ROWS)], "codes": {}}
    draft = catalog_edit.draft_of(sess, test)
    codes: dict[int, list[str]] = {}
    for analyser_id, code in draft.codes:
        codes.setdefault(analyser_id, []).append(code)
    plain = catalog_edit.plain
    return {"code": test.code, "name": test.name, "loinc": test.loinc or "", "unit": test.unit or "",
            "value_type": test.value_type, "specimen_type": test.specimen_type, "service_code": test.service_code or "",
            "delta_percent": plain(test.delta_percent) if test.delta_percent is not None else "",
            "position": str(test.position), "active": "1" if test.active else "",
            "is_panel": "1" if test.is_panel else "",
            "members": "\n".join(draft.members),
            "ranges": [{f: "" if getattr(r, f) is None else str(plain(getattr(r, f))) for f in RANGE_FIELDS}
                       for r in draft.ranges] + [{} for _i in range(BLANK_RANGE_ROWS)],
            "codes": {a: ", ".join(c) for a, c in codes.items()}}


def _draft_from_form(test: LabTest | None, form, analysers: list[Analyser]):
    """The draft the form asks for and its values as typed; errors keyed by the form's field names."""
    raw_count = form.get("range_count", "")
    count = min(int(raw_count), MAX_RANGE_ROWS) if raw_count.isdigit() else 0
    rows = [{f: form.get(f"range-{i}-{f}", "") for f in RANGE_FIELDS} for i in range(count)]
    values = {**{k: form.get(k, "") for k in catalog_edit.TEST_READERS}, "active": form.get("active", ""),
              "is_panel": form.get("is_panel", ""), "members": form.get("members", ""), "ranges": rows,
              "codes": {a.id: form.get(f"codes-{a.id}", "") for a in analysers}}
    fields, problems = catalog_edit.read_test(form, active=bool(form.get("active")),
                                              is_panel=bool(form.get("is_panel")))
    errors = {p.field: p.message for p in problems}
    ranges, places = [], []
    for i, row in enumerate(rows):
        if catalog_edit.is_blank(row):
            continue
        rng, found = catalog_edit.read_range(row, len(ranges))
        errors.update({f"range-{i}-{p.field}": p.message for p in found})
        if rng is not None:
            ranges.append(rng)
            places.append(i)
    codes = [(a.id, c) for a in analysers for c in _split_codes(form.get(f"codes-{a.id}", ""))]
    draft = None if fields is None else catalog_edit.Draft(test, fields, catalog_edit.member_codes(values["members"]),
                                                           ranges, codes)
    return draft, values, errors, places


def _split_codes(text: str) -> list[str]:
    """An analyser's codes for the test, separated by commas (its own codes keep their case)."""
    return [c.strip() for c in text.split(",") if c.strip()]


def _form_key(problem: catalog_edit.Problem, draft: catalog_edit.Draft, places: list[int]) -> str:
    if problem.part == "ranges":
        return f"range-{places[problem.index]}-{problem.field}"
    if problem.part == "codes":
        return f"codes-{draft.codes[problem.index][0]}"
    return "members" if problem.part == "members" else problem.field


@bp.route("/catalogue/tests/new", methods=["GET", "POST"], defaults={"test_id": None})
@bp.route("/catalogue/tests/<int:test_id>", methods=["GET", "POST"])
@require(ADMIN)
def test_edit(test_id: int | None):
    """A test or panel with its members, reference ranges and analyser codes, saved together."""
    sess = db_session()
    test = sess.get(LabTest, test_id) if test_id is not None else None
    if test_id is not None and test is None:
        abort(404)
    analysers_list = list(sess.scalars(select(Analyser).order_by(Analyser.code)))
    errors: dict = {}
    if request.method == "POST":
        draft, values, errors, places = _draft_from_form(test, request.form, analysers_list)
        if draft is not None:  # what the catalogue says too, so that every mistake shows at once
            errors = {**{_form_key(p, draft, places): p.message for p in catalog_edit.check(sess, [draft])}, **errors}
        if draft is not None and not errors:
            try:
                applied = catalog_edit.save(sess, current_actor(), [draft])
            except catalog_edit.CatalogueError as exc:
                sess.rollback()
                errors = {_form_key(p, draft, places): p.message for p in exc.problems}
            else:
                sess.commit()
                flash(_("Test saved.") if applied.created or applied.updated else _("Nothing changed."), "success")
                return redirect(url_for("lis.test_edit", test_id=applied.tests[0].id))
        rows = values["ranges"]
        while rows and catalog_edit.is_blank(rows[-1]):
            rows.pop()  # the typed rows keep their places (errors name them); fresh blank ones follow
        values["ranges"] = rows + [{} for _i in range(BLANK_RANGE_ROWS)]
    else:
        values = _test_form_values(sess, test)
    if test is not None:
        audit.record(sess, current_actor(), "lis.catalogue.test.read", test, {"code": test.code})
    return render_template("lis/test_edit.html", test=test, values=values, errors=errors, analysers=analysers_list,
                           value_types=VALUE_TYPES, specimen_types=catalog_edit.SPECIMEN_TYPES,
                           in_use=test is not None and catalog_edit.in_use(sess, test)), \
        422 if errors else 200


@bp.post("/catalogue/tests/<int:test_id>/remove")
@require(ADMIN)
def test_remove(test_id: int):
    sess = db_session()
    test = sess.get(LabTest, test_id)
    if test is None:
        abort(404)
    try:
        outcome = catalog_edit.remove(sess, current_actor(), test)
    except catalog_edit.CatalogueError as exc:
        sess.rollback()
        flash(str(exc.problems[0].message), "error")
        return redirect(url_for("lis.test_edit", test_id=test_id))
    sess.commit()
    if outcome == "deactivated":
        flash(_("The test is in use (results, or a panel): it was taken out of use, not deleted."), "success")
        return redirect(url_for("lis.test_edit", test_id=test_id))
    flash(_("Test deleted."), "success")
    return redirect(url_for("lis.catalogue"))


@bp.get("/catalogue.xlsx")
@require(ADMIN)
def catalogue_export():
    data = catalog_excel.export(db_session(), current_actor())
    name = f"danh-muc-xet-nghiem-{date.today():%Y%m%d}.xlsx"
    return Response(data, mimetype=XLSX, headers={"Content-Disposition": f'attachment; filename="{name}"'})


@bp.post("/catalogue/import")
@require(ADMIN)
def catalogue_import():
    sess = db_session()
    upload = request.files.get("workbook")
    if upload is None or not upload.filename:
        return _catalogue_page(import_error=_("Choose the Excel workbook (.xlsx) to import."))
    try:
        report = catalog_excel.import_workbook(sess, current_actor(), upload.read(), upload.filename)
    except catalog_excel.ImportFileError as exc:
        sess.rollback()
        return _catalogue_page(import_error=exc.message)
    if report.errors:
        sess.rollback()  # all or nothing; the refusal itself is kept in the audit trail
        audit.record(sess, current_actor(), "lis.catalogue.import_refused", None,
                     {"file": upload.filename[:200], "errors": report.error_count})
        sess.commit()
        return _catalogue_page(import_report=report)
    sess.commit()
    flash(str(report.summary), "success")
    return redirect(url_for("lis.catalogue"))


# --- the encounter panel ----------------------------------------------------------------------

def encounter_panel(encounter: Encounter) -> str:
    sess = db_session()
    released = validation.released_results(sess, encounter.id)
    waiting = validation.open_alerts(sess, encounter_id=encounter.id)
    tubes = specimens.of_encounter(sess, encounter.id)
    audit.record(sess, current_actor(), "lis.result.list", encounter,
                 {"patient_id": encounter.patient_id, "specimens": len(tubes)})
    return render_template("lis/_encounter_panel.html", released=released, alerts=waiting, specimens=tubes,
                           encounter=encounter)


def init_app(app) -> None:
    app.register_blueprint(bp)
    add_nav(app, NavEntry("lis.worklist", _l("Laboratory"), READ, _l("Laboratory"), 300))
    add_nav(app, NavEntry("lis.reception", _l("Specimen reception"), COLLECT, _l("Laboratory"), 301))
    add_nav(app, NavEntry("lis.inbox_list", _l("Unmatched results"), ENTER, _l("Laboratory"), 302))
    add_nav(app, NavEntry("lis.analyser_list", _l("Analysers"), ADMIN, _l("Laboratory"), 303))
    add_nav(app, NavEntry("lis.alerts", _l("Critical values"), READ, _l("Laboratory"), 304))
    add_nav(app, NavEntry("lis.catalogue", _l("Lab catalogue"), ADMIN, _l("Laboratory"), 305))
    panels.add(app, "encounter", "lis", encounter_panel, order=200, permission=READ)

"""Imaging screens: the radiologist's worklist of studies, a study with its series thumbnails and a
viewer scrolling through the instances, the report (draft, sign), export and the remote nodes."""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _
from sqlalchemy import func, or_, select

from core import audit
from core.web import config, current_actor, current_user, db_session
from core.web.security import require
from his.text import fold
from pacs import export, remotes, render, reports
from pacs.display import PRESET_LABELS
from pacs.models import Instance, RemoteAE, Report, Series, Study
from pacs.settings import storage_root

bp = Blueprint("pacs", __name__, url_prefix="/pacs", template_folder="../templates", static_folder="../static")
PER_PAGE = 50
REPORT_FILTERS = ("unreported", "draft", "signed", "all")


def _study_or_404(study_id: int) -> Study:
    study = db_session().get(Study, study_id)
    if study is None:
        abort(404)
    return study


@bp.get("/")
@require("pacs.image.view")
def studies():
    sess = db_session()
    state = request.args.get("report", "unreported")
    state = state if state in REPORT_FILTERS else "unreported"
    stmt = select(Study, Report).outerjoin(Report, Report.study_pk == Study.id)
    if state == "unreported":
        stmt = stmt.where(Report.id.is_(None))
    elif state in ("draft", "signed"):
        stmt = stmt.where(Report.status == state)
    text = (request.args.get("q") or "").strip()
    if text:
        folded = fold(text.replace("^", " "))
        stmt = stmt.where(or_(func.replace(Study.patient_name_folded, "^", " ").like(f"%{folded}%"),
                              Study.patient_dicom_id == text, Study.accession_number == text))
    rows = sess.execute(stmt.order_by(Study.study_date.desc(), Study.id.desc()).limit(PER_PAGE)).all()
    audit.record(sess, current_actor(), "pacs.study.list", None,
                 {"filter": state, "patients": sorted({s.patient_id for s, _r in rows if s.patient_id})})
    return render_template("pacs/studies.html", rows=rows, state=state, q=text, filters=REPORT_FILTERS)


@bp.get("/studies/<int:study_id>")
@require("pacs.image.view")
def study(study_id: int):
    sess = db_session()
    item = _study_or_404(study_id)
    series = list(sess.scalars(select(Series).where(Series.study_pk == item.id)
                               .order_by(Series.series_number, Series.id)))
    instances = {s.id: list(sess.scalars(select(Instance).where(Instance.series_pk == s.id)
                                         .order_by(Instance.instance_number, Instance.id))) for s in series}
    audit.record(sess, current_actor(), "pacs.study.view", item, {"patient_id": item.patient_id,
                                                                   "study_uid": item.study_uid})
    return render_template("pacs/study.html", study=item, series=series, instances=instances,
                           report=reports.of_study(sess, item),
                           presets={name: PRESET_LABELS[name] for name in render.PRESETS})


@bp.get("/instances/<int:instance_id>/<any(jpeg, png):fmt>")
@require("pacs.image.view")
def preview(instance_id: int, fmt: str):
    sess = db_session()
    instance = sess.get(Instance, instance_id)
    if instance is None:
        abort(404)
    size = request.args.get("size", type=int)
    try:
        data, media_type = render.render(storage_root(config()) / instance.path, frame=max(
            0, request.args.get("frame", 1, type=int) - 1), preset=request.args.get("preset"),
            size=min(size, 2048) if size else None, fmt=fmt)
    except render.RenderError:
        abort(404)
    audit.record(sess, current_actor(), "pacs.instance.view", instance, {"sop_instance_uid": instance.sop_instance_uid})
    return Response(data, mimetype=media_type, headers={"Cache-Control": "private, max-age=3600"})


@bp.post("/studies/<int:study_id>/report")
@require("pacs.report.write")
def report_save(study_id: int):
    sess = db_session()
    item = _study_or_404(study_id)
    try:
        reports.save(sess, current_actor(), item, request.form.get("findings"), request.form.get("conclusion"))
        if request.form.get("action") == "sign":
            user = current_user()
            reports.sign(sess, current_actor(), item, user.full_name or user.username)
    except reports.ReportError as exc:
        sess.rollback()
        flash(str(exc.message), "error")
        return redirect(url_for("pacs.study", study_id=item.id))
    sess.commit()
    flash(_("Report signed and released.") if request.form.get("action") == "sign" else _("Draft saved."), "success")
    return redirect(url_for("pacs.study", study_id=item.id))


@bp.get("/studies/<int:study_id>/export.zip")
@require("pacs.image.view")
def export_zip(study_id: int):
    sess = db_session()
    item = _study_or_404(study_id)
    # The zip goes to an unnamed temporary file (gone once the response closes it), never into memory.
    archive_file = tempfile.TemporaryFile(prefix="vnhis-export-", suffix=".zip")  # noqa: SIM115 (send_file closes it)
    try:
        with tempfile.TemporaryDirectory(prefix="vnhis-export-") as folder:
            target = Path(folder) / "media"
            export.export_study(sess, current_actor(), storage_root(config()), item.study_uid, target)
            with zipfile.ZipFile(archive_file, "w", zipfile.ZIP_DEFLATED) as archive:
                for path in sorted(target.rglob("*")):
                    if path.is_file():
                        archive.write(path, path.relative_to(target))
        sess.commit()
    except BaseException:
        archive_file.close()
        raise
    archive_file.seek(0)
    return send_file(archive_file, mimetype="application/zip", as_attachment=True,
                     download_name=f"study-{item.id}-dicomdir.zip")


@bp.get("/remotes")
@require("pacs.admin")
def remotes_page():
    return render_template("pacs/remotes.html", remotes=remotes.all_remotes(db_session()), form={})


@bp.post("/remotes")
@require("pacs.admin")
def remote_add():
    sess = db_session()
    form = {k: request.form.get(k, "") for k in ("ae_title", "host", "port", "description")}
    try:
        remotes.add(sess, current_actor(), form["ae_title"], form["host"], form["port"], form["description"])
    except remotes.RemoteError as exc:
        sess.rollback()
        messages = {"bad_title": _("The AE title must be 1 to 16 ASCII characters."),
                    "bad_host": _("Enter an IP address or a host name."),
                    "bad_port": _("The port must be a number from 1 to 65535."),
                    "duplicate": _("This AE title is already known.")}
        flash(messages[exc.code], "error")
        return render_template("pacs/remotes.html", remotes=remotes.all_remotes(sess), form=form), 422
    sess.commit()
    flash(_("DICOM node added."), "success")
    return redirect(url_for("pacs.remotes_page"))


@bp.post("/remotes/<int:remote_id>/remove")
@require("pacs.admin")
def remote_remove(remote_id: int):
    sess = db_session()
    remote = sess.get(RemoteAE, remote_id)
    if remote is None:
        abort(404)
    remotes.remove(sess, current_actor(), remote)
    sess.commit()
    flash(_("DICOM node removed."), "success")
    return redirect(url_for("pacs.remotes_page"))

"""The insurance officer's screens: the claims of a date range with their status and precise errors,
build and check them again after corrections, download a file (signed then, as files sent by the jobs are),
queue the range for the gateway."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from billing import claims, submission
from billing.claims import ClaimError
from billing.models import CLAIM_FORMATS, Claim, ClaimBatch
from billing.validate import Problem
from billing.web import conf
from core import audit
from core.config import ConfigError
from core.web import config, current_actor, db_session
from core.web.security import require

bp = Blueprint("billing_claims", __name__, template_folder="../templates")
EXPORT, SUBMIT = "billing.claim.export", "billing.claim.submit"
STATUS = {"invalid": _l("Validation errors"), "valid": _l("Ready"), "queued": _l("Queued"),
          "sent": _l("Sent to the gateway"), "accepted": _l("Accepted"), "rejected": _l("Rejected"),
          "failed": _l("Not delivered")}


@bp.app_context_processor
def _labels():
    return {"claim_status": lambda s: STATUS.get(s, s)}


def _range() -> tuple[date, date, str]:
    today = datetime.now(config().tz).date()
    try:
        start = datetime.strptime(request.values.get("from", ""), "%Y-%m-%d").date()
        end = datetime.strptime(request.values.get("to", ""), "%Y-%m-%d").date()
    except ValueError:
        start, end = today - timedelta(days=7), today
    fmt = request.values.get("format") if request.values.get("format") in CLAIM_FORMATS else "qd130"
    return start, end, fmt


def _problems(claim: Claim) -> list[Problem]:
    return [Problem.from_dict(e) for e in claim.errors or []]


@bp.get("/billing/claims")
@require(EXPORT)
def index():
    start, end, fmt = _range()
    sess = db_session()
    rows = claims.of_range(sess, start, end, fmt)
    waiting = len(claims.encounters_ended(sess, start, end)) - len(rows)
    counts = dict(sess.execute(select(Claim.status, func.count()).where(Claim.id.in_([c.id for c in rows]))
                               .group_by(Claim.status)).all()) if rows else {}
    batches = sess.scalars(select(ClaimBatch).order_by(ClaimBatch.id.desc()).limit(5)).all()
    audit.record(sess, current_actor(), "billing.claim.list", None,
                 {"from": start.isoformat(), "to": end.isoformat(), "format": fmt, "claims": len(rows)})
    return render_template("billing/claims.html", rows=rows, start=start, end=end, fmt=fmt, counts=counts,
                           waiting=max(waiting, 0), batches=batches, problems=_problems)


def _back(start, end, fmt):
    return redirect(url_for(".index", **{"from": start.isoformat(), "to": end.isoformat(), "format": fmt}))


@bp.post("/billing/claims/build")
@require(EXPORT)
def build():
    start, end, fmt = _range()
    sess = db_session()
    try:
        ids = claims.encounters_ended(sess, start, end)
        built = []
        for chunk in (ids[n:n + claims.BATCH] for n in range(0, len(ids), claims.BATCH)):
            built += claims.build(sess, current_actor(), chunk, fmt, conf())
        sess.commit()
    except (ConfigError, ClaimError) as exc:
        sess.rollback()
        flash(str(exc), "error")
        return _back(start, end, fmt)
    bad = sum(bool(b.problems) for b in built)
    flash(_("%(n)d claim(s) built and checked, %(bad)d with errors.", n=len(built), bad=bad),
          "warning" if bad else "success")
    return _back(start, end, fmt)


@bp.post("/billing/claims/submit")
@require(SUBMIT)
def submit():
    start, end, fmt = _range()
    sess = db_session()
    batch = submission.queue_batch(sess, current_actor(), start, end, fmt)
    sess.commit()
    flash(_("%(n)d claim(s) queued for the insurer's gateway.", n=batch.claim_count), "success")
    return _back(start, end, fmt)


@bp.route("/billing/claims/<int:claim_id>", methods=["GET", "POST"])
@require(EXPORT)
def detail(claim_id: int):
    sess = db_session()
    claim = sess.get(Claim, claim_id) or abort(404)
    if request.method == "POST":
        try:
            claims.check_rebuildable(claim)
            claims.set_supplement(sess, current_actor(), claim, request.form.get("weight_kg"),
                                  request.form.get("blood_group"))
            claims.build(sess, current_actor(), [claim.encounter_id], claim.format, conf())
            sess.commit()
            flash(_("Saved; the claim was built and checked again."), "success")
        except (ClaimError, ConfigError) as exc:
            sess.rollback()
            flash(str(exc), "error")
        return redirect(url_for(".detail", claim_id=claim_id))
    audit.record(sess, current_actor(), "billing.claim.read", claim,
                 {"encounter_id": claim.encounter_id, "patient_id": claim.encounter.patient_id})
    return render_template("billing/claim.html", claim=claim, problems=_problems(claim))


@bp.get("/billing/claims/<int:claim_id>/file")
@require(EXPORT)
def download(claim_id: int):
    claim = db_session().get(Claim, claim_id) or abort(404)
    if claim.content is None:
        abort(404)
    try:
        content = claims.signed(claim, claims.signer(config(), conf()))
    except ConfigError as exc:
        flash(str(exc), "error")
        return redirect(url_for(".detail", claim_id=claim_id))
    audit.record(db_session(), current_actor(), "billing.claim.download", claim, {"encounter_id": claim.encounter_id})
    return Response(content, mimetype="application/xml",
                    headers={"Content-Disposition": f"attachment; filename={claims.file_name(claim)}"})

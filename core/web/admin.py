"""Administration screens: users and API tokens, roles, the audit log, background jobs."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from marshmallow import ValidationError
from sqlalchemy import select

from core import audit, auth, queue
from core.models import ApiToken, Job, User
from core.permissions import ROLES, all_permissions
from core.schemas import UserCreateSchema
from core.web import NavEntry, add_nav, config, current_actor, db_session
from core.web.security import require

bp = Blueprint("admin", __name__, url_prefix="/admin")

USER_ERRORS = {
    "bad_username": _l("3–80 characters: lower-case letters, digits, '.', '_' or '-'."),
    "username_taken": _l("This username is already taken."),
    "unknown_role": _l("Unknown role."),
    "password_required": _l("Required field"),
    "password_too_short": _l("At least %(min)d characters.", min=auth.MIN_PASSWORD_LENGTH),
    "full_name_required": _l("Required field"),
}
USER_ERROR_FIELD = {"bad_username": "username", "username_taken": "username", "unknown_role": "roles",
                    "password_required": "password", "password_too_short": "password",
                    "full_name_required": "full_name"}


def _page() -> int:
    return max(1, request.args.get("page", 1, type=int) or 1)


@bp.get("/users")
@require("admin.users")
def users():
    rows = db_session().scalars(select(User).order_by(User.username)).all()
    return render_template("admin/users.html", users=rows, roles=ROLES)


@bp.route("/users/new", methods=["GET", "POST"])
@require("admin.users")
def user_new():
    form, errors = {"roles": []}, {}
    if request.method == "POST":
        form = {"username": request.form.get("username", "").strip().lower(),
                "full_name": request.form.get("full_name", "").strip(),
                "password": request.form.get("password") or None,
                "roles": request.form.getlist("roles"),
                "is_machine": request.form.get("is_machine") == "1"}
        try:
            data = UserCreateSchema().load(form)
            sess = db_session()
            user = auth.create_user(sess, current_actor(), **data)
            sess.commit()
            flash(_("User %(name)s created.", name=user.username), "success")
            return redirect(url_for("admin.user_detail", user_id=user.id))
        except ValidationError as exc:
            errors = {k: v[0] if isinstance(v, list) else next(iter(v.values()))[0]
                      for k, v in exc.messages.items()}
        except auth.UserError as exc:
            errors = {USER_ERROR_FIELD[exc.code]: USER_ERRORS[exc.code]}
        return render_template("admin/user_new.html", form=form, errors=errors, roles=ROLES), 422
    return render_template("admin/user_new.html", form=form, errors=errors, roles=ROLES)


def _user_or_404(user_id: int) -> User:
    user = db_session().get(User, user_id)
    if user is None:
        abort(404)
    return user


@bp.get("/users/<int:user_id>")
@require("admin.users")
def user_detail(user_id: int):
    user = _user_or_404(user_id)
    tokens = db_session().scalars(select(ApiToken).where(ApiToken.user_id == user.id)
                                  .order_by(ApiToken.created_at.desc())).all()
    return render_template("admin/user_detail.html", user=user, tokens=tokens, roles=ROLES)


@bp.post("/users/<int:user_id>/tokens")
@require("admin.users")
def token_create(user_id: int):
    user = _user_or_404(user_id)
    sess = db_session()
    token, _record = auth.create_token(sess, current_actor(), user, request.form.get("name", ""))
    sess.commit()
    tokens = sess.scalars(select(ApiToken).where(ApiToken.user_id == user.id)
                          .order_by(ApiToken.created_at.desc())).all()
    # Shown once: only its digest is stored.
    return render_template("admin/user_detail.html", user=user, tokens=tokens, roles=ROLES, new_token=token)


@bp.post("/users/<int:user_id>/tokens/<int:token_id>/revoke")
@require("admin.users")
def token_revoke(user_id: int, token_id: int):
    sess = db_session()
    record = sess.get(ApiToken, token_id)
    if record is None or record.user_id != user_id:
        abort(404)
    auth.revoke_token(sess, current_actor(), record)
    sess.commit()
    flash(_("Token revoked."), "success")
    return redirect(url_for("admin.user_detail", user_id=user_id))


@bp.post("/users/<int:user_id>/unlock")
@require("admin.users")
def user_unlock(user_id: int):
    user = _user_or_404(user_id)
    user.failed_logins, user.locked_until = 0, None
    audit.record(db_session(), current_actor(), "user.unlock", user)
    db_session().commit()
    flash(_("Account unlocked."), "success")
    return redirect(url_for("admin.user_detail", user_id=user_id))


@bp.post("/users/<int:user_id>/active")
@require("admin.users")
def user_set_active(user_id: int):
    user = _user_or_404(user_id)
    active = request.form.get("active") == "1"
    if user.id == current_actor().id and not active:
        flash(_("You cannot disable your own account."), "error")
        return redirect(url_for("admin.user_detail", user_id=user_id))
    user.is_active = active
    audit.record(db_session(), current_actor(), "user.enable" if active else "user.disable", user)
    db_session().commit()
    flash(_("Account enabled.") if active else _("Account disabled."), "success")
    return redirect(url_for("admin.user_detail", user_id=user_id))


@bp.get("/roles")
@require("admin.users")
def roles():
    return render_template("admin/roles.html", roles=ROLES, permissions=all_permissions())


def _local_date(value: str | None, end: bool = False) -> datetime | None:
    """A dd/mm/yyyy or yyyy-mm-dd filter as the start (or end) of that day in local time."""
    if not value:
        return None
    for fmt in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            day = datetime.strptime(value.strip(), fmt).replace(tzinfo=config().tz)
        except ValueError:
            continue
        return day + timedelta(days=1) if end else day
    return None


@bp.app_template_filter("detail_text")
def detail_text(detail: dict | None) -> str:
    """An audit detail as JSON with its Vietnamese readable (tojson writes \\u1ec3); the template escapes it."""
    return json.dumps(detail, ensure_ascii=False) if detail else ""


@bp.get("/audit")
@require("admin.audit")
def audit_log():
    args = request.args
    filters = {k: args.get(k, "").strip() or None for k in ("action", "actor", "target_type", "target_id")}
    since, until = _local_date(args.get("since")), _local_date(args.get("until"), end=True)
    bad_dates = [k for k in ("since", "until") if args.get(k) and _local_date(args.get(k)) is None]
    page = _page()
    rows, total = audit.search(db_session(), **filters, since=since, until=until, page=page, per_page=50)
    audit.record(db_session(), current_actor(), "audit.view", None,
                 {k: v for k, v in {**filters, "since": args.get("since"), "until": args.get("until")}.items()
                  if v})
    last_check = db_session().scalar(select(Job).where(Job.name == "audit.verify")
                                     .order_by(Job.id.desc()).limit(1))
    return render_template("admin/audit.html", events=rows, total=total, page=page, per_page=50,
                           args=args, bad_dates=bad_dates, last_check=last_check)


@bp.post("/audit/verify")
@require("admin.audit")
def audit_verify():
    sess = db_session()
    actor = current_actor()
    queue.enqueue(sess, "audit.verify", {"requested_by": actor.name}, actor=actor)
    sess.commit()
    flash(_("Audit chain check started; its result appears here when the job finishes."), "info")
    return redirect(url_for("admin.audit_log"))


@bp.get("/jobs")
@require("admin.jobs")
def jobs():
    status = request.args.get("status") or None
    name = request.args.get("name") or None
    page = _page()
    rows, total = queue.list_jobs(db_session(), status=status, name=name, page=page, per_page=50)
    return render_template("admin/jobs.html", jobs=rows, total=total, page=page, per_page=50,
                           counts=queue.counts_by_status(db_session()), status=status, name=name)


@bp.post("/jobs/<int:job_id>/retry")
@require("admin.jobs")
def job_retry(job_id: int):
    sess = db_session()
    record = sess.get(Job, job_id)
    if record is None:
        abort(404)
    if record.status != queue.DEAD:
        flash(_("Only a failed job can be retried."), "error")
        return redirect(url_for("admin.jobs"))
    queue.retry(sess, current_actor(), record)
    sess.commit()
    flash(_("Job %(id)s queued again.", id=record.id), "success")
    return redirect(url_for("admin.jobs"))


@bp.record_once
def _nav(state) -> None:
    section = _l("Administration")
    add_nav(state.app, NavEntry("admin.users", _l("Users"), "admin.users", section, 900))
    add_nav(state.app, NavEntry("admin.roles", _l("Roles and permissions"), "admin.users", section, 910))
    add_nav(state.app, NavEntry("admin.audit_log", _l("Audit log"), "admin.audit", section, 920))
    add_nav(state.app, NavEntry("admin.jobs", _l("Background jobs"), "admin.jobs", section, 930))

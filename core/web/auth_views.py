"""Login and logout."""

from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import ngettext

from core import auth
from core.web import client_ip, db_session, safe_next
from core.web.security import public

bp = Blueprint("auth", __name__)


def _login_error(result: auth.LoginResult) -> str:
    if result.error == "locked":
        minutes = max(1, (result.wait_seconds + 59) // 60)
        return ngettext("This account is locked after too many failed logins. Try again in %(num)d minute.",
                        "This account is locked after too many failed logins. Try again in %(num)d minutes.",
                        minutes)
    if result.error == "throttled":
        return ngettext("Too many failed logins. Wait %(num)d second before trying again.",
                        "Too many failed logins. Wait %(num)d seconds before trying again.",
                        result.wait_seconds)
    if result.error == "inactive":
        return _("This account is disabled. Contact the system administrator.")
    return _("Wrong username or password.")


@bp.route("/login", methods=["GET", "POST"])
@public
def login():
    next_url = safe_next(request.values.get("next"), url_for("main.dashboard"))
    if g.user is not None and not g.get("token_auth"):
        return redirect(next_url)
    if request.method == "GET":
        return render_template("auth/login.html", next=next_url)

    username = request.form.get("username", "").strip()
    password = request.form.get("password", "")
    if not username or not password:
        return render_template("auth/login.html", next=next_url, username=username,
                               error=_("Enter your username and password.")), 422

    sess = db_session()
    result = auth.authenticate(sess, username, password, client_ip())
    if result.user is None:
        sess.commit()  # failure counters and the audit event persist
        return render_template("auth/login.html", next=next_url, username=username,
                               error=_login_error(result)), 401

    record = auth.start_session(sess, result.user, client_ip(), request.user_agent.string)
    sess.commit()
    lang = session.get("lang") or result.user.locale  # a language chosen on the login page wins
    session.clear()  # no fixation: a fresh cookie for the new login
    session["sid"] = record.id
    if lang:
        session["lang"] = lang
    return redirect(next_url)


@bp.post("/logout")
def logout():
    record = g.get("user_session")
    if record is not None:
        auth.end_session(db_session(), record, "logout")
        db_session().commit()
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang
    flash(_("You have logged out."), "info")
    return redirect(url_for("auth.login"))

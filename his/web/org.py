"""Organisation screens for administrators: departments with their rooms, beds and service points; staff."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from core.web import NavEntry, add_nav, current_actor, db_session
from core.web.security import require
from his import org
from his.models.org import ROOM_KINDS, SERVICE_POINT_KINDS, Bed, Department, Room, ServicePoint, Staff
from his.org import OrgError
from his.web._helpers import flag

bp = Blueprint("his_org", __name__, template_folder="../templates")

ADDERS = {
    "department": lambda s, a, f: org.add_department(s, a, code=f.get("code"), name=f.get("name"),
                                                     bhyt_code=f.get("bhyt_code"), is_clinical=flag(f, "is_clinical")),
    "room": lambda s, a, f: org.add_room(s, a, department_id=f.get("department_id", type=int), code=f.get("code"),
                                         name=f.get("name"), kind=f.get("kind")),
    "bed": lambda s, a, f: org.add_bed(s, a, room_id=f.get("room_id", type=int), code=f.get("code"),
                                       bhyt_code=f.get("bhyt_code")),
    "service_point": lambda s, a, f: org.add_service_point(
        s, a, code=f.get("code"), name=f.get("name"), kind=f.get("kind"), room_id=f.get("room_id", type=int),
        normal_per_priority=f.get("normal_per_priority", 2, type=int)),
    "staff": lambda s, a, f: org.add_staff(s, a, full_name=f.get("full_name"), title=f.get("title"),
                                           department_id=f.get("department_id", type=int), username=f.get("username"),
                                           licence_number=f.get("licence_number"),
                                           practice_scope=f.get("practice_scope"),
                                           bhyt_doctor_code=f.get("bhyt_doctor_code")),
}
MODELS = {"department": Department, "room": Room, "bed": Bed, "service_point": ServicePoint, "staff": Staff}


def _page(status: int = 200, **context):
    def rows(model, order):
        return db_session().scalars(select(model).order_by(order)).all()

    return render_template(
        "his/org.html", departments=rows(Department, Department.code), rooms=rows(Room, Room.code),
        beds=rows(Bed, Bed.code), points=rows(ServicePoint, ServicePoint.code), staff=rows(Staff, Staff.full_name),
        room_kinds=ROOM_KINDS, point_kinds=SERVICE_POINT_KINDS, **context), status


@bp.get("/org")
@require("his.catalog.manage")
def index():
    return _page()


@bp.post("/org/<kind>")
@require("his.catalog.manage")
def add(kind: str):
    adder = ADDERS.get(kind)
    if adder is None:
        abort(404)
    try:
        adder(db_session(), current_actor(), request.form)
        db_session().commit()
    except OrgError as exc:
        db_session().rollback()
        return _page(422, error_form=kind, error_field=exc.field, error=str(exc), form=request.form)
    flash(_("Saved."), "success")
    return redirect(url_for(".index") + f"#{kind}")


@bp.post("/org/<kind>/<int:row_id>/active")
@require("his.catalog.manage")
def set_active(kind: str, row_id: int):
    model = MODELS.get(kind)
    row = db_session().get(model, row_id) if model else None
    if row is None:
        abort(404)
    org.set_active(db_session(), current_actor(), row, request.form.get("active") == "1")
    db_session().commit()
    return redirect(url_for(".index") + f"#{kind}")


@bp.record_once
def _nav(state) -> None:
    add_nav(state.app, NavEntry("his_org.index", _l("Organisation"), "his.catalog.manage", _l("Administration"), 880))

"""The organisation: add departments, rooms, beds, service points and staff; retire them (never delete)."""

from __future__ import annotations

import re

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core.audit import Actor
from core.models import User
from his.models.org import ROOM_KINDS, SERVICE_POINT_KINDS, Bed, Department, Room, ServicePoint, Staff

CODE_RE = re.compile(r"^[A-Z0-9][A-Z0-9._-]{0,19}$")
BED_CODE_RE = re.compile(r"^[HTCK]\d{3}$")  # BHYT bed service code (his.md §5)
KINDS = {Department: None, Room: ROOM_KINDS, ServicePoint: SERVICE_POINT_KINDS, Bed: None}


class OrgError(ValueError):
    def __init__(self, code: str, field_name: str, message):
        super().__init__(code)
        self.code, self.field, self.message = code, field_name, message

    def __str__(self) -> str:
        return str(self.message)


def _code(session: Session, model, value: str) -> str:
    code = (value or "").strip().upper()
    if not CODE_RE.match(code):
        raise OrgError("bad_code", "code", _l("A code has 1–20 capital letters, digits, '.', '_' or '-'."))
    if session.scalar(select(model.id).where(model.code == code)) is not None:
        raise OrgError("code_taken", "code", _l("The code %(code)s is already used.", code=code))
    return code


def _name(value: str) -> str:
    name = (value or "").strip()
    if not name:
        raise OrgError("name_required", "name", _l("Required field"))
    return name


def _get(session: Session, model, ident, field_name: str):
    row = session.get(model, ident) if ident else None
    if row is None or not row.active:
        raise OrgError("unknown", field_name, _l("Choose one from the list."))
    return row


def _created(session: Session, actor: Actor, row, **detail):
    session.add(row)
    session.flush()
    audit.record(session, actor, f"org.{row.__tablename__}.create", row, {"code": getattr(row, "code", None), **detail})
    return row


def add_department(session: Session, actor: Actor, *, code: str, name: str, bhyt_code: str | None = None,
                   is_clinical: bool = True) -> Department:
    bhyt = (bhyt_code or "").strip().upper() or None
    if bhyt and not re.match(r"^K\d{2}([.\w]*)$", bhyt):
        raise OrgError("bad_bhyt_code", "bhyt_code", _l("A BHYT department code looks like K01, K16.1 or K02.D35."))
    return _created(session, actor, Department(code=_code(session, Department, code), name=_name(name),
                                               bhyt_code=bhyt, is_clinical=is_clinical, active=True))


def add_room(session: Session, actor: Actor, *, department_id: int, code: str, name: str, kind: str) -> Room:
    if kind not in ROOM_KINDS:
        raise OrgError("bad_kind", "kind", _l("Choose one from the list."))
    dept = _get(session, Department, department_id, "department_id")
    return _created(session, actor, Room(department_id=dept.id, code=_code(session, Room, code), name=_name(name),
                                         kind=kind, active=True))


def add_bed(session: Session, actor: Actor, *, room_id: int, code: str, bhyt_code: str | None = None) -> Bed:
    room = _get(session, Room, room_id, "room_id")
    bhyt = (bhyt_code or "").strip().upper() or None
    if bhyt and not BED_CODE_RE.match(bhyt):
        raise OrgError("bad_bhyt_code", "bhyt_code", _l("A BHYT bed code is a letter H, T, C or K and 3 digits."))
    return _created(session, actor, Bed(room_id=room.id, code=_code(session, Bed, code), bhyt_code=bhyt, active=True))


def add_service_point(session: Session, actor: Actor, *, code: str, name: str, kind: str, room_id: int | None = None,
                      normal_per_priority: int = 2) -> ServicePoint:
    if kind not in SERVICE_POINT_KINDS:
        raise OrgError("bad_kind", "kind", _l("Choose one from the list."))
    if not 0 <= normal_per_priority <= 20:
        raise OrgError("bad_ratio", "normal_per_priority", _l("Between 0 and 20."))
    room = _get(session, Room, room_id, "room_id") if room_id else None
    return _created(session, actor, ServicePoint(code=_code(session, ServicePoint, code), name=_name(name), kind=kind,
                                                 room_id=room.id if room else None,
                                                 normal_per_priority=normal_per_priority, active=True))


def add_staff(session: Session, actor: Actor, *, full_name: str, title: str | None = None,
              department_id: int | None = None, username: str | None = None, licence_number: str | None = None,
              practice_scope: str | None = None, bhyt_doctor_code: str | None = None) -> Staff:
    user = None
    if username:
        user = session.scalar(select(User).where(User.username == username.strip().lower()))
        if user is None:
            raise OrgError("unknown_user", "username", _l("No user has this username."))
        if session.scalar(select(Staff.id).where(Staff.user_id == user.id)) is not None:
            raise OrgError("user_taken", "username", _l("This user is already linked to a staff member."))
    dept = _get(session, Department, department_id, "department_id") if department_id else None
    return _created(session, actor, Staff(user_id=user.id if user else None, full_name=_name(full_name),
                                          title=(title or "").strip() or None, department_id=dept.id if dept else None,
                                          licence_number=(licence_number or "").strip() or None,
                                          practice_scope=(practice_scope or "").strip() or None,
                                          bhyt_doctor_code=(bhyt_doctor_code or "").strip() or None, active=True))


def set_active(session: Session, actor: Actor, row, active: bool) -> None:
    row.active = active
    session.flush()
    audit.record(session, actor, f"org.{row.__tablename__}.{'enable' if active else 'retire'}", row)

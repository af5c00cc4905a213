"""Who may do what with one record: the role's permission, then the relationship to the record —
the care team of the encounter (its doctor, the departments it passed through), an emergency opening
(break-glass: allowed with a reason, flagged, alerted), or a grant given for a purpose — and the time
window after which editing closes.
"""

from __future__ import annotations

from datetime import timedelta

from flask_babel import lazy_gettext as _l
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from core import audit, events
from core.audit import Actor
from core.config import ConfigError
from core.db import utcnow
from core.models import User
from core.permissions import has_permission
from ehr.models import AccessGrant, BreakGlass, MedicalRecord
from his.models.admission import DepartmentStay
from his.models.encounters import Encounter
from his.models.org import Staff

ACTIONS = {"view": "ehr.record.read", "create": "ehr.record.write", "edit": "ehr.record.write",
           "cancel": "ehr.record.write", "restore": "ehr.record.restore", "sign": "ehr.record.sign",
           "print": "ehr.record.export", "export": "ehr.record.export"}
WRITES = ("create", "edit", "cancel", "restore", "sign")
COPIES = ("print", "export")
MIN_REASON = 10


class AccessDenied(PermissionError):
    def __init__(self, code: str, message, *, break_glass: bool = False):
        super().__init__(code)
        self.code, self.message, self.break_glass = code, message, break_glass

    def __str__(self) -> str:
        return str(self.message)


def _hours(cfg, name: str, default: int) -> int:
    raw = cfg.setting(name, str(default)) if cfg is not None else str(default)
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number of hours, got {raw!r}") from None
    if not 1 <= value <= 24 * 365:
        raise ConfigError(f"{name} must be between 1 and 8760 hours, got {value}")
    return value


def edit_window_hours(cfg) -> int:
    """How long after a record is closed its documents may still be changed (facility quy chế)."""
    return _hours(cfg, "VNHIS_EHR_EDIT_WINDOW_HOURS", 24)


def break_glass_hours(cfg) -> int:
    return _hours(cfg, "VNHIS_EHR_BREAK_GLASS_HOURS", 4)


def care_team(session: Session, user_id: int, record: MedicalRecord) -> bool:
    """The encounter's doctor or staff of a department it passed through. Having written in the record is
    no relation of its own: someone who wrote under break-glass must not stay in once it expires."""
    staff = session.scalar(select(Staff).where(Staff.user_id == user_id, Staff.active))
    if staff is None:
        return False
    encounter = session.get(Encounter, record.encounter_id)
    if encounter.doctor_id == staff.id:
        return True
    departments = {encounter.department_id} | set(session.scalars(
        select(DepartmentStay.department_id).where(DepartmentStay.encounter_id == encounter.id)))
    return staff.department_id is not None and staff.department_id in departments


def active_break_glass(session: Session, user_id: int, record: MedicalRecord) -> BreakGlass | None:
    return session.scalar(select(BreakGlass).where(BreakGlass.record_id == record.id, BreakGlass.user_id == user_id,
                                                   BreakGlass.expires_at > utcnow())
                          .order_by(BreakGlass.id.desc()).limit(1))


def _grant(session: Session, user_id: int, record: MedicalRecord) -> AccessGrant | None:
    now = utcnow()
    return session.scalar(select(AccessGrant).where(AccessGrant.record_id == record.id, AccessGrant.user_id == user_id,
                                                    AccessGrant.valid_from <= now, AccessGrant.valid_to > now)
                          .order_by(AccessGrant.id.desc()).limit(1))


_RELATIONS = "ehr.relations"  # per transaction: (user, record) -> relation, so one request asks once


def relation(session: Session, user: User, record: MedicalRecord) -> str | None:
    """care_team, break_glass or grant (the strongest that holds), or None."""
    known = session.info.setdefault(_RELATIONS, {})
    key = (user.id, record.id)
    if key not in known:
        if care_team(session, user.id, record):
            known[key] = "care_team"
        elif active_break_glass(session, user.id, record) is not None:
            known[key] = "break_glass"
        elif _grant(session, user.id, record) is not None:
            known[key] = "grant"
        else:
            known[key] = None
    return known[key]


@event.listens_for(Session, "after_transaction_end")
def _forget_relations(session: Session, transaction) -> None:
    if not transaction.nested:
        session.info.pop(_RELATIONS, None)


def check(session: Session, user: User, record: MedicalRecord, action: str, cfg=None) -> str:
    """The relation that allows `action`, or AccessDenied saying why not."""
    if not has_permission(user, ACTIONS[action]):
        raise AccessDenied("permission", _l("Your role does not allow this action on medical records."))
    how = relation(session, user, record)
    if how is None:
        raise AccessDenied("not_care_team", _l("You are not in the care team of this patient. In an emergency, "
                                               "open the record with a reason (emergency access)."),
                           break_glass=has_permission(user, "ehr.record.break_glass"))
    if how == "grant" and action in WRITES:
        raise AccessDenied("grant_read_only", _l("Your access to this record is for reading only."))
    if how == "grant" and action in COPIES and not _grant(session, user.id, record).can_copy:
        raise AccessDenied("grant_no_copy", _l("Your access to this record does not include copies."))
    if action in WRITES:
        if record.status in ("archived", "destroyed"):
            raise AccessDenied("archived", _l("This record is archived: it can be read but no longer changed."))
        if record.status == "closed":
            until = record.closed_at + timedelta(hours=edit_window_hours(cfg))
            if utcnow() > until:
                raise AccessDenied("window_closed", _l("Editing of this record closed %(hours)d hours after the "
                                                       "record was closed.", hours=edit_window_hours(cfg)))
    return how


def flagged(how: str) -> dict:
    """The relation for an audit detail, flagged when it was an emergency opening."""
    return {"relation": how} | ({"flag": "break_glass"} if how == "break_glass" else {})


def open_break_glass(session: Session, actor: Actor, user: User, record: MedicalRecord, reason: str,
                     cfg=None) -> BreakGlass:
    if not has_permission(user, "ehr.record.break_glass"):
        raise AccessDenied("permission", _l("Your role does not allow emergency access."))
    reason = (reason or "").strip()
    if len(reason) < MIN_REASON:
        raise AccessDenied("reason_required", _l("Give the reason for the emergency access (at least %(n)d "
                                                 "characters).", n=MIN_REASON))
    now = utcnow()
    row = BreakGlass(record_id=record.id, user_id=user.id, user_name=user.full_name, reason=reason,
                     opened_at=now, expires_at=now + timedelta(hours=break_glass_hours(cfg)))
    session.add(row)
    session.flush()
    session.info.pop(_RELATIONS, None)
    audit.record(session, actor, "ehr.break_glass", record,
                 {"flag": "break_glass", "reason": reason, "patient_id": record.patient_id,
                  "expires_at": row.expires_at.isoformat(), "break_glass_id": row.id})
    events.emit(session, "ehr.break_glass.opened", {"record_id": record.id, "patient_id": record.patient_id,
                                                    "user_id": user.id, "user_name": user.full_name,
                                                    "reason": reason, "break_glass_id": row.id}, actor=actor)
    return row


def review_break_glass(session: Session, actor: Actor, row: BreakGlass) -> None:
    row.reviewed_at, row.reviewed_by = utcnow(), actor.id
    session.flush()
    audit.record(session, actor, "ehr.break_glass.review", ("ehr_records", row.record_id),
                 {"break_glass_id": row.id})


def grant(session: Session, actor: Actor, record: MedicalRecord, user: User, *, purpose: str, days: int,
          can_copy: bool = False) -> AccessGrant:
    now = utcnow()
    row = AccessGrant(record_id=record.id, user_id=user.id, purpose=purpose.strip(), can_copy=can_copy,
                      granted_by=actor.id, valid_from=now, valid_to=now + timedelta(days=days))
    session.add(row)
    session.flush()
    session.info.pop(_RELATIONS, None)
    audit.record(session, actor, "ehr.access.grant", record, {"user_id": user.id, "purpose": row.purpose,
                                                              "valid_to": row.valid_to.isoformat(),
                                                              "can_copy": can_copy})
    return row

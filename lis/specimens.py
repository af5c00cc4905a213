"""Specimens: made from his lab orders (one tube per specimen type), collected at the bedside,
received at the lab by scanning the barcode, or rejected with a reason.

The order placed in his and its specimens commit together (an inline subscriber): a label can be
printed the moment the order exists. Reception queues the order download to the analysers.
"""

from __future__ import annotations

import functools
import os
from datetime import datetime
from zoneinfo import ZoneInfo

from flask import current_app, has_app_context
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import audit, events, queue
from core.audit import Actor
from core.db import is_postgresql, utcnow
from his.models.orders import Order
from his.models.patients import Counter
from his.patients import register_reference
from lis import catalog
from lis.models import Analyser, Specimen, SpecimenTest

BARCODE_SEQUENCE = "lis_specimen_barcode_seq"
BARCODE_COUNTER = "lis_specimen_barcode"
SEND_ORDER_JOB = "lis.order.send"
DEFAULT_TIMEZONE = "Asia/Ho_Chi_Minh"


class SpecimenError(ValueError):
    def __init__(self, code: str, message):
        super().__init__(code)
        self.code, self.message = code, message

    def __str__(self) -> str:
        return str(self.message)


def _next_number(session: Session) -> int:
    if is_postgresql(session):
        return session.execute(text(f"SELECT nextval('{BARCODE_SEQUENCE}')")).scalar_one()
    row = session.get(Counter, BARCODE_COUNTER, with_for_update=True)
    if row is None:
        try:
            with session.begin_nested():
                session.add(Counter(name=BARCODE_COUNTER, value=0))
        except IntegrityError:
            pass
        row = session.get(Counter, BARCODE_COUNTER, with_for_update=True, populate_existing=True)
    row.value += 1
    session.flush()
    return row.value


@functools.lru_cache(maxsize=1)
def _configured_zone() -> ZoneInfo:
    # outside the web app (listener, jobs): the same variable core.config reads and checked at start-up
    return ZoneInfo(os.environ.get("VNHIS_TIMEZONE") or DEFAULT_TIMEZONE)


def hospital_zone() -> ZoneInfo:
    """The configured hospital time zone (VNHIS_TIMEZONE): the web app's, or the process's own config."""
    if has_app_context() and "vnhis.config" in current_app.extensions:
        return current_app.extensions["vnhis.config"].tz
    return _configured_zone()


def local_text(moment: datetime | None) -> str:
    """A moment as the hospital reads it (dd/mm/yyyy hh:mm, hospital time)."""
    if moment is None:
        return ""
    if has_app_context() and "vnhis.config" in current_app.extensions:
        from core.i18n import format_datetime

        return format_datetime(moment)
    return moment.astimezone(hospital_zone()).strftime("%d/%m/%Y %H:%M")


def new_barcode(session: Session, on: datetime) -> str:
    """YYMMDD (the hospital's date, not UTC's: a tube taken at 06:30 is today's) + a 6-digit number:
    short for a 50×25 mm label, unique forever (the number never repeats)."""
    return f"{on.astimezone(hospital_zone()).strftime('%y%m%d')}{_next_number(session) % 1_000_000:06d}"


def create_for_order(session: Session, actor: Actor, order: Order) -> list[Specimen]:
    """One specimen per specimen type of the order's lab tests; lines outside the lab catalogue are skipped."""
    by_type: dict[str, list[tuple]] = {}
    for line in order.lines:
        for test in catalog.tests_for_service(session, line.item_code):
            by_type.setdefault(test.specimen_type, []).append((test, line.id))
    made = []
    for specimen_type, tests in by_type.items():
        specimen = Specimen(barcode=new_barcode(session, utcnow()), order_id=order.id,
                            encounter_id=order.encounter_id, patient_id=order.patient_id,
                            specimen_type=specimen_type, status="ordered")
        seen = set()
        for position, (test, line_id) in enumerate(tests):
            if test.id not in seen:
                seen.add(test.id)
                specimen.requests.append(SpecimenTest(test_id=test.id, test=test, order_line_id=line_id,
                                                      position=position))
        session.add(specimen)
        made.append(specimen)
    session.flush()
    for specimen in made:
        audit.record(session, actor, "lis.specimen.create", specimen,
                     {"barcode": specimen.barcode, "order_id": order.id, "patient_id": order.patient_id,
                      "tests": [r.test.code for r in specimen.requests]})
    return made


@events.subscribe("his.order.placed", inline=True)
def _on_order_placed(session: Session, payload: dict) -> None:
    if payload["kind"] != "lab":
        return
    order = session.get(Order, payload["order_id"])
    create_for_order(session, Actor.system("lis"), order)


@events.subscribe("his.order.cancelled", inline=True)
def _on_order_cancelled(session: Session, payload: dict) -> None:
    for specimen in session.scalars(select(Specimen).where(Specimen.order_id == payload["order_id"],
                                                           Specimen.status.in_(("ordered", "collected")))):
        reason = payload.get("reason") or ""
        text_ = _("Order cancelled: %(reason)s", reason=reason) if reason else _("Order cancelled.")
        reject(session, Actor.system("lis"), specimen, text_)


def by_barcode(session: Session, barcode: str) -> Specimen | None:
    return session.scalar(select(Specimen).where(Specimen.barcode == (barcode or "").strip()))


def of_encounter(session: Session, encounter_id: int) -> list[Specimen]:
    return list(session.scalars(select(Specimen).where(Specimen.encounter_id == encounter_id)
                                .order_by(Specimen.created_at, Specimen.id)))


def collect(session: Session, actor: Actor, specimen: Specimen, *, at: datetime | None = None) -> None:
    if specimen.status != "ordered":
        raise SpecimenError("bad_state", _l("This specimen has already been collected or was rejected."))
    specimen.status, specimen.collected_at, specimen.collected_by = "collected", at or utcnow(), actor.name
    session.flush()
    audit.record(session, actor, "lis.specimen.collect", specimen, {"barcode": specimen.barcode,
                                                                    "patient_id": specimen.patient_id})


def receive(session: Session, actor: Actor, barcode: str) -> Specimen:
    """The lab scans the tube; an uncollected one counts as collected now. Orders go to the analysers."""
    specimen = by_barcode(session, barcode)
    if specimen is None:
        raise SpecimenError("unknown", _l("No specimen has the barcode «%(code)s».", code=(barcode or "")[:30]))
    if specimen.status == "rejected":
        raise SpecimenError("rejected", _l("This specimen was rejected: %(reason)s", reason=specimen.reject_reason))
    if specimen.status not in ("ordered", "collected"):
        raise SpecimenError("already_received", _l("This specimen was already received at %(at)s.",
                                                   at=local_text(specimen.received_at)))
    now = utcnow()
    if specimen.collected_at is None:
        specimen.collected_at, specimen.collected_by = now, actor.name
    specimen.status, specimen.received_at, specimen.received_by = "received", now, actor.name
    session.flush()
    audit.record(session, actor, "lis.specimen.receive", specimen, {"barcode": specimen.barcode,
                                                                    "patient_id": specimen.patient_id})
    for analyser in analysers_for(session, specimen):
        queue.enqueue(session, SEND_ORDER_JOB, {"specimen_id": specimen.id, "analyser_id": analyser.id},
                      actor=actor, dedupe_key=f"lis.order:{specimen.id}:{analyser.id}")
    return specimen


def analysers_for(session: Session, specimen: Specimen) -> list[Analyser]:
    """Analysers with an address that run at least one test of the specimen."""
    wanted = {r.test_id for r in specimen.requests}
    found = session.scalars(select(Analyser).where(Analyser.active.is_(True), Analyser.host.is_not(None),
                                                   Analyser.port.is_not(None)).order_by(Analyser.id))
    return [a for a in found if wanted & {c.test_id for c in a.codes}]


def reject(session: Session, actor: Actor, specimen: Specimen, reason: str | None) -> None:
    reason = (reason or "").strip()
    if not reason:
        raise SpecimenError("reason_required", _l("Give the reason for the rejection."))
    if specimen.status in ("rejected", "resulted", "released"):
        raise SpecimenError("bad_state", _l("This specimen can no longer be rejected."))
    specimen.status, specimen.rejected_at, specimen.rejected_by = "rejected", utcnow(), actor.name
    specimen.reject_reason = reason
    session.flush()
    audit.record(session, actor, "lis.specimen.reject", specimen, {"barcode": specimen.barcode, "reason": reason,
                                                                   "patient_id": specimen.patient_id})


register_reference(Specimen.patient_id)

"""Demo inpatients: a few patients lying in the demo ward beds (run after his/demo.py's organisation and
patients); one was moved once, so the bed history has something to show. Running it again changes nothing."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import Actor
from core.db import utcnow
from his import admission as adt
from his.models.admission import Admission
from his.models.org import Bed, Department
from his.models.patients import Patient

# department, bed, reason, days ago, child (the paediatric ward takes a patient under 16)
STAYS = [("KNOI", "N201-G01", "Viêm phổi cộng đồng, sốt cao", 4, False),
         ("KNOI", "N201-G03", "Đái tháo đường type 2 mất bù", 3, False),
         ("KNOI", "N202-G02", "Tăng huyết áp, đau đầu chóng mặt", 2, False),
         ("KNGOAI", "NG301-G01", "Viêm ruột thừa cấp, chờ mổ", 1, False),
         ("KNGOAI", "NG301-G04", "Gãy kín xương cẳng tay trái", 2, False),
         ("KNHI", "NH401-G02", "Viêm phế quản cấp", 1, True)]
# (bed admitted to, bed moved to a day later)
MOVED = ("N202-G02", "N202-G05")


def seed(session: Session, actor: Actor) -> None:
    if session.scalar(select(Admission.id).limit(1)) is not None:
        return
    depts = {d.code: d for d in session.scalars(select(Department))}
    beds = {b.code: b for b in session.scalars(select(Bed))}
    if not all(d in depts and b in beds for d, b, *_rest in STAYS):
        return  # not the demo organisation
    this_year = date.today().year
    live = Patient.merged_into_id.is_(None)
    adults = iter(session.scalars(select(Patient).where(live, Patient.birth_year <= this_year - 18)
                                  .order_by(Patient.code).limit(len(STAYS))))
    children = iter(session.scalars(select(Patient).where(live, Patient.birth_year > this_year - 16)
                                    .order_by(Patient.code).limit(len(STAYS))))
    now = utcnow()
    for dept, bed, reason, days_ago, child in STAYS:
        patient = next(children if child else adults, None)
        if patient is None:
            continue
        admitted_at = now - timedelta(days=days_ago, hours=3)
        record = adt.admit(session, actor, patient, department=depts[dept], bed=beds[bed], reason=reason,
                           at=admitted_at, day=(admitted_at + timedelta(hours=7)).date())
        if bed == MOVED[0]:
            adt.transfer(session, actor, record.encounter, to_bed=beds[MOVED[1]], at=admitted_at + timedelta(days=1),
                         reason="Chuyển buồng gần phòng điều dưỡng")

"""Demo orders: today's outpatient visits in room P101 for the first demo patients, examined by the
demo doctor, with diagnoses, tests, imaging and prescriptions in every status. Running it again
changes nothing. Needs his.demo's organisation and patients and the demo catalogue first."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import Actor
from core.models import User
from his import encounters, orders
from his.models.orders import Order
from his.models.org import Room, Staff
from his.models.patients import Patient
from his.patients import current_card

ROOM = "P101"
DOCTOR = "bacsi"
# reason, principal ICD-10, orders: (kind, items, options, what happens next)
VISITS = [
    ("Đau đầu, chóng mặt, huyết áp cao", "I10", [
        ("lab", [{"code": "XN.GLU"}, {"code": "XN.CHOL"}, {"code": "XN.CREA"}], {}, "complete"),
        ("procedure", [{"code": "TDCN.ECG"}], {}, "start"),
        ("prescription", [{"code": "T.AMLO5", "dose": "1", "frequency": "1", "days": "30",
                           "instructions": "uống buổi sáng"}], {"chronic": True}, None),
    ]),
    ("Sốt, ho, đau họng 3 ngày", "J02.9", [
        ("lab", [{"code": "XN.CTM"}, {"code": "XN.CRP"}], {}, None),
        ("imaging", [{"code": "CDHA.XQN"}], {}, None),
        ("prescription", [{"code": "T.AMOX500", "dose": "1", "frequency": "3", "days": "7", "instructions": "sau ăn"},
                          {"code": "T.PARA500", "dose": "1", "frequency": "3", "days": "3",
                           "instructions": "khi sốt trên 38,5 °C, cách nhau ít nhất 4 giờ"}], {}, None),
    ]),
    ("Đau thượng vị, ợ chua", "K29.7", [
        ("imaging", [{"code": "CDHA.SAOB"}], {}, "complete"),
        ("prescription", [{"code": "T.OME20", "dose": "1", "frequency": "2", "days": "14",
                           "instructions": "trước ăn 30 phút"}], {}, None),
    ]),
    ("Khát nhiều, tiểu nhiều", "E11.9", [
        ("lab", [{"code": "XN.GLU"}, {"code": "XN.HBA1C"}, {"code": "XN.NT"}], {}, None),
    ]),
    ("Mất ngủ kéo dài, lo âu", "F41.1", [
        ("prescription", [{"code": "T.DIAZ5", "dose": "1", "frequency": "1", "days": "7",
                           "instructions": "uống trước khi ngủ"}], {}, None),
        ("lab", [{"code": "XN.DGD"}], {}, "cancel"),
    ]),
]


def seed(session: Session, actor: Actor, *, day=None) -> int:
    """Open the demo visits and place their orders; returns how many orders it placed (0 when already seeded)."""
    if session.scalar(select(Order.id).limit(1)) is not None:
        return 0
    room = session.scalar(select(Room).where(Room.code == ROOM))
    user = session.scalar(select(User).where(User.username == DOCTOR))
    doctor = session.scalar(select(Staff).where(Staff.user_id == user.id)) if user is not None else None
    if room is None:
        return 0
    day = day or date.today()
    by = Actor(id=user.id, name=user.username) if user is not None else actor
    # Adults: a child's prescription would also need a weight and the accompanying adult.
    patients = session.scalars(select(Patient).where(Patient.merged_into_id.is_(None),
                                                     Patient.birth_year <= day.year - 18)
                               .order_by(Patient.id).limit(len(VISITS))).all()
    placed = 0
    for patient, (reason, icd10, planned) in zip(patients, VISITS, strict=False):
        encounter = encounters.open_encounter(session, by, patient, kind="outpatient", day=day, room=room,
                                              doctor=doctor, reason=reason,
                                              insured=current_card(session, patient) is not None)
        encounters.set_status(session, by, encounter, "in_progress")
        diagnosis, _warnings = encounters.add_diagnosis(session, by, encounter, icd10, position="principal", on=day)
        for kind, items, options, then in planned:
            order = orders.place_order(session, by, encounter, kind, [dict(i) for i in items], on=day,
                                       diagnosis_id=diagnosis.id, **options)
            placed += 1
            if then == "start":
                orders.start(session, by, order)
            elif then == "complete":
                orders.complete(session, by, order)
            elif then == "cancel":
                orders.cancel(session, by, order, "Chỉ định trùng với xét nghiệm đã làm tuần trước")
    return placed

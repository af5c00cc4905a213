"""Demo data for his: a small general hospital's organisation, staff linked to the demo accounts,
the demo catalogue and a few hundred patients. Running it again changes nothing."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import Actor
from core.models import User
from his import demo_admission, demo_catalog, demo_orders, demo_pharmacy, patients, sample_data
from his.models.org import Bed, Department, Room, ServicePoint, Staff

DEMO_PATIENTS = 300
# code, name, BHYT department code, clinical
DEPARTMENTS = [("KKB", "Khoa Khám bệnh", "K01", True), ("KCC", "Khoa Cấp cứu", "K02", True),
               ("KNOI", "Khoa Nội tổng hợp", "K03", True), ("KNGOAI", "Khoa Ngoại tổng hợp", "K19", True),
               ("KNHI", "Khoa Nhi", "K26", True), ("KXN", "Khoa Xét nghiệm", "K46", False),
               ("KCDHA", "Khoa Chẩn đoán hình ảnh", "K47", False), ("KDUOC", "Khoa Dược", "K50", False)]
# room code, department, name, kind
ROOMS = [("TD", "KKB", "Quầy tiếp đón", "reception"), ("P101", "KKB", "Phòng khám Nội 1", "exam"),
         ("P102", "KKB", "Phòng khám Nội 2", "exam"), ("P103", "KKB", "Phòng khám Ngoại", "exam"),
         ("P104", "KKB", "Phòng khám Nhi", "exam"), ("CC1", "KCC", "Phòng cấp cứu", "exam"),
         ("XN1", "KXN", "Phòng lấy mẫu xét nghiệm", "lab"), ("XQ1", "KCDHA", "Phòng X-quang", "imaging"),
         ("TN1", "KKB", "Quầy thu ngân", "cashier"), ("NT1", "KDUOC", "Quầy phát thuốc", "pharmacy"),
         ("N201", "KNOI", "Buồng 201 Nội", "ward"), ("N202", "KNOI", "Buồng 202 Nội", "ward"),
         ("NG301", "KNGOAI", "Buồng 301 Ngoại", "ward"), ("NH401", "KNHI", "Buồng 401 Nhi", "ward")]
# service point code, room, kind
POINTS = [("TD", "TD", "reception"), ("PK101", "P101", "exam_room"), ("PK102", "P102", "exam_room"),
          ("PK103", "P103", "exam_room"), ("PK104", "P104", "exam_room"), ("XN1", "XN1", "lab_collection"),
          ("XQ1", "XQ1", "imaging"), ("TN1", "TN1", "cashier"), ("NT1", "NT1", "pharmacy")]
# demo username, title, department, licence number
STAFF = [("bacsi", "BSCKI", "KKB", "000123/HNO-CCHN"), ("dieuduong", "ĐD", "KKB", "004567/HNO-CCHN"),
         ("ktvxn", "KTV", "KXN", "007788/HNO-CCHN"), ("bsxn", "BSCKI", "KXN", "001122/HNO-CCHN"),
         ("ktvcdha", "KTV", "KCDHA", "003344/HNO-CCHN"), ("bscdha", "BSCKII", "KCDHA", "005566/HNO-CCHN"),
         ("duocsi", "DSĐH", "KDUOC", "009900/HNO-CCHD")]


def seed(session: Session, actor: Actor) -> None:
    if session.scalar(select(Department.id).limit(1)) is not None:
        return
    depts = {}
    for code, name, bhyt, clinical in DEPARTMENTS:
        depts[code] = Department(code=code, name=name, bhyt_code=bhyt, is_clinical=clinical, active=True)
        session.add(depts[code])
    session.flush()
    rooms = {}
    for code, dept, name, kind in ROOMS:
        rooms[code] = Room(department_id=depts[dept].id, code=code, name=name, kind=kind, active=True)
        session.add(rooms[code])
    session.flush()
    for code, room in rooms.items():
        if room.kind == "ward":
            for n in range(1, 7):
                session.add(Bed(room_id=room.id, code=f"{code}-G{n:02d}", active=True))
    for code, room, kind in POINTS:
        session.add(ServicePoint(code=code, name=rooms[room].name, kind=kind, room_id=rooms[room].id,
                                 normal_per_priority=2, active=True))
    users = {u.username: u for u in session.scalars(select(User))}
    for username, title, dept, licence in STAFF:
        user = users.get(username)
        if user is not None:
            session.add(Staff(user_id=user.id, full_name=user.full_name, title=title, department_id=depts[dept].id,
                              licence_number=licence, active=True))
    session.flush()
    demo_catalog.seed(session, actor)
    today = date.today()
    for fake in sample_data.patients(DEMO_PATIENTS, seed=7):
        data = {"full_name": fake.full_name, "sex": fake.sex, "birth_date": fake.birth_date,
                "birth_year": fake.birth_year, "national_id": fake.national_id, "phone": fake.phone,
                "address_text": fake.address_text, "bhyt_number": fake.bhyt_number,
                "bhyt_valid_from": date(today.year, 1, 1) if fake.bhyt_number else None,
                "bhyt_valid_to": date(today.year, 12, 31) if fake.bhyt_number else None}
        patients.register(session, actor, data, today=today, confirm_possible_duplicate=True)
    session.flush()
    demo_pharmacy.seed(session, actor)
    demo_orders.seed(session, actor)
    demo_admission.seed(session, actor)

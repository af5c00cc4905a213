"""Billing fixtures: the demo catalogue, a doctor, an insured patient's visit with its main diagnosis."""

from datetime import date, timedelta
from decimal import Decimal

import pytest

from billing.charges import local_day
from core.audit import Actor
from core.db import utcnow
from his import demo_catalog, encounters, patients
from his.models.org import Bed, Department, Room, Staff
from tests.his.conftest import DESK, TODAY, make_clinic

CARD = "DN4010123456789"  # benefit code 4: 80 %
FACILITY = "79001"
LEVEL = "provincial"
SYSTEM = Actor.system("test")


def today_local() -> date:
    return local_day(utcnow())


def make_visit(session, clinic: dict, *, card: str | None = CARD, kind: str = "outpatient", name="Trần Thị Bình",
               valid_to: date | None = None, national_id=None, **options) -> dict:
    demo_catalog.seed(session, SYSTEM)
    staff = session.query(Staff).filter_by(full_name="BS Lê Minh").one_or_none()
    if staff is None:
        staff = Staff(full_name="BS Lê Minh", title="BSCKI", department_id=clinic["department"].id, active=True,
                      licence_number="000123/HCM-CCHN", bhyt_doctor_code="000123/HCM-CCHN")
        session.add(staff)
        session.flush()
    data = {"full_name": name, "birth_date": date(1960, 5, 17), "sex": "female", "national_id": national_id,
            "address_text": "12 Lê Lợi, Phường Bến Thành, TP Hồ Chí Minh"}
    if card:
        data |= {"bhyt_number": card, "bhyt_valid_from": date(2026, 1, 1),
                 "bhyt_valid_to": valid_to or today_local() + timedelta(days=200), "bhyt_registered_facility": "79024"}
    patient = patients.register(session, DESK, data, today=TODAY, confirm_possible_duplicate=True).patient
    encounter = encounters.open_encounter(session, DESK, patient, kind=kind, day=TODAY, room=clinic["room"],
                                          doctor=staff, insured=card is not None, reason="Đau đầu", **options)
    encounters.add_diagnosis(session, DESK, encounter, "I10", position="principal", on=TODAY)
    return {"patient": patient, "encounter": encounter, "staff": staff}


def make_ward(session) -> dict:
    dept = Department(code="NOI", name="Khoa Nội", bhyt_code="K02", is_clinical=True, active=True)
    session.add(dept)
    session.flush()
    room = Room(department_id=dept.id, code="N201", name="Phòng 201", kind="ward", active=True)
    session.add(room)
    session.flush()
    bed = Bed(room_id=room.id, code="N201-01", bhyt_code="H001", active=True)
    session.add(bed)
    session.flush()
    return {"department": dept, "room": room, "bed": bed}


@pytest.fixture
def clinic(db_session):
    made = make_clinic(db_session)
    db_session.commit()
    return made


@pytest.fixture
def visit(db_session, clinic):
    made = make_visit(db_session, clinic)
    db_session.commit()
    return made


D = Decimal


def settings_for_tests(tmp_path=None, **overrides):
    from billing.settings import Settings

    values = {"facility_code": FACILITY, "facility_level": LEVEL, "head_id": "7900012345", "bank_bin": "970436",
              "bank_account": "0071000123456", "merchant_name": "BENH VIEN VNHIS", "webhook_secret": "w" * 32,
              "signing_key": None, "signing_cert": None}
    values.update(overrides)
    return Settings(**values)


def claimable_visit(session, clinic, **options) -> dict:
    """A finished insured visit with a lab test, a dispensed drug and what a claim needs recorded."""
    from billing.models import ItemTerms
    from his import dispensing, encounters, orders, stock
    from his.models.catalog import Drug
    from his.models.pharmacy import Warehouse

    made = make_visit(session, clinic, **options)
    patient, encounter = made["patient"], made["encounter"]
    patient.ethnicity_code, patient.occupation_code, patient.phone = "01", "00001", "0903123456"
    patient.province_code, patient.district_code, patient.ward_code = "79", "760", "26734"
    drug = session.query(Drug).filter_by(code="T.AMLO5").one()
    drug.bhyt_code, drug.registration_number = "40.492", "VD-12345-10"
    if session.query(ItemTerms).filter_by(item_code="T.AMLO5").one_or_none() is None:
        session.add(ItemTerms(item_kind="drug", item_code="T.AMLO5", in_list=True, payment_ratio=100,
                              tender="1574/QĐ-SYT;G1;N4;2026", valid_from=date(2026, 1, 1)))
    warehouse = session.query(Warehouse).filter_by(code="NT").one_or_none()
    if warehouse is None:
        warehouse = Warehouse(code="NT", name="Quầy cấp phát", kind="dispensing", active=True)
        session.add(warehouse)
        session.flush()
        stock.receive(session, DESK, warehouse, supplier="Công ty Dược", invoice_number="HD-CLAIM", today=TODAY,
                      lines=[stock.ReceiptLine(drug, "L1", TODAY + timedelta(days=300), "1000", "400")])
    lab = orders.place_order(session, DESK, encounter, "lab", [{"code": "XN.CTM", "quantity": "1"},
                                                               {"code": "XN.GLU", "quantity": "1"}], on=TODAY)
    orders.start(session, DESK, lab, performer=made["staff"])
    orders.complete(session, DESK, lab)
    prescription = orders.place_order(session, DESK, encounter, "prescription",
                                      [{"code": "T.AMLO5", "quantity": "30", "dose": "1", "frequency": 1, "days": 30}],
                                      on=TODAY)
    dispensing.dispense_prescription(session, DESK, warehouse, prescription, today=TODAY)
    encounters.set_status(session, DESK, encounter, "in_progress")
    encounters.set_status(session, DESK, encounter, "finished")
    from billing import bills

    bills.compute(session, SYSTEM, encounter, LEVEL)  # the cashier's look: nothing due, settled (NGAY_TTOAN)
    return made

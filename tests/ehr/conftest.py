"""A small hospital for the medical-record tests: an internal-medicine department with its doctor and
nurse, a surgeon of another department, a patient with an outpatient visit, a few ICD-10 codes, and
(on request) a facility CA with a certificate per clinician."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pytest

import his.models  # noqa: F401  (before his.encounters: see ehr/forms.py)
from core import auth
from core.audit import Actor
from ehr import pki
from ehr.keystore import SoftwareKeyStore
from ehr.models import Certificate
from his import encounters
from his.models.catalog import Icd10Code
from his.models.encounters import Encounter
from his.models.org import Department, Room, Staff
from his.models.patients import Patient
from his.text import fold

SYSTEM = Actor.system("test")
PASSWORD = "mat-khau-thu-nghiem"
PASSPHRASE = "ehr-test-passphrase-0123456789"
TREATMENT = {"progress": "Sốt giảm, còn ho khạc đờm", "orders": "Ceftriaxon 1 g × 2 lọ, tiêm TM", "pulse": "88",
             "temperature": "37,8", "blood_pressure": "120/80"}


@dataclass
class Hospital:
    noi: Department
    ngoai: Department
    room: Room
    doctor: object
    nurse: object
    surgeon: object
    patient: Patient
    encounter: Encounter

    def actor(self, user) -> Actor:
        return Actor(id=user.id, name=user.username, ip="10.0.0.5")


def _user(session, username: str, full_name: str, role: str, department: Department, title: str):
    user = auth.create_user(session, SYSTEM, username=username, full_name=full_name, password=PASSWORD, roles=[role])
    session.add(Staff(user_id=user.id, full_name=full_name, title=title, department_id=department.id, active=True))
    session.flush()
    return user


def make_hospital(session) -> Hospital:
    noi = Department(code="KNOI", name="Khoa Nội", bhyt_code="K03", is_clinical=True, active=True)
    ngoai = Department(code="KNGOAI", name="Khoa Ngoại", bhyt_code="K19", is_clinical=True, active=True)
    session.add_all([noi, ngoai])
    session.flush()
    room = Room(department_id=noi.id, code="P101", name="Phòng khám Nội 1", kind="exam", active=True)
    session.add(room)
    for code, name, extra in [("J18.9", "Viêm phổi, không đặc hiệu", {}), ("I10", "Tăng huyết áp vô căn", {}),
                              ("F32.0", "Giai đoạn trầm cảm nhẹ", {}), ("M00.00", "Viêm khớp do tụ cầu", {}),
                              ("R69", "Bệnh không rõ nguyên nhân", {"not_for_use": True})]:
        session.add(Icd10Code(version="TT06/2026", code=code, name_vi=name, name_folded=fold(name),
                              valid_from=date(2020, 1, 1), active=True, **extra))
    session.flush()
    doctor = _user(session, "bs.hung", "Trần Văn Hùng", "doctor", noi, "BSCKI")
    nurse = _user(session, "dd.hoa", "Lê Thị Hoa", "nurse", noi, "ĐD")
    surgeon = _user(session, "bs.nam", "Phạm Văn Nam", "doctor", ngoai, "BS")
    folded = fold("Nguyễn Văn An")
    patient = Patient(code="260000001", full_name="Nguyễn Văn An", name_folded=folded,
                      name_reversed=" ".join(reversed(folded.split())), birth_year=1970, birth_date=date(1970, 5, 4),
                      sex="male", nationality="VN", national_id="001070012345")
    session.add(patient)
    session.flush()
    staff = session.query(Staff).filter_by(user_id=doctor.id).one()
    encounter = encounters.open_encounter(session, SYSTEM, patient, kind="outpatient", day=date.today(), room=room,
                                          doctor=staff, reason="Sốt, ho")
    return Hospital(noi, ngoai, room, doctor, nurse, surgeon, patient, encounter)


@pytest.fixture
def hospital(db_session) -> Hospital:
    made = make_hospital(db_session)
    db_session.commit()
    return made


@pytest.fixture(scope="session")
def keys() -> SoftwareKeyStore:
    return SoftwareKeyStore(PASSPHRASE)


def make_certificates(session, keys, hospital: Hospital) -> Certificate:
    ca = pki.create_ca(session, SYSTEM, keys, "Test Hospital CA", "Bệnh viện Thử nghiệm")
    for user in (hospital.doctor, hospital.nurse, hospital.surgeon):
        pki.issue(session, SYSTEM, keys, ca, common_name=user.full_name, organisation="Bệnh viện Thử nghiệm",
                  user_id=user.id)
    return ca


@pytest.fixture
def ca(db_session, keys, hospital) -> Certificate:
    row = make_certificates(db_session, keys, hospital)
    db_session.commit()
    return row


@pytest.fixture
def app(session_factory, tmp_path):
    """The web application with his and ehr only, so these tests do not depend on sibling modules."""
    from core.app import create_app
    from tests.conftest import make_config

    return create_app(make_config(tmp_path, modules=("his", "ehr"), extra={"VNHIS_EHR_KEY_PASSPHRASE": PASSPHRASE}),
                      session_factory=session_factory)

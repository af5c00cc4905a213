"""The patient master index on PostgreSQL: register, find by QR, duplicates, search, merge/unmerge."""

from datetime import date

import pytest
from sqlalchemy import func, select

from core.models import AuditEvent
from his import encounters, patients
from his.identity import IdentityError
from his.models.encounters import Encounter
from his.models.patients import BhytCard, Patient
from his.patients import PatientError
from tests.his.conftest import DESK, TODAY

QR = "001090123456|012345678|Nguyễn Văn An|01011990|Nam|Số 1 Tràng Tiền, Hoàn Kiếm, Hà Nội|15042021"


def _register(session, name="Trần Thị Bình", year=1985, sex="female", **extra):
    data = {"full_name": name, "birth_year": year, "sex": sex, **extra}
    return patients.register(session, DESK, data, today=TODAY, confirm_possible_duplicate=True).patient


def _count(session, model):
    return session.scalar(select(func.count()).select_from(model))


def test_qr_registers_then_finds_the_same_patient(db_session):
    first = patients.find_or_register_by_qr(db_session, DESK, QR, today=TODAY)
    assert first.created and first.warnings == []
    patient = first.patient
    assert (patient.full_name, patient.name_folded, patient.name_reversed) == \
        ("Nguyễn Văn An", "nguyen van an", "an van nguyen")
    assert patient.code.startswith("26") and len(patient.code) == 10
    assert patient.birth_date == date(1990, 1, 1) and patient.sex == "male"
    assert patient.national_id_raw_qr == QR and patient.address_text.startswith("Số 1 Tràng Tiền")
    again = patients.find_or_register_by_qr(db_session, DESK, QR, today=TODAY)
    assert not again.created and again.patient.id == patient.id
    assert _count(db_session, Patient) == 1
    db_session.commit()
    actions = db_session.scalars(select(AuditEvent.action).where(AuditEvent.target_type == "patients")).all()
    assert actions == ["patient.create", "patient.found_by_qr"]


def test_patient_codes_count_up(db_session):
    codes = [int(_register(db_session, f"Người {i}", 1980 + i).code) for i in range(3)]
    assert codes[1] == codes[0] + 1 and codes[2] == codes[1] + 1


def test_same_cccd_is_a_hard_duplicate(db_session):
    patients.find_or_register_by_qr(db_session, DESK, QR, today=TODAY)
    before = _count(db_session, Patient)
    with pytest.raises(PatientError) as info:
        _register(db_session, "Nguyễn An", 1990, "male", national_id="001090123456")
    assert info.value.code == "duplicate_cccd" and info.value.field == "national_id"
    assert _count(db_session, Patient) == before


def test_same_bhyt_card_is_a_hard_duplicate(db_session):
    _register(db_session, bhyt_number="HS4010120878811")
    with pytest.raises(PatientError) as info:
        _register(db_session, "Lê Văn Cường", 1970, "male", bhyt_number="HS4010120878811")
    assert info.value.code == "duplicate_bhyt"


def test_similar_name_and_year_needs_confirmation(db_session):
    _register(db_session, "Phạm Thị Dung", 1960)
    data = {"full_name": "PHẠM THỊ DUNG", "birth_year": 1960, "sex": "female"}
    with pytest.raises(PatientError) as info:
        patients.register(db_session, DESK, data, today=TODAY)
    assert info.value.code == "possible_duplicate" and len(info.value.extra["candidates"]) == 1
    created = patients.register(db_session, DESK, data, today=TODAY, confirm_possible_duplicate=True)
    assert created.possible_duplicates and created.patient.code


def test_a_bad_bhyt_number_saves_nothing(db_session):
    before = _count(db_session, Patient)
    with pytest.raises(IdentityError):
        _register(db_session, bhyt_number="ZZ4010120878811")
    assert _count(db_session, Patient) == before


def test_card_history(db_session):
    patient = _register(db_session, bhyt_number="HS4010120878811", bhyt_valid_to=date(2026, 12, 31))
    patients.add_card(db_session, DESK, patient,
                      {"bhyt_number": "HS4010120878822", "bhyt_valid_to": date(2027, 12, 31)}, today=TODAY)
    cards = db_session.scalars(select(BhytCard).where(BhytCard.patient_id == patient.id).order_by(BhytCard.id)).all()
    assert [c.number for c in cards] == ["HS4010120878811", "HS4010120878822"]
    assert cards[0].superseded_at is not None and cards[1].superseded_at is None
    assert patients.current_card(db_session, patient).number == "HS4010120878822"


@pytest.fixture
def crowd(db_session):
    people = [("Nguyễn Văn An", 1990, "male", "0912345678"), ("Nguyễn Văn Anh", 1991, "male", None),
              ("Nguyễn Thị Ánh", 1992, "female", None), ("Trần Văn An", 1980, "male", None),
              ("Đặng Đức Đạt", 1975, "male", None)]
    made = [_register(db_session, n, y, s, phone=p) for n, y, s, p in people]
    patients.add_card(db_session, DESK, made[4], {"bhyt_number": "HT3790120878811"}, today=TODAY)
    return made


@pytest.mark.parametrize(("query", "expected"), [
    ("nguyen van an", ["Nguyễn Văn An", "Nguyễn Văn Anh"]),
    ("Nguyễn Văn", ["Nguyễn Văn An", "Nguyễn Văn Anh"]),
    ("an van", ["Nguyễn Văn An", "Trần Văn An"]),  # given name first
    ("anh", ["Nguyễn Thị Ánh", "Nguyễn Văn Anh"]),
    ("dang duc", ["Đặng Đức Đạt"]),
    ("0912345678", ["Nguyễn Văn An"]),
    ("HT3790120878811", ["Đặng Đức Đạt"]),
    ("0120878811", ["Đặng Đức Đạt"]),  # the BHXH number alone
])
def test_search(db_session, crowd, query, expected):
    rows, more = patients.search(db_session, DESK, query)
    assert sorted(p.full_name for p in rows) == sorted(expected) and not more


def test_search_by_code_cccd_and_paging(db_session, crowd):
    rows, _ = patients.search(db_session, DESK, crowd[3].code)
    assert [p.id for p in rows] == [crowd[3].id]
    page1, more = patients.search(db_session, DESK, "nguyen", per_page=2)
    page2, more2 = patients.search(db_session, DESK, "nguyen", page=2, per_page=2)
    assert len(page1) == 2 and more and len(page2) == 1 and not more2
    assert patients.search(db_session, DESK, "x") == ([], False)  # too short to search


def test_fuzzy_fallback_finds_a_typo(db_session, crowd):
    rows, _ = patients.search(db_session, DESK, "nguyen van ann")
    assert "Nguyễn Văn An" in [p.full_name for p in rows]


def test_search_is_audited(db_session, crowd):
    patients.search(db_session, DESK, "dang duc")
    db_session.commit()
    event = db_session.scalar(select(AuditEvent).where(AuditEvent.action == "patient.search")
                              .order_by(AuditEvent.seq.desc()).limit(1))
    assert event.detail == {"q": "dang duc", "kind": "name", "found": 1}


def test_merge_and_unmerge_round_trip(db_session, clinic):
    survivor = _register(db_session, "Lê Thị Hoa", 1950)
    duplicate = patients.find_or_register_by_qr(
        db_session, DESK, "001150123456||Lê Thị Hoa|02031950|Nữ|Hà Nội|01012022", today=TODAY).patient
    patients.add_card(db_session, DESK, duplicate, {"bhyt_number": "HT3010120878899"}, today=TODAY)
    visit = encounters.open_encounter(db_session, DESK, duplicate, kind="outpatient", day=TODAY,
                                      room=clinic["room"])
    before = {p.id: patients._snapshot(p) for p in (survivor, duplicate)}

    record = patients.merge(db_session, DESK, survivor, duplicate, "Cùng một người: đối chiếu CCCD")
    assert patients.merge(db_session, DESK, survivor, duplicate, "again") is record  # idempotent
    db_session.commit()
    assert db_session.get(Patient, duplicate.id).merged_into_id == survivor.id
    assert db_session.get(Encounter, visit.id).patient_id == survivor.id
    assert db_session.get(Patient, survivor.id).national_id == "001150123456"  # learnt from the duplicate
    assert patients.current_card(db_session, survivor).number == "HT3010120878899"
    assert [p.id for p in patients.search(db_session, DESK, "le thi hoa")[0]] == [survivor.id]

    later = encounters.open_encounter(db_session, DESK, survivor, kind="outpatient", day=TODAY, room=clinic["room"])
    patients.unmerge(db_session, DESK, record, "Nhầm: hai người khác nhau")
    db_session.commit()
    assert {p.id: patients._snapshot(db_session.get(Patient, p.id)) for p in (survivor, duplicate)} == before
    assert db_session.get(Encounter, visit.id).patient_id == duplicate.id
    assert db_session.get(Encounter, later.id).patient_id == survivor.id  # made after the merge: stays
    assert patients.current_card(db_session, duplicate).number == "HT3010120878899"
    actions = db_session.scalars(select(AuditEvent.action).where(AuditEvent.action.like("patient.%merge%"))
                                 .order_by(AuditEvent.seq)).all()
    assert actions == ["patient.merge", "patient.merged_away", "patient.unmerge", "patient.unmerged"]
    with pytest.raises(PatientError) as info:
        patients.unmerge(db_session, DESK, record, "again")
    assert info.value.code == "already_undone"


@pytest.mark.parametrize(("reason", "same", "code"), [("", False, "reason_required"), ("x", True, "same_patient")])
def test_merge_refusals(db_session, reason, same, code):
    a = _register(db_session, "Vũ Văn Em", 1999, "male")
    b = a if same else _register(db_session, "Vũ Văn Em", 1999, "male")
    with pytest.raises(PatientError) as info:
        patients.merge(db_session, DESK, a, b, reason)
    assert info.value.code == code


def test_a_double_scan_at_the_same_moment_registers_one_patient(committed_db_url):
    import threading

    from core.db import make_engine, make_session_factory

    engine = make_engine(committed_db_url, pool_size=10)
    factory = make_session_factory(engine)
    barrier, results, errors = threading.Barrier(6), [], []

    def scan():
        try:
            with factory() as session:
                barrier.wait()
                registration = patients.find_or_register_by_qr(session, DESK, QR, today=TODAY)
                session.commit()
                results.append((registration.patient.id, registration.created))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=scan) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len({pid for pid, _ in results}) == 1 and sum(created for _, created in results) == 1
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Patient)) == 1
    engine.dispose()


def test_merge_keeps_one_current_card_and_unmerge_reopens_it(db_session):
    survivor = _register(db_session, "Hà Văn Tư", 1960, "male", bhyt_number="HT3010120870001")
    duplicate = _register(db_session, "Hà Văn Tư", 1960, "male", bhyt_number="HT3010120870002")
    record = patients.merge(db_session, DESK, survivor, duplicate, "Cùng người")
    live = db_session.scalars(select(BhytCard).where(BhytCard.patient_id == survivor.id,
                                                     BhytCard.superseded_at.is_(None))).all()
    assert [c.number for c in live] == ["HT3010120870002"]
    patients.unmerge(db_session, DESK, record, "Nhầm")
    assert patients.current_card(db_session, survivor).number == "HT3010120870001"
    assert patients.current_card(db_session, duplicate).number == "HT3010120870002"


def test_unmerge_is_refused_when_the_survivor_was_merged_again(db_session):
    a, b, c = (_register(db_session, "Tạ Thị Yến", 1977) for _ in range(3))
    first = patients.merge(db_session, DESK, b, a, "trùng")
    patients.merge(db_session, DESK, c, b, "trùng")
    with pytest.raises(PatientError) as info:
        patients.unmerge(db_session, DESK, first, "nhầm")
    assert info.value.code == "merged_again"

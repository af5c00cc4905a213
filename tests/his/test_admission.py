"""Admission, transfer, discharge: the flow and its history, and every refusal changing nothing."""

from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from core import events
from core.audit import Actor
from core.db import utcnow
from his import admission as adt
from his import encounters
from his.admission import AdmissionError
from his.models.admission import Admission, BedStay, DepartmentStay
from his.models.catalog import Icd10Code
from his.models.encounters import Encounter
from his.models.org import Bed, Department, Room
from his.models.patients import Patient
from his.text import fold

NURSE = Actor(id=None, name="dieuduong", ip="10.0.0.7")
EVENTS: list[tuple[str, dict]] = []


@events.subscribe("his.patient.admitted", inline=True)
def _seen_admitted(_session, payload):
    EVENTS.append(("admitted", payload))


@events.subscribe("his.patient.transferred", inline=True)
def _seen_transferred(_session, payload):
    EVENTS.append(("transferred", payload))


@events.subscribe("his.patient.discharged", inline=True)
def _seen_discharged(_session, payload):
    EVENTS.append(("discharged", payload))


def make_ward(session):
    """Two wards (Nội: N201 with 3 beds and one out of service; Ngoại: NG301 with 2 beds)."""
    noi = Department(code="KNOI", name="Khoa Nội tổng hợp", bhyt_code="K03", is_clinical=True, active=True)
    ngoai = Department(code="KNGOAI", name="Khoa Ngoại tổng hợp", bhyt_code="K19", is_clinical=True, active=True)
    kkb = Department(code="KKB", name="Khoa Khám bệnh", bhyt_code="K01", is_clinical=True, active=True)
    session.add_all([noi, ngoai, kkb])
    session.flush()
    n201 = Room(department_id=noi.id, code="N201", name="Buồng 201 Nội", kind="ward", active=True)
    ng301 = Room(department_id=ngoai.id, code="NG301", name="Buồng 301 Ngoại", kind="ward", active=True)
    p101 = Room(department_id=kkb.id, code="P101", name="Phòng khám Nội 1", kind="exam", active=True)
    session.add_all([n201, ng301, p101])
    session.flush()
    beds = {}
    for room, codes in ((n201, ["N201-G01", "N201-G02", "N201-G03"]), (ng301, ["NG301-G01", "NG301-G02"])):
        for code in codes:
            beds[code] = Bed(room_id=room.id, code=code, active=True)
    beds["N201-G09"] = Bed(room_id=n201.id, code="N201-G09", active=False)
    session.add_all(beds.values())
    session.flush()
    return {"noi": noi, "ngoai": ngoai, "kkb": kkb, "exam": p101, "beds": beds}


def make_patient(session, name="Nguyễn Văn An", code="260000001"):
    folded = fold(name)
    p = Patient(code=code, full_name=name, name_folded=folded, name_reversed=" ".join(reversed(folded.split())),
                birth_year=1970, sex="male", nationality="VN")
    session.add(p)
    session.flush()
    return p


def outpatient_visit(session, patient, room, started):
    visit = encounters.open_encounter(session, NURSE, patient, kind="outpatient", day=date.today(), room=room)
    visit.started_at = started
    session.flush()
    return visit


@pytest.fixture
def ward(db_session):
    return make_ward(db_session)


T0 = utcnow().replace(microsecond=0) - timedelta(days=5)


def at(hours: float):
    return T0 + timedelta(hours=hours)


def _pending(session) -> list[str]:
    return [e["action"] for e in session.info.get("vnhis.audit.pending", [])]


def test_admitting_a_visit_turns_it_into_the_inpatient_stay(db_session, ward):
    patient = make_patient(db_session)
    visit = outpatient_visit(db_session, patient, ward["exam"], at(-2))
    code = visit.code
    EVENTS.clear()
    record = adt.admit(db_session, NURSE, visit, department=ward["noi"], bed=ward["beds"]["N201-G01"],
                       reason="Viêm phổi, cần theo dõi", at=at(0))
    assert record.encounter_id == visit.id and record.source == "outpatient"
    assert (visit.kind, visit.status, visit.code) == ("inpatient", "admitted", code)  # one episode, one MA_LK
    assert visit.started_at == at(-2) and record.admitted_at == at(0)  # NGAY_VAO and NGAY_VAO_NOI_TRU
    assert visit.department_id == ward["noi"].id and visit.room.code == "N201"
    assert adt.current_bed_stay(db_session, visit).bed.code == "N201-G01"
    assert adt.current_department_stay(db_session, visit).department.code == "KNOI"
    assert "adt.admit" in _pending(db_session)
    name, payload = EVENTS[-1]
    assert name == "admitted" and payload["bed_code"] == "N201-G01" and payload["department_code"] == "KNOI"
    assert payload["at"] == at(0).isoformat() and payload["encounter_code"] == code


def test_direct_admission_opens_an_inpatient_encounter(db_session, ward):
    patient = make_patient(db_session)
    record = adt.admit(db_session, NURSE, patient, department=ward["ngoai"], bed=ward["beds"]["NG301-G02"],
                       reason="Đau bụng cấp", at=at(0), day=date.today())
    encounter = db_session.get(Encounter, record.encounter_id)
    assert (encounter.kind, encounter.status, record.source) == ("inpatient", "admitted", "direct")
    assert encounter.department.code == "KNGOAI"


def test_admission_without_a_bed_waits_on_the_board(db_session, ward):
    patient = make_patient(db_session)
    record = adt.admit(db_session, NURSE, patient, department=ward["noi"], bed=None, reason="Sốt", at=at(0),
                       day=date.today())
    view = adt.board(db_session, NURSE, ward["noi"])
    assert [e.id for _s, e, _a in view.unbedded] == [record.encounter_id]
    assert view.occupied == 0 and view.free == 3  # the bed out of service is not free
    adt.transfer(db_session, NURSE, record.encounter, to_bed=ward["beds"]["N201-G03"], at=at(1))
    view = adt.board(db_session, NURSE, ward["noi"])
    assert view.unbedded == [] and view.occupied == 1
    taken = [b for r in view.rooms for b in r.beds if b.stay]
    assert taken[0].bed.code == "N201-G03" and taken[0].admission.id == record.id
    assert _pending(db_session).count("adt.board_view") == 2


def test_transfers_and_discharge_keep_the_whole_history(db_session, ward):
    beds = ward["beds"]
    patient = make_patient(db_session)
    record = adt.admit(db_session, NURSE, patient, department=ward["noi"], bed=beds["N201-G01"], reason="Khó thở",
                       at=at(0), day=date.today())
    encounter = record.encounter
    EVENTS.clear()
    adt.transfer(db_session, NURSE, encounter, to_bed=beds["N201-G02"], at=at(5))           # bed, same department
    adt.transfer(db_session, NURSE, encounter, to_bed=beds["NG301-G01"], at=at(24))         # department and bed
    adt.transfer(db_session, NURSE, encounter, to_department=ward["noi"], at=at(48))        # back, no bed yet
    adt.discharge(db_session, NURSE, encounter, discharge_type="home", outcome="improved", at=at(72),
                  note="Tái khám sau 1 tuần")
    depts, bed_stays = adt.history(db_session, encounter)
    assert [(s.department.code, s.started_at, s.ended_at, s.end_reason) for s in depts] == [
        ("KNOI", at(0), at(24), "transfer"), ("KNGOAI", at(24), at(48), "transfer"),
        ("KNOI", at(48), at(72), "discharge")]
    assert [(s.bed.code, s.started_at, s.ended_at, s.end_reason) for s in bed_stays] == [
        ("N201-G01", at(0), at(5), "transfer"), ("N201-G02", at(5), at(24), "transfer"),
        ("NG301-G01", at(24), at(48), "transfer")]
    db_session.refresh(record)
    assert (record.discharged_at, record.discharge_type, record.outcome) == (at(72), "home", "improved")
    assert record.cause_of_death_code is None and record.discharge_note == "Tái khám sau 1 tuần"
    assert (encounter.status, encounter.ended_at) == ("discharged", at(72))
    assert [n for n, _p in EVENTS] == ["transferred", "transferred", "transferred", "discharged"]
    moved = EVENTS[1][1]
    assert moved["department_changed"] and moved["from"]["bed_code"] == "N201-G02"
    assert moved["to"]["bed_code"] == "NG301-G01" and moved["to"]["department_code"] == "KNGOAI"
    assert not EVENTS[0][1]["department_changed"]
    assert EVENTS[3][1]["admitted_at"] == at(0).isoformat() and EVENTS[3][1]["bed_code"] is None
    assert _pending(db_session).count("adt.transfer") == 3 and "adt.discharge" in _pending(db_session)
    # The beds are free again; the patient may be admitted anew.
    assert {b.code for b in adt.free_beds(db_session)} >= {"N201-G01", "N201-G02", "NG301-G01"}
    assert adt.admit(db_session, NURSE, patient, department=ward["noi"], bed=beds["N201-G01"], reason="Tái phát",
                     at=at(80), day=date.today()).encounter_id != encounter.id


def test_a_death_is_recorded_with_its_cause(db_session, ward):
    db_session.add(Icd10Code(version="TT06/2026", code="I46.1", name_vi="Đột tử do tim", name_folded="dot tu do tim",
                             valid_from=date(2020, 1, 1), active=True, cause_of_death_only=True))
    patient = make_patient(db_session)
    record = adt.admit(db_session, NURSE, patient, department=ward["noi"], bed=ward["beds"]["N201-G01"],
                       reason="Nhồi máu cơ tim", at=at(0), day=date.today())
    adt.discharge(db_session, NURSE, record.encounter, discharge_type="home", outcome="died", at=at(10),
                  cause_of_death="i461", death_certificate_issued=True)
    assert (record.outcome, record.cause_of_death_code, record.death_certificate_issued) == ("died", "I46.1", True)
    assert adt.current_bed_stay(db_session, record.encounter) is None


def test_cancelling_an_admitted_encounter_frees_the_bed(db_session, ward):
    patient = make_patient(db_session)
    record = adt.admit(db_session, NURSE, patient, department=ward["noi"], bed=ward["beds"]["N201-G01"],
                       reason="Nhầm người bệnh", at=at(0), day=date.today())
    encounters.cancel(db_session, NURSE, record.encounter, "Nhập nhầm hồ sơ")
    assert record.cancelled_at is not None and not record.current
    assert adt.current_bed_stay(db_session, record.encounter) is None
    assert "N201-G01" in {b.code for b in adt.free_beds(db_session)}
    assert "adt.cancelled_with_encounter" in _pending(db_session)


def test_the_database_refuses_two_current_stays_in_one_bed(db_session, ward):
    from sqlalchemy.exc import IntegrityError

    bed = ward["beds"]["N201-G01"]
    first, second = (adt.admit(db_session, NURSE, make_patient(db_session, n, c), department=ward["noi"], bed=None,
                               reason="x", at=at(0), day=date.today())
                     for n, c in (("Lê Thị Hoa", "260000010"), ("Trần Văn Bình", "260000011")))
    db_session.add(BedStay(encounter_id=first.encounter_id, bed_id=bed.id, started_at=at(1)))
    db_session.flush()
    with pytest.raises(IntegrityError, match="uq_bed_stays_bed_current"), db_session.begin_nested():
        db_session.add(BedStay(encounter_id=second.encounter_id, bed_id=bed.id, started_at=at(1)))
        db_session.flush()
    with pytest.raises(IntegrityError, match="uq_bed_stays_encounter_current"), db_session.begin_nested():
        db_session.add(BedStay(encounter_id=first.encounter_id, bed_id=ward["beds"]["N201-G02"].id, started_at=at(1)))
        db_session.flush()


# --- refusals ------------------------------------------------------------------------------------------

def _state(session):
    session.expire_all()
    rows = lambda model, *cols: sorted(session.execute(select(*cols)).all())  # noqa: E731
    return {
        "admissions": rows(Admission, Admission.id, Admission.discharged_at, Admission.outcome),
        "bed_stays": rows(BedStay, BedStay.id, BedStay.bed_id, BedStay.ended_at),
        "department_stays": rows(DepartmentStay, DepartmentStay.id, DepartmentStay.department_id,
                                 DepartmentStay.ended_at),
        "encounters": rows(Encounter, Encounter.id, Encounter.kind, Encounter.status, Encounter.department_id,
                           Encounter.room_id, Encounter.ended_at),
        "audit": [a for a in _pending(session) if a.startswith(("adt.", "encounter."))],
    }


@pytest.fixture
def admitted(db_session, ward):
    """Two admitted patients (An in N201-G01, Hoa in NG301-G01), a finished visit and a patient at home."""
    an = adt.admit(db_session, NURSE, make_patient(db_session), department=ward["noi"], bed=ward["beds"]["N201-G01"],
                   reason="Viêm phổi", at=at(0), day=date.today())
    hoa = adt.admit(db_session, NURSE, make_patient(db_session, "Lê Thị Hoa", "260000002"), department=ward["ngoai"],
                    bed=ward["beds"]["NG301-G01"], reason="Gãy xương", at=at(1), day=date.today())
    home = make_patient(db_session, "Phạm Văn Cường", "260000003")
    finished = outpatient_visit(db_session, home, ward["exam"], at(-1))
    encounters.set_status(db_session, NURSE, finished, "in_progress")
    encounters.set_status(db_session, NURSE, finished, "finished")
    visit = outpatient_visit(db_session, home, ward["exam"], at(-1))
    db_session.add(Icd10Code(version="TT06/2026", code="J18.9", name_vi="Viêm phổi", name_folded="viem phoi",
                             valid_from=date(2020, 1, 1), active=True))
    db_session.flush()
    return {"an": an.encounter, "hoa": hoa.encounter, "home": home, "finished": finished, "visit": visit, **ward}


def _discharged(db_session, w):
    adt.discharge(db_session, NURSE, w["hoa"], discharge_type="home", outcome="cured", at=at(30))


CASES = {
    "bed_taken": (lambda s, w: adt.admit(s, NURSE, w["visit"], department=w["noi"], bed=w["beds"]["N201-G01"],
                                         reason="x", at=at(2)), "bed"),
    "bed_inactive": (lambda s, w: adt.admit(s, NURSE, w["visit"], department=w["noi"], bed=w["beds"]["N201-G09"],
                                            reason="x", at=at(2)), "bed"),
    "bed_wrong_department": (lambda s, w: adt.admit(s, NURSE, w["visit"], department=w["noi"],
                                                    bed=w["beds"]["NG301-G02"], reason="x", at=at(2)), "bed"),
    "reason_required": (lambda s, w: adt.admit(s, NURSE, w["visit"], department=w["noi"], bed=w["beds"]["N201-G02"],
                                               reason="  ", at=at(2)), "reason"),
    "already_admitted": (lambda s, w: adt.admit(s, NURSE, w["an"].patient, department=w["noi"],
                                                bed=w["beds"]["N201-G02"], reason="x", at=at(2), day=date.today()),
                         "patient"),
    "encounter_closed": (lambda s, w: adt.admit(s, NURSE, w["finished"], department=w["noi"],
                                                bed=w["beds"]["N201-G02"], reason="x", at=at(2)), "encounter"),
    "time_in_future": (lambda s, w: adt.admit(s, NURSE, w["visit"], department=w["noi"], bed=w["beds"]["N201-G02"],
                                              reason="x", at=utcnow() + timedelta(hours=2)), "at"),
    "time_before_arrival": (lambda s, w: adt.admit(s, NURSE, w["visit"], department=w["noi"],
                                                   bed=w["beds"]["N201-G02"], reason="x", at=at(-5)), "at"),
    "not_admitted": (lambda s, w: adt.transfer(s, NURSE, w["visit"], to_bed=w["beds"]["N201-G02"], at=at(2)),
                     "encounter"),
    "same_bed": (lambda s, w: adt.transfer(s, NURSE, w["an"], to_bed=w["beds"]["N201-G01"], at=at(2)), "to_bed"),
    "same_department": (lambda s, w: adt.transfer(s, NURSE, w["an"], to_department=w["noi"], at=at(2)),
                        "to_department"),
    "destination_required": (lambda s, w: adt.transfer(s, NURSE, w["an"], at=at(2)), "to_bed"),
    "transfer_into_taken_bed": (lambda s, w: adt.transfer(s, NURSE, w["an"], to_bed=w["beds"]["NG301-G01"], at=at(2)),
                                "to_bed"),
    "transfer_to_inactive_bed": (lambda s, w: adt.transfer(s, NURSE, w["an"], to_bed=w["beds"]["N201-G09"],
                                                           at=at(2)), "to_bed"),
    "time_before_stay": (lambda s, w: adt.transfer(s, NURSE, w["hoa"], to_bed=w["beds"]["NG301-G02"], at=at(0.5)),
                         "at"),
    "discharge_not_admitted": (lambda s, w: adt.discharge(s, NURSE, w["visit"], discharge_type="home",
                                                          outcome="cured", at=at(2)), "encounter"),
    "discharge_twice": (lambda s, w: adt.discharge(s, NURSE, w["hoa"], discharge_type="home", outcome="cured",
                                                   at=at(31)), "encounter"),
    "transfer_after_discharge": (lambda s, w: adt.transfer(s, NURSE, w["hoa"], to_bed=w["beds"]["N201-G02"],
                                                           at=at(31)), "encounter"),
    "bad_discharge_type": (lambda s, w: adt.discharge(s, NURSE, w["an"], discharge_type="vanished", outcome="cured",
                                                      at=at(2)), "discharge_type"),
    "bad_outcome": (lambda s, w: adt.discharge(s, NURSE, w["an"], discharge_type="home", outcome="", at=at(2)),
                    "outcome"),
    "cause_of_death_required": (lambda s, w: adt.discharge(s, NURSE, w["an"], discharge_type="home", outcome="died",
                                                           at=at(2)), "cause_of_death"),
    "cause_of_death_not_died": (lambda s, w: adt.discharge(s, NURSE, w["an"], discharge_type="home",
                                                           outcome="improved", cause_of_death="J18.9", at=at(2)),
                                "cause_of_death"),
    "icd10_unknown": (lambda s, w: adt.discharge(s, NURSE, w["an"], discharge_type="home", outcome="died",
                                                 cause_of_death="Z99.99", at=at(2)), "cause_of_death"),
    "discharge_before_admission": (lambda s, w: adt.discharge(s, NURSE, w["an"], discharge_type="home",
                                                              outcome="cured", at=at(-1)), "at"),
}
CODES = {"transfer_into_taken_bed": "bed_taken", "transfer_to_inactive_bed": "bed_inactive",
         "discharge_not_admitted": "not_admitted", "discharge_twice": "already_discharged",
         "transfer_after_discharge": "already_discharged", "discharge_before_admission": "time_before_stay"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_refusals_name_the_field_and_change_nothing(db_session, admitted, case):
    action, field_name = CASES[case]
    if case in ("discharge_twice", "transfer_after_discharge"):
        _discharged(db_session, admitted)  # the first discharge goes through
    before = _state(db_session)
    with pytest.raises(AdmissionError) as info:
        action(db_session, admitted)
    assert (info.value.code, info.value.field) == (CODES.get(case, case), field_name)
    assert _state(db_session) == before


def test_the_bed_taken_message_is_vietnamese(app, db_session, admitted):
    with app.test_request_context(headers={"Accept-Language": "vi"}):
        with pytest.raises(AdmissionError) as info:
            CASES["bed_taken"][0](db_session, admitted)
        assert "N201-G01" in str(info.value)


def test_inactive_department_is_refused(db_session, admitted):
    admitted["ngoai"].active = False
    db_session.flush()
    before = _state(db_session)
    with pytest.raises(AdmissionError) as info:
        adt.transfer(db_session, NURSE, admitted["an"], to_department=admitted["ngoai"], at=at(2))
    assert (info.value.code, info.value.field) == ("department_inactive", "department")
    assert _state(db_session) == before
    assert db_session.scalar(select(func.count()).select_from(BedStay).where(BedStay.ended_at.is_(None))) == 2

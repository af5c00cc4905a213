"""The result workflow on PostgreSQL: our flags and critical limits, delta check, versions on
correction, technical then medical validation, the events other modules receive, the critical-value
notification and its acknowledgement, and the his order completed."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from core import events
from core.models import AuditEvent
from his import orders
from his.models.orders import Order
from lis import inbox, specimens, validation
from lis.models import CriticalAlert, LabTest, Report, Result
from lis.validation import ValidationError
from tests.lis.conftest import TODAY
from tests.lis.messages import glucose_oru, oul_r22

RECEIVED: list[tuple[str, dict]] = []


@events.subscribe("lis.report.released", inline=True)
def _on_released(session, payload):
    RECEIVED.append(("released", payload))


@events.subscribe("lis.result.critical", inline=True)
def _on_critical(session, payload):
    RECEIVED.append(("critical", payload))


@pytest.fixture(autouse=True)
def _fresh():
    RECEIVED.clear()
    yield
    RECEIVED.clear()


def _serum(db_session, lab):
    return specimens.by_barcode(db_session, lab["serum"])


def _current(db_session, lab, code):
    return db_session.scalar(select(Result).join(Result.test).where(Result.superseded_at.is_(None))
                             .where(Result.specimen_id == _serum(db_session, lab).id)
                             .where(LabTest.code == code))


def test_flags_come_from_our_ranges_and_critical_limits(db_session, lab):
    inbox.process(db_session, oul_r22(lab["serum"], "F1", {"2951-2": "131", "2823-3": "2.1", "2075-0": "101"}),
                  today=TODAY)
    na, k, cl = (_current(db_session, lab, c) for c in ("NA", "K", "CL"))
    assert (na.flag, na.critical, na.reference_range) == ("L", False, "135-145")
    assert (k.flag, k.critical) == ("LL", True)
    assert (cl.flag, cl.critical) == (None, False)


def test_the_whole_workflow_with_a_correction_after_release(db_session, lab):
    serum = _serum(db_session, lab)
    inbox.process(db_session, glucose_oru(lab["serum"], "G1", "5.4", status="P"), today=TODAY)
    with pytest.raises(ValidationError) as refused:
        validation.validate_technical(db_session, lab["doctor"], serum)
    assert refused.value.code == "preliminary"
    inbox.process(db_session, glucose_oru(lab["serum"], "G2", "27.5"), today=TODAY)
    inbox.process(db_session, oul_r22(lab["serum"], "E1", {"2951-2": "140", "2823-3": "4.1", "2075-0": "101"}),
                  today=TODAY)
    with pytest.raises(ValidationError) as early:
        validation.release(db_session, lab["doctor"], serum)
    assert early.value.code == "not_validated"
    assert db_session.scalars(select(Report)).all() == [] and RECEIVED == []
    validation.validate_technical(db_session, lab["doctor"], serum)
    report = validation.release(db_session, lab["doctor"], serum)
    glucose = _current(db_session, lab, "GLU")
    assert (glucose.value, glucose.flag, glucose.critical, glucose.stage, glucose.version) == (
        "27.5", "HH", True, "released", 2)
    (kind, payload), (kind2, critical) = RECEIVED
    assert kind == "released" and kind2 == "critical"
    assert payload == {
        "encounter_id": lab["encounter_id"], "patient_id": lab["patient_id"], "order_id": lab["order_id"],
        "report_id": report.id, "specimen_barcode": lab["serum"], "released_at": report.released_at.isoformat(),
        "released_by": "Bs.Lab", "released_by_id": lab["doctor"].id,
        "results": [{"code": "GLU", "name": "Glucose", "value": "27.5", "unit": "mmol/L", "flag": "HH",
                     "reference_range": "3.9-6.4", "status": "F"},
                    {"code": "NA", "name": "Natri", "value": "140", "unit": "mmol/L", "flag": None,
                     "reference_range": "135-145", "status": "F"},
                    {"code": "K", "name": "Kali", "value": "4.1", "unit": "mmol/L", "flag": None,
                     "reference_range": "3.5-5.0", "status": "F"},
                    {"code": "CL", "name": "Clo", "value": "101", "unit": "mmol/L", "flag": None,
                     "reference_range": "98-106", "status": "F"}]}
    assert critical == {"encounter_id": lab["encounter_id"], "patient_id": lab["patient_id"],
                        "order_id": lab["order_id"], "result_id": glucose.id, "code": "GLU", "name": "Glucose",
                        "value": "27.5", "unit": "mmol/L"}
    alert = db_session.scalars(select(CriticalAlert)).one()
    assert alert.doctor_user_id == lab["doctor_user_id"] and alert.acknowledged_at is None
    # the blood tube is still waiting, so the order is in progress, not completed
    assert db_session.get(Order, lab["order_id"]).status == "in_progress"

    # the analyser corrects the glucose: a new version, the released one kept
    RECEIVED.clear()
    inbox.process(db_session, glucose_oru(lab["serum"], "G3", "7.5", status="C"), today=TODAY)
    history = db_session.scalars(select(Result).join(Result.test).where(
        LabTest.code == "GLU").order_by(Result.version)).all()
    assert [(r.version, r.value, r.stage, r.superseded_at is not None) for r in history] == [
        (1, "5.4", "preliminary", True), (2, "27.5", "released", True), (3, "7.5", "preliminary", False)]
    validation.validate_technical(db_session, lab["doctor"], serum)
    second = validation.release(db_session, lab["doctor"], serum)
    assert second.id != report.id and [r["value"] for r in second.content["results"]] == ["7.5", "140", "4.1", "101"]
    [(kind, payload)] = RECEIVED
    assert kind == "released" and payload["results"][0] == {
        "code": "GLU", "name": "Glucose", "value": "7.5", "unit": "mmol/L", "flag": "H",
        "reference_range": "3.9-6.4", "status": "C"}

    validation.acknowledge(db_session, lab["doctor"], alert, "Đã gọi điện cho bác sĩ")
    with pytest.raises(ValidationError):
        validation.acknowledge(db_session, lab["doctor"], alert)
    db_session.commit()
    actions = db_session.scalars(select(AuditEvent.action).where(AuditEvent.action.like("lis.%"))).all()
    assert actions.count("lis.critical.acknowledge") == 1 and actions.count("lis.report.release") == 2


def test_a_delta_check_flags_a_big_change_from_the_last_released_result(db_session, lab):
    serum = _serum(db_session, lab)
    inbox.process(db_session, glucose_oru(lab["serum"], "D1", "5.0"), today=TODAY)
    inbox.process(db_session, oul_r22(lab["serum"], "D1E", {"2951-2": "140", "2823-3": "4.1", "2075-0": "101"}),
                  today=TODAY)
    validation.validate_technical(db_session, lab["doctor"], serum)
    validation.release(db_session, lab["doctor"], serum)
    first_order = db_session.get(Order, lab["order_id"])
    later = orders.place_order(db_session, lab["doctor"], first_order.encounter, "lab", [{"code": "XN.GLU"}],
                               on=date(2026, 12, 2))
    tube = specimens.of_encounter(db_session, lab["encounter_id"])[-1]
    assert tube.order_id == later.id
    specimens.receive(db_session, lab["doctor"], tube.barcode)
    inbox.process(db_session, glucose_oru(tube.barcode, "D2", "9.0"), today=TODAY)
    inbox.process(db_session, glucose_oru(lab["serum"], "D3", "5.1", status="C"), today=TODAY)
    new = db_session.scalar(select(Result).where(Result.specimen_id == tube.id))
    assert (new.delta_flag, new.previous_value) == (True, "5.0")
    assert _current(db_session, lab, "GLU").delta_flag is False  # the same specimen is not its own history

"""Release and acknowledgement under concurrency and incomplete data: the specimen is locked so a
second release is refused precisely, a partly resulted specimen is not released, a critical value is
acknowledged by a doctor (on the ordering doctor's behalf, said in the audit) once, and specimen
texts use the hospital's zone and language."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, text

from core import audit
from core.models import AuditEvent
from his.models.orders import Order
from lis import inbox, specimens, validation
from lis.models import CriticalAlert, Report, Result
from lis.validation import ValidationError
from tests.conftest import csrf_token, login
from tests.lis.conftest import TODAY
from tests.lis.messages import glucose_oru, oul_r22

ELECTROLYTES = {"2951-2": "140", "2823-3": "4.1", "2075-0": "101"}


def _results_in(session, barcode: str, glucose: str = "5.4") -> None:
    inbox.process(session, glucose_oru(barcode, f"G-{barcode}", glucose), today=TODAY)
    inbox.process(session, oul_r22(barcode, f"E-{barcode}", ELECTROLYTES), today=TODAY)


def _blocked_on_a_lock(factory) -> bool:
    with factory() as probe:
        return bool(probe.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                      "AND datname = current_database()")))


def test_two_physicians_releasing_at_once_make_one_report(committed_lab):
    factory, barcode = committed_lab["factory"], committed_lab["serum"]
    doctor = committed_lab["doctor"]
    with factory() as session:
        _results_in(session, barcode, glucose="27.5")  # critical: one alert, not two
        validation.validate_technical(session, doctor, specimens.by_barcode(session, barcode))
        session.commit()
    first = factory()
    validation.release(first, doctor, specimens.by_barcode(first, barcode))  # holds the specimen lock
    outcome: list = []

    def second_physician():
        with factory() as session:
            try:
                validation.release(session, doctor, specimens.by_barcode(session, barcode))
                session.commit()
                outcome.append("released")
            except ValidationError as exc:
                session.rollback()
                outcome.append(exc.code)

    thread = threading.Thread(target=second_physician)
    thread.start()
    for _ in range(200):  # until the second release waits for the first one's lock
        if _blocked_on_a_lock(factory) or not thread.is_alive():
            break
        thread.join(0.05)
    first.commit()
    first.close()
    thread.join(30)
    assert outcome == ["already_released"]
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Report)) == 1
        assert session.scalar(select(func.count()).select_from(CriticalAlert)) == 1
        assert session.scalar(select(func.count()).select_from(AuditEvent)
                              .where(AuditEvent.action == "lis.report.release")) == 1


def test_a_partly_resulted_specimen_is_not_released(db_session, lab):
    serum = specimens.by_barcode(db_session, lab["serum"])
    inbox.process(db_session, glucose_oru(lab["serum"], "P1", "5.4"), today=TODAY)
    validation.validate_technical(db_session, lab["doctor"], serum)
    audits = len(db_session.info.get(audit._PENDING, []))
    with pytest.raises(ValidationError) as refused:
        validation.release(db_session, lab["doctor"], serum)
    assert refused.value.code == "incomplete"
    assert str(refused.value) == ("These requested tests have no final result yet: Natri (NA), Kali (K), Clo (CL). "
                                  "Release the report when every result is in.")
    assert db_session.scalars(select(Report)).all() == []
    assert {r.stage for r in db_session.scalars(select(Result))} == {"technically_validated"}
    assert (serum.status, db_session.get(Order, lab["order_id"]).status) == ("resulted", "in_progress")
    assert len(db_session.info.get(audit._PENDING, [])) == audits


def test_a_preliminary_value_does_not_count_as_a_result_for_release(db_session, lab):
    serum = specimens.by_barcode(db_session, lab["serum"])
    _results_in(db_session, lab["serum"])
    validation.validate_technical(db_session, lab["doctor"], serum)
    inbox.process(db_session, oul_r22(lab["serum"], "E2", {"2951-2": "141"}), today=TODAY)  # a new version
    with pytest.raises(ValidationError) as refused:
        validation.release(db_session, lab["doctor"], serum)
    assert refused.value.code == "not_validated" and str(refused.value) == "Technical validation is missing for NA."


def test_a_second_release_is_refused_with_its_reason(db_session, lab):
    serum = specimens.by_barcode(db_session, lab["serum"])
    _results_in(db_session, lab["serum"])
    validation.validate_technical(db_session, lab["doctor"], serum)
    validation.release(db_session, lab["doctor"], serum)
    with pytest.raises(ValidationError) as again:
        validation.release(db_session, lab["doctor"], serum)
    assert again.value.code == "already_released"
    assert str(again.value).startswith("These results have already been released (report of ")
    assert db_session.scalar(select(func.count()).select_from(Report)) == 1


def _critical_alert(db_session, lab) -> CriticalAlert:
    serum = specimens.by_barcode(db_session, lab["serum"])
    _results_in(db_session, lab["serum"], glucose="27.5")
    validation.validate_technical(db_session, lab["doctor"], serum)
    validation.release(db_session, lab["doctor"], serum)
    db_session.commit()
    return db_session.scalars(select(CriticalAlert)).one()


def _ack(client, alert_id: int, note: str = ""):
    return client.post(f"/lis/alerts/{alert_id}/acknowledge",
                       data={"csrf_token": csrf_token(client, "/lis/"), "note": note})


def test_a_critical_value_is_acknowledged_by_a_doctor_once(app, db_session, lab, make_user):
    alert = _critical_alert(db_session, lab)
    make_user("dd.an", "nurse")
    make_user("bs.truc", "doctor")
    nurse, on_call, ordering = app.test_client(), app.test_client(), app.test_client()
    login(nurse, "dd.an")
    login(on_call, "bs.truc")
    login(ordering, "bs.lab")
    assert 'class="acknowledge"' not in nurse.get("/lis/alerts?all=1").get_data(as_text=True)
    assert 'class="acknowledge"' in on_call.get("/lis/alerts?all=1").get_data(as_text=True)
    assert _ack(nurse, alert.id).status_code == 403  # reading results is not enough
    db_session.expire_all()
    assert db_session.get(CriticalAlert, alert.id).acknowledged_at is None
    assert _ack(on_call, alert.id, "Đã gọi bác sĩ điều trị").status_code == 302
    assert _ack(ordering, alert.id, "lần hai").status_code == 302
    db_session.expire_all()
    done = db_session.get(CriticalAlert, alert.id)
    assert (done.acknowledged_by, done.note) == ("bs.truc", "Đã gọi bác sĩ điều trị")  # the second changed nothing
    [event] = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "lis.critical.acknowledge"))
    assert event.detail["on_behalf_of_user_id"] == lab["doctor_user_id"]


def test_the_ordering_doctor_acknowledges_in_their_own_name(db_session, lab):
    alert = _critical_alert(db_session, lab)
    validation.acknowledge(db_session, lab["doctor"], alert, "ok")
    db_session.commit()
    [event] = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "lis.critical.acknowledge"))
    assert "on_behalf_of_user_id" not in event.detail and event.detail["note"] == "ok"


def test_the_barcode_date_is_the_hospital_day(db_session, lab):
    early_morning = datetime(2026, 12, 1, 23, 30, tzinfo=UTC)  # 06:30 on 2 December in Hà Nội
    assert specimens.new_barcode(db_session, early_morning).startswith("261202")


@pytest.mark.tubes_at_ward
def test_reception_of_a_received_tube_names_the_local_time(db_session, lab):
    serum = specimens.by_barcode(db_session, lab["serum"])
    specimens.receive(db_session, lab["doctor"], lab["serum"])
    serum.received_at = datetime(2026, 12, 1, 23, 30, tzinfo=UTC)
    with pytest.raises(specimens.SpecimenError) as again:
        specimens.receive(db_session, lab["doctor"], lab["serum"])
    assert str(again.value) == "This specimen was already received at 02/12/2026 06:30."


@pytest.mark.tubes_at_ward
def test_a_cancelled_order_rejects_its_tubes_with_a_vietnamese_reason(app, db_session, lab):
    from his import orders

    with app.test_request_context("/"):
        orders.cancel(db_session, lab["doctor"], db_session.get(Order, lab["order_id"]), "Bệnh nhân từ chối")
    reasons = {s.reject_reason for s in specimens.of_encounter(db_session, lab["encounter_id"])}
    assert reasons == {"Đã hủy chỉ định: Bệnh nhân từ chối"}


def test_the_lab_catalogue_shows_ranges_critical_limits_and_analyser_codes(app, db_session, lab, make_user):
    make_user("bs.quantri2", "lab_physician")
    make_user("dd.xem", "nurse")
    admin, nurse = app.test_client(), app.test_client()
    login(admin, "bs.quantri2")
    login(nurse, "dd.xem")
    assert nurse.get("/lis/catalogue").status_code == 403
    page = admin.get("/lis/catalogue")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    row = html[html.index('id="test-K"'):]
    row = row[:row.index("</tr>")]
    assert "3.5-5.0" in row and "&lt;2.5" in row and "&gt;6.5" in row and "<code>BS480</code>: 8" in row
    db_session.commit()
    assert db_session.scalar(select(func.count()).select_from(AuditEvent)
                             .where(AuditEvent.action == "lis.catalogue.read")) == 1

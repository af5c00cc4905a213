"""Orders on PostgreSQL: placing with a price snapshot, the status flow, every refused input (exact
code, nothing saved, no event), the events subscribers receive and the audit trail."""

from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from core import events
from core.audit import Actor
from core.models import AuditEvent
from his import catalog, demo_catalog, encounters, orders, patients
from his.models.catalog import Drug, Service
from his.models.orders import Order, OrderLine
from his.models.org import Staff
from his.orders import OrderError
from tests.his.conftest import DESK, TODAY

RECEIVED: list[tuple[str, dict]] = []


@events.subscribe("his.order.placed", inline=True)
def _on_placed(session, payload):
    RECEIVED.append(("placed", payload))


@events.subscribe("his.order.started", inline=True)
def _on_started(session, payload):
    RECEIVED.append(("started", payload))


@events.subscribe("his.order.completed", inline=True)
def _on_completed(session, payload):
    RECEIVED.append(("completed", payload))


@events.subscribe("his.order.cancelled", inline=True)
def _on_cancelled(session, payload):
    RECEIVED.append(("cancelled", payload))


@events.subscribe("his.order.reversed", inline=True)
def _on_reversed(session, payload):
    RECEIVED.append(("reversed", payload))


@pytest.fixture(autouse=True)
def _fresh_events():
    RECEIVED.clear()
    yield
    RECEIVED.clear()


@pytest.fixture
def visit(db_session, clinic, make_user):
    """A doctor (account and staff row), the demo catalogue, an adult patient's open visit with I10."""
    demo_catalog.seed(db_session, Actor.system("test"))
    user = make_user("bs.yl", "doctor")
    staff = Staff(user_id=user.id, full_name="BS Lê Minh", title="BSCKI", department_id=clinic["department"].id,
                  active=True)
    db_session.add(staff)
    patient = patients.register(db_session, DESK, {"full_name": "Trần Thị Bình", "birth_year": 1960, "sex": "female"},
                                today=TODAY, confirm_possible_duplicate=True).patient
    doctor = Actor(id=user.id, name="bs.yl", ip="10.0.0.9")
    encounter = encounters.open_encounter(db_session, DESK, patient, kind="outpatient", day=TODAY,
                                          room=clinic["room"], doctor=staff)
    diagnosis, _ = encounters.add_diagnosis(db_session, doctor, encounter, "I10", position="principal", on=TODAY)
    db_session.commit()
    return {"doctor": doctor, "staff": staff, "patient": patient, "encounter": encounter, "diagnosis": diagnosis}


def _count(session, model):
    return session.scalar(select(func.count()).select_from(model))


def _place(session, visit, kind, items, **options):
    return orders.place_order(session, visit["doctor"], visit["encounter"], kind, items, on=TODAY, **options)


def _rx(code="T.AMOX500", dose="1", frequency="3", days="7", **extra):
    return {"code": code, "dose": dose, "frequency": frequency, "days": days, **extra}


# --- placing -----------------------------------------------------------------------------------

def test_a_lab_order_keeps_the_price_of_its_day_and_announces_itself(db_session, visit):
    order = _place(db_session, visit, "lab", [{"code": "XN.GLU"}, {"code": "xn.ctm", "quantity": "2"}],
                   diagnosis_id=visit["diagnosis"].id)
    assert (order.status, order.kind, order.patient_id) == ("placed", "lab", visit["patient"].id)
    assert order.orderer_id == visit["staff"].id and order.ordered_by == visit["doctor"].id
    assert order.department_id == visit["encounter"].department_id and order.diagnosis_id == visit["diagnosis"].id
    assert order.ordered_at is not None and order.executed_at is None and order.result_at is None
    lines = [(li.position, li.item_code, li.quantity, li.unit, li.unit_price, li.payer) for li in order.lines]
    assert lines == [(1, "XN.GLU", Decimal("1"), "lần", Decimal("21500.000"), "fee"),
                     (2, "XN.CTM", Decimal("2"), "lần", Decimal("46200.000"), "fee")]
    # A later price change does not touch the order: the line is a snapshot.
    catalog.apply_price(db_session, order.lines[0].service, Decimal("30000"), TODAY, "fee")
    db_session.commit()
    db_session.expire_all()
    assert db_session.get(Order, order.id).lines[0].unit_price == Decimal("21500.000")
    [(name, payload)] = RECEIVED
    assert name == "placed"
    assert payload["order_id"] == order.id and payload["encounter_id"] == visit["encounter"].id
    assert payload["patient_id"] == visit["patient"].id and payload["kind"] == "lab"
    assert [(i["code"], i["bhyt_code"], i["quantity"], i["unit_price"], i["payer"]) for i in payload["items"]] == [
        ("XN.GLU", "23.0075.1494", "1.000", "21500.000", "fee"),
        ("XN.CTM", "22.0120.1370", "2.000", "46200.000", "fee")]
    audit = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "order.place")).one()
    assert (audit.target_type, audit.target_id, audit.actor_name) == ("orders", str(order.id), "bs.yl")
    assert audit.detail["patient_id"] == visit["patient"].id and audit.detail["kind"] == "lab"


def test_an_insured_visit_takes_the_bhyt_price_when_there_is_one(db_session, visit, clinic):
    patient = patients.register(db_session, DESK, {"full_name": "Lê Văn Cường", "birth_year": 1970, "sex": "male",
                                                   "bhyt_number": "HS4010120878811",
                                                   "bhyt_valid_from": date(2026, 1, 1),
                                                   "bhyt_valid_to": date(2026, 12, 31)},
                                today=TODAY, confirm_possible_duplicate=True).patient
    encounter = encounters.open_encounter(db_session, DESK, patient, kind="outpatient", day=TODAY,
                                          room=clinic["room"], insured=True)
    order = orders.place_order(db_session, visit["doctor"], encounter, "imaging",
                               [{"code": "CDHA.XQN"}, {"code": "DV.PHONGVIP"},
                                {"code": "XN.GLU", "payer": "on_demand"}], on=TODAY)
    assert [(li.item_code, li.payer, li.unit_price) for li in order.lines] == [
        ("CDHA.XQN", "bhyt", Decimal("65400.000")), ("DV.PHONGVIP", "fee", Decimal("800000.000")),
        ("XN.GLU", "on_demand", Decimal("40000.000"))]
    rx = orders.place_order(db_session, visit["doctor"], encounter, "prescription",
                            [_rx("T.OXY", days="1"), _rx("T.PARA500", days="2")], on=TODAY)
    assert [(li.item_code, li.payer) for li in rx.lines] == [("T.OXY", "bhyt"), ("T.PARA500", "fee")]


def test_prescription_quantities_are_computed_unless_entered(db_session, visit):
    order = _place(db_session, visit, "prescription", [
        _rx("T.AMOX500", dose="1", frequency="3", days="7", instructions="sau ăn"),
        _rx("T.PRED5", dose="0,5", frequency="3", days="5"),
        _rx("T.SALBU", dose="1", frequency="2", days="3", quantity="10", route="Khí dung qua mặt nạ"),
        {"code": "", "dose": "", "frequency": "", "days": ""},  # an empty row of the form is ignored
    ])
    got = [(li.item_code, li.quantity, li.quantity_entered, li.route, li.unit_price) for li in order.lines]
    assert got == [("T.AMOX500", Decimal("21"), False, "Uống", Decimal("1100.000")),
                   ("T.PRED5", Decimal("8"), False, "Uống", Decimal("200.000")),
                   ("T.SALBU", Decimal("10"), True, "Khí dung qua mặt nạ", Decimal("4500.000"))]
    assert order.lines[0].instructions == "sau ăn" and order.lines[1].dose == Decimal("0.5")


def test_a_chronic_prescription_may_run_90_days(db_session, visit):
    order = _place(db_session, visit, "prescription", [_rx("T.AMLO5", frequency="1", days="90")], chronic=True,
                   diagnosis_id=visit["diagnosis"].id)
    assert order.chronic and order.lines[0].quantity == Decimal("90")


def test_a_child_under_72_months_with_weight_and_adult(db_session, visit, clinic):
    child = patients.register(db_session, DESK, {"full_name": "Phạm Gia Huy", "birth_date": date(2024, 3, 15),
                                                 "sex": "male"}, today=TODAY, confirm_possible_duplicate=True).patient
    encounter = encounters.open_encounter(db_session, DESK, child, kind="outpatient", day=TODAY, room=clinic["room"])
    order = orders.place_order(db_session, visit["doctor"], encounter, "prescription", [_rx("T.PARA500", days="3")],
                               on=TODAY, weight_kg="12,5", guardian_name="Phạm Thị Lan")
    assert (order.weight_kg, order.guardian_name) == (Decimal("12.5"), "Phạm Thị Lan")
    assert orders.age_in_months(child, TODAY) == 32


# --- status flow -------------------------------------------------------------------------------

def test_placed_started_completed_then_reversed(db_session, visit):
    order = _place(db_session, visit, "lab", [{"code": "XN.GLU"}])
    orders.start(db_session, visit["doctor"], order, machine_code="AU480")
    assert order.status == "in_progress" and order.executed_at is not None and order.performer_id == visit["staff"].id
    with pytest.raises(OrderError) as info:
        orders.cancel(db_session, visit["doctor"], order, "nhầm")
    assert (info.value.code, info.value.field) == ("already_executed", "status")
    orders.complete(db_session, visit["doctor"], order)
    assert order.status == "completed" and order.result_at >= order.executed_at and order.machine_code == "AU480"
    with pytest.raises(OrderError) as info:
        orders.reverse(db_session, visit["doctor"], order, "  ")
    assert (info.value.code, info.value.field) == ("reason_required", "reason")
    orders.reverse(db_session, visit["doctor"], order, "Mẫu bị vỡ, không có kết quả")
    assert order.status == "reversed" and order.reverse_reason == "Mẫu bị vỡ, không có kết quả"
    assert order.reversed_by == visit["doctor"].id and order.reversed_at is not None
    for again in (orders.reverse, orders.cancel):
        with pytest.raises(OrderError) as info:
            again(db_session, visit["doctor"], order, "lại")
        assert info.value.code == "bad_transition"
    with pytest.raises(OrderError) as info:
        orders.start(db_session, visit["doctor"], order)
    assert info.value.code == "bad_transition"
    assert [name for name, _ in RECEIVED] == ["placed", "started", "completed", "reversed"]
    assert RECEIVED[-1][1]["reason"] == "Mẫu bị vỡ, không có kết quả" and RECEIVED[-1][1]["status"] == "reversed"
    db_session.commit()
    actions = db_session.scalars(select(AuditEvent.action).where(AuditEvent.target_type == "orders")
                                 .order_by(AuditEvent.seq)).all()
    assert actions == ["order.place", "order.start", "order.complete", "order.reverse"]


def test_completing_without_a_start_executes_at_the_same_moment(db_session, visit):
    order = _place(db_session, visit, "imaging", [{"code": "CDHA.XQN"}])
    orders.complete(db_session, visit["doctor"], order)
    assert order.executed_at == order.result_at and order.performer_id == visit["staff"].id


def test_a_placed_order_is_cancelled_with_its_reason_not_reversed(db_session, visit):
    order = _place(db_session, visit, "procedure", [{"code": "PT.THAYBANG"}])
    with pytest.raises(OrderError) as info:
        orders.reverse(db_session, visit["doctor"], order, "x")
    assert info.value.code == "not_executed"
    with pytest.raises(OrderError) as info:
        orders.cancel(db_session, visit["doctor"], order, "")
    assert info.value.code == "reason_required" and order.status == "placed"
    orders.cancel(db_session, visit["doctor"], order, "Người bệnh từ chối")
    assert (order.status, order.cancel_reason, order.cancelled_by) == ("cancelled", "Người bệnh từ chối",
                                                                        visit["doctor"].id)
    assert [name for name, _ in RECEIVED] == ["placed", "cancelled"]
    assert RECEIVED[-1][1]["items"][0]["code"] == "PT.THAYBANG"
    db_session.commit()
    assert _count(db_session, Order) == 1 and _count(db_session, OrderLine) == 1  # nothing is deleted


# --- refused input: the exact error, nothing saved, nothing announced ---------------------------

BAD = [
    ("lab", [{"code": "XN.KHONGCO"}], {}, "service_unknown", "items.0.code"),
    ("prescription", [_rx("T.KHONGCO")], {}, "drug_unknown", "items.0.code"),
    ("lab", [{"code": ""}], {"note": "x"}, "no_items", "items"),
    ("lab", [{"code": "  ", "quantity": "2"}], {}, "item_required", "items.0.code"),
    ("lab", [], {}, "no_items", "items"),
    ("blood", [{"code": "XN.GLU"}], {}, "bad_kind", "kind"),
    ("lab", [{"code": "XN.GLU", "quantity": "0"}], {}, "quantity_invalid", "items.0.quantity"),
    ("lab", [{"code": "XN.GLU"}, {"code": "XN.URE", "quantity": "-1"}], {}, "quantity_invalid", "items.1.quantity"),
    ("lab", [{"code": "XN.GLU", "quantity": "hai"}], {}, "quantity_invalid", "items.0.quantity"),
    ("lab", [{"code": "XN.GLU", "quantity": "NaN"}], {}, "quantity_invalid", "items.0.quantity"),
    ("lab", [{"code": "XN.GLU", "payer": "company"}], {}, "payer_invalid", "items.0.payer"),
    ("lab", [{"code": "XN.GLU"}, {"code": "XN.GLU"}], {}, "duplicate_item", "items.1.code"),
    ("prescription", [_rx(quantity="0")], {}, "quantity_invalid", "items.0.quantity"),
    ("prescription", [_rx(dose="0")], {}, "dose_invalid", "items.0.dose"),
    ("prescription", [_rx(dose="")], {}, "dose_invalid", "items.0.dose"),
    ("prescription", [_rx(dose="0,0001")], {}, "dose_invalid", "items.0.dose"),  # 0 once stored with 3 decimals
    ("lab", [{"code": "XN.GLU", "quantity": "0.0004"}], {}, "quantity_invalid", "items.0.quantity"),
    ("lab", [{"code": "XN.GLU", "quantity": "1e400"}], {}, "quantity_invalid", "items.0.quantity"),
    ("prescription", [_rx(frequency="1,5")], {}, "frequency_invalid", "items.0.frequency"),
    ("prescription", [_rx(days="0")], {}, "days_invalid", "items.0.days"),
    ("prescription", [_rx(days="31")], {}, "days_too_long", "items.0.days"),
    ("prescription", [_rx(days="91")], {"chronic": True, "diagnosis": True}, "days_too_long", "items.0.days"),
    ("prescription", [_rx(days="60")], {"chronic": True}, "diagnosis_required", "diagnosis_id"),
    ("prescription", [_rx("T.MORPH10", days="8")], {}, "days_narcotic", "items.0.days"),
    ("prescription", [_rx("T.MORPH10", days="8")], {"chronic": True, "diagnosis": True}, "days_narcotic",
     "items.0.days"),
    ("prescription", [_rx("T.DIAZ5", days="11")], {}, "days_psychotropic", "items.0.days"),
    ("prescription", [_rx("T.DIAZ5", days="31")], {"chronic": True, "diagnosis": True}, "days_psychotropic",
     "items.0.days"),
    ("prescription", [_rx("T.PARA500"), _rx("T.MORPH10", days="3")], {}, "mixed_prescription", "items"),
    ("prescription", [_rx("T.DIAZ5"), _rx("T.PARA500")], {}, "mixed_prescription", "items"),
    ("prescription", [_rx(route="x" * 101)], {}, "too_long", "items.0.route"),
    ("lab", [{"code": "XN.GLU"}], {"diagnosis_id": "999999"}, "diagnosis_unknown", "diagnosis_id"),
    ("lab", [{"code": "XN.GLU"}], {"diagnosis_id": "abc"}, "diagnosis_unknown", "diagnosis_id"),
    ("prescription", [_rx()], {"weight_kg": "nặng"}, "weight_invalid", "weight_kg"),
]


@pytest.mark.parametrize(("kind", "items", "options", "code", "field"), BAD,
                         ids=[f"{b[3]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_is_refused_and_saves_nothing(db_session, visit, kind, items, options, code, field):
    options = dict(options)
    if options.pop("diagnosis", False):
        options["diagnosis_id"] = visit["diagnosis"].id
    with pytest.raises(OrderError) as info:
        _place(db_session, visit, kind, items, **options)
    assert (info.value.code, info.value.field) == (code, field)
    assert str(info.value)  # a message for people
    db_session.rollback()
    assert _count(db_session, Order) == 0 and _count(db_session, OrderLine) == 0
    assert RECEIVED == []


def test_inactive_and_unpriced_items_are_refused(db_session, visit):
    db_session.scalar(select(Service).where(Service.code == "XN.URE")).active = False
    db_session.scalar(select(Drug).where(Drug.code == "T.LORA10")).valid_to = date(2026, 6, 30)
    catalog.save_item(db_session, Service, {"code": "XN.MOI", "name": "Xét nghiệm mới", "group": "Xét nghiệm",
                                            "unit": "lần", "bhyt_code": None}, [], date(2026, 1, 1))
    for kind, items, code in (("lab", [{"code": "XN.URE"}], "item_inactive"),
                              ("prescription", [_rx("T.LORA10")], "item_inactive"),
                              ("lab", [{"code": "XN.MOI"}], "no_price")):
        with pytest.raises(OrderError) as info:
            _place(db_session, visit, kind, items)
        assert (info.value.code, info.value.field) == (code, "items.0.code")
    assert _count(db_session, Order) == 0 and RECEIVED == []


@pytest.mark.parametrize(("status", "code"), [("finished", "encounter_closed"), ("cancelled", "encounter_cancelled")])
def test_no_order_in_a_closed_or_cancelled_encounter(db_session, visit, status, code):
    encounter = visit["encounter"]
    if status == "cancelled":
        encounters.cancel(db_session, DESK, encounter, "Người bệnh bỏ về")
    else:
        encounters.set_status(db_session, DESK, encounter, "in_progress")
        encounters.set_status(db_session, DESK, encounter, "finished")
    with pytest.raises(OrderError) as info:
        _place(db_session, visit, "lab", [{"code": "XN.GLU"}])
    assert (info.value.code, info.value.field) == (code, "encounter")
    assert _count(db_session, Order) == 0


def test_no_order_on_a_merged_away_record(db_session, visit):
    survivor = patients.register(db_session, DESK, {"full_name": "Trần Thị Bình", "birth_year": 1960,
                                                    "sex": "female"}, today=TODAY,
                                 confirm_possible_duplicate=True).patient
    visit["patient"].merged_into_id = survivor.id  # as a stale screen would still show it
    with pytest.raises(OrderError) as info:
        _place(db_session, visit, "lab", [{"code": "XN.GLU"}])
    assert (info.value.code, info.value.field) == ("merged_patient", "patient")


def test_a_young_child_needs_weight_and_accompanying_adult(db_session, visit, clinic):
    child = patients.register(db_session, DESK, {"full_name": "Phạm Gia Huy", "birth_year": 2021, "sex": "male"},
                              today=TODAY, confirm_possible_duplicate=True).patient
    encounter = encounters.open_encounter(db_session, DESK, child, kind="outpatient", day=TODAY, room=clinic["room"])
    for options, code, field in (({}, "child_weight_required", "weight_kg"),
                                 ({"weight_kg": "18"}, "child_guardian_required", "guardian_name")):
        with pytest.raises(OrderError) as info:
            orders.place_order(db_session, visit["doctor"], encounter, "prescription", [_rx("T.PARA500")],
                               on=TODAY, **options)
        assert (info.value.code, info.value.field) == (code, field)
    # A test order needs neither.
    orders.place_order(db_session, visit["doctor"], encounter, "lab", [{"code": "XN.CTM"}], on=TODAY)


def test_a_diagnosis_of_another_encounter_is_refused(db_session, visit, clinic):
    other = encounters.open_encounter(db_session, DESK, visit["patient"], kind="outpatient", day=TODAY,
                                      room=clinic["room"])
    with pytest.raises(OrderError) as info:
        orders.place_order(db_session, visit["doctor"], other, "lab", [{"code": "XN.GLU"}], on=TODAY,
                           diagnosis_id=visit["diagnosis"].id)
    assert info.value.code == "diagnosis_unknown"


def test_listing_an_encounters_orders_is_audited(db_session, visit):
    first = _place(db_session, visit, "lab", [{"code": "XN.GLU"}])
    second = _place(db_session, visit, "prescription", [_rx()])
    rows = orders.of_encounter(db_session, visit["doctor"], visit["encounter"])
    assert {r.id for r in rows} == {first.id, second.id}
    db_session.commit()
    listed = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "order.list")).one()
    assert listed.detail == {"patient_id": visit["patient"].id, "count": 2}

"""How a prescription is written (TT 26/2025): names, quantities, narcotic quantities in words, order;
and the demo orders seed."""

from decimal import Decimal

import pytest
from sqlalchemy import func, select

from core.audit import Actor
from his import demo, demo_orders
from his.models.catalog import Drug
from his.models.encounters import Encounter
from his.models.orders import Order, OrderLine
from his.prescriptions import drug_label, number_words, quantity_text, toxic_first


@pytest.mark.parametrize(("value", "text"), [(5, "05"), (Decimal("9.000"), "09"), (10, "10"), (120, "120"),
                                             (Decimal("0.5"), "0,5"), (Decimal("2.250"), "2,25")])
def test_quantities_under_ten_have_a_leading_zero(value, text):
    assert quantity_text(value) == text


@pytest.mark.parametrize(("n", "words"), [
    (0, "không"), (5, "năm"), (10, "mười"), (11, "mười một"), (15, "mười lăm"), (20, "hai mươi"),
    (21, "hai mươi mốt"), (25, "hai mươi lăm"), (30, "ba mươi"), (105, "một trăm linh năm"),
    (110, "một trăm mười"), (1005, "một nghìn không trăm linh năm"), (2000, "hai nghìn")])
def test_narcotic_quantities_in_words(n, words):
    assert number_words(n) == words


def test_names_as_prescribed():
    single = Drug(code="A", name="Panadol", active_ingredient="Paracetamol", strength="500 mg", unit="viên")
    generic = Drug(code="B", name="Paracetamol 500 mg", active_ingredient="Paracetamol", strength="500 mg",
                   unit="viên")
    combination = Drug(code="C", name="Augmentin 1 g", active_ingredient="Amoxicillin + Acid clavulanic",
                       strength="875 mg + 125 mg", unit="viên")
    assert drug_label(single) == "Paracetamol 500 mg (Panadol)"
    assert drug_label(generic) == "Paracetamol 500 mg"
    assert drug_label(combination) == "Augmentin 1 g"


def test_toxic_drugs_are_listed_first():
    plain = OrderLine(position=1, drug=Drug(code="P", name="P", active_ingredient="P", unit="viên"))
    narcotic = OrderLine(position=2, drug=Drug(code="M", name="M", active_ingredient="M", unit="ống",
                                               is_narcotic=True, is_psychotropic=False))
    assert [line.position for line in toxic_first([plain, narcotic])] == [2, 1]


def test_the_demo_opens_visits_in_p101_with_orders_once(db_session):
    from core import auth

    actor = Actor.system("demo")
    auth.create_user(db_session, actor, username="bacsi", full_name="BS Nguyễn Văn Minh", password="mat-khau-bac-si",
                     roles=["doctor"])
    demo.seed(db_session, actor)  # which places the demo orders
    statuses = dict(db_session.execute(select(Order.status, func.count()).group_by(Order.status)).all())
    assert statuses == {"placed": 7, "completed": 2, "in_progress": 1, "cancelled": 1}
    rooms = set(db_session.scalars(select(Encounter.room_id).join(Order, Order.encounter_id == Encounter.id)))
    assert len(rooms) == 1
    assert all(o.orderer is not None for o in db_session.scalars(select(Order)))
    assert demo_orders.seed(db_session, actor) == 0

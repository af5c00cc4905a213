"""Specimens made from his lab orders: one tube per specimen type with the panel expanded, unique
barcodes, collection, reception by scan, rejection with a reason; a cancelled order rejects its tubes."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from core.models import AuditEvent
from his import orders
from his.models.orders import Order
from lis import specimens
from lis.models import Specimen
from lis.specimens import SpecimenError
from tests.lis.conftest import TODAY

pytestmark = pytest.mark.tubes_at_ward  # these tests take the tubes through reception themselves


def test_a_lab_order_makes_one_tube_per_specimen_type(db_session, lab):
    tubes = db_session.scalars(select(Specimen).where(Specimen.order_id == lab["order_id"])
                               .order_by(Specimen.id)).all()
    assert [(t.specimen_type, t.status, len(t.requests)) for t in tubes] == [("WB", "ordered", 25),
                                                                             ("SER", "ordered", 4)]
    assert [r.test.code for r in tubes[1].requests] == ["GLU", "NA", "K", "CL"]
    assert all(len(t.barcode) == 12 and t.barcode.isdigit() for t in tubes)
    assert len({t.barcode for t in tubes}) == 2
    assert db_session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "lis.specimen.create")) == 2


def test_orders_outside_the_lab_catalogue_make_no_tube(db_session, lab):
    encounter = db_session.get(Order, lab["order_id"]).encounter
    other = orders.place_order(db_session, lab["doctor"], encounter, "imaging", [{"code": "CDHA.XQN"}], on=TODAY)
    assert db_session.scalar(select(func.count()).select_from(Specimen).where(Specimen.order_id == other.id)) == 0


def test_collection_reception_and_rejection(db_session, lab):
    blood, serum = specimens.by_barcode(db_session, lab["blood"]), specimens.by_barcode(db_session, lab["serum"])
    specimens.collect(db_session, lab["doctor"], blood)
    assert (blood.status, blood.collected_by) == ("collected", "bs.lab")
    with pytest.raises(SpecimenError) as twice:
        specimens.collect(db_session, lab["doctor"], blood)
    assert twice.value.code == "bad_state"
    specimens.receive(db_session, lab["doctor"], f" {lab['blood']}\n")
    assert blood.status == "received" and blood.received_at >= blood.collected_at
    with pytest.raises(SpecimenError) as empty:
        specimens.reject(db_session, lab["doctor"], serum, " ")
    assert empty.value.code == "reason_required" and serum.status == "ordered"
    specimens.reject(db_session, lab["doctor"], serum, "Tan máu")
    with pytest.raises(SpecimenError) as rejected:
        specimens.receive(db_session, lab["doctor"], lab["serum"])
    assert rejected.value.code == "rejected" and str(rejected.value) == "This specimen was rejected: Tan máu"


def test_a_cancelled_order_rejects_its_tubes(db_session, lab):
    order = db_session.get(Order, lab["order_id"])
    orders.cancel(db_session, lab["doctor"], order, "Bệnh nhân từ chối")
    assert {(t.status, t.reject_reason) for t in db_session.scalars(select(Specimen))} == {
        ("rejected", "Order cancelled: Bệnh nhân từ chối")}

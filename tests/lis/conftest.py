"""Laboratory fixtures: the demo catalogue and analysers, a patient with an open visit and a lab
order (CBC + glucose + electrolytes), whose specimens lis made from the order."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

import his.models  # noqa: F401  (loaded before his.catalog, as the app does)
from core.audit import Actor
from core.db import make_engine, make_session_factory
from his import demo_catalog, encounters, orders, patients
from his.models.org import Staff
from lis import demo
from lis import specimens as lis_specimens
from lis.models import Specimen
from tests.his.conftest import make_clinic

TODAY = date(2026, 12, 1)
DESK = Actor(id=None, name="tiepdon", ip="10.0.0.2")
LAB_DESK = Actor(id=None, name="ktv.nhanmau", ip="10.0.0.3")


def build_lab(session, make_user=None, *, received: bool = True) -> dict:
    """Everything a lab test needs, committed; returns plain ids and barcodes. The tubes are received at
    the lab (results are taken only for received tubes) unless received=False."""
    clinic = make_clinic(session)
    demo_catalog.seed(session, Actor.system("test"))
    tests = demo.seed_catalogue(session)
    analysers = demo.seed_analysers(session, tests)
    if make_user is not None:
        user = make_user("bs.lab", "doctor")
        user_id = user.id
    else:
        from core import auth

        user_id = auth.create_user(session, Actor.system("test"), username="bs.lab", full_name="Bs Lab",
                                   password="mat-khau-thu-nghiem", roles=["doctor"]).id
    staff = Staff(user_id=user_id, full_name="BS Lê Minh", title="BSCKI", department_id=clinic["department"].id,
                  active=True)
    session.add(staff)
    patient = patients.register(session, DESK, {"full_name": "Nguyễn Văn An", "birth_year": 1980, "sex": "male"},
                                today=TODAY, confirm_possible_duplicate=True).patient
    encounter = encounters.open_encounter(session, DESK, patient, kind="outpatient", day=TODAY, room=clinic["room"],
                                          doctor=staff)
    doctor = Actor(id=user_id, name="bs.lab", ip="10.0.0.9")
    order = orders.place_order(session, doctor, encounter, "lab",
                               [{"code": "XN.CTM"}, {"code": "XN.GLU"}, {"code": "XN.DGD"}], on=TODAY)
    session.commit()
    specimens = {s.specimen_type: s for s in session.scalars(select(Specimen).where(Specimen.order_id == order.id))}
    if received:
        for specimen in specimens.values():
            lis_specimens.receive(session, LAB_DESK, specimen.barcode)
        session.commit()
    return {"patient_id": patient.id, "encounter_id": encounter.id, "order_id": order.id, "doctor": doctor,
            "doctor_user_id": user_id, "blood": specimens["WB"].barcode, "serum": specimens["SER"].barcode,
            "analysers": {code: a.id for code, a in analysers.items()}, "patient_code": patient.code}


def _received(request) -> bool:
    return request.node.get_closest_marker("tubes_at_ward") is None


@pytest.fixture
def lab(db_session, make_user, request):
    """The lab, its tubes received (mark a test `tubes_at_ward` to leave them at the ward)."""
    return build_lab(db_session, make_user, received=_received(request))


@pytest.fixture
def committed_lab(committed_db_url, request):
    """A real database (commits are real, other threads see them) with the lab set up."""
    engine = make_engine(committed_db_url)
    factory = make_session_factory(engine)
    with factory() as session:
        made = build_lab(session, received=_received(request))
    yield {**made, "factory": factory, "engine": engine, "url": committed_db_url}
    engine.dispose()

"""The check-in record goes to the gateway when an insured visit's first cost arises: queued once,
sent through his.gateway.client to the simulator, the same request id never checks in twice."""

import pytest
from sqlalchemy import select

from billing import checkin
from core.models import Job
from his import orders
from his.gateway.client import GatewayClient, GatewaySettings, GatewayUnavailable
from his.gateway.simulator import Simulator
from tests.billing.conftest import make_visit, settings_for_tests
from tests.his.conftest import DESK, TODAY

USER, PASSWORD = "bv.checkin", "mat-khau-cong"


def _jobs(session):
    return session.scalars(select(Job).where(Job.name == checkin.CHECKIN_JOB)).all()


def _lab(session, encounter, code):
    order = orders.place_order(session, DESK, encounter, "lab", [{"code": code, "quantity": "1"}], on=TODAY)
    orders.complete(session, DESK, order)


def test_queued_once_for_an_insured_visit_only(db_session, clinic):
    insured = make_visit(db_session, clinic)["encounter"]
    _lab(db_session, insured, "XN.GLU")
    _lab(db_session, insured, "XN.URE")
    assert [j.payload for j in _jobs(db_session)] == [{"encounter_id": insured.id}]
    paying = make_visit(db_session, clinic, card=None, name="Lê Văn Tự")["encounter"]
    _lab(db_session, paying, "XN.GLU")
    assert len(_jobs(db_session)) == 1


def test_sent_to_the_gateway_with_the_first_cost(db_session, clinic):
    encounter = make_visit(db_session, clinic)["encounter"]
    _lab(db_session, encounter, "XN.GLU")
    content = checkin.record(db_session, encounter.id, settings_for_tests())
    assert f"<MA_LK>{encounter.code}</MA_LK>".encode() in content
    assert b"<MA_DICH_VU>23.0075.1494</MA_DICH_VU>" in content and b"<MA_CSKCB>79001</MA_CSKCB>" in content
    with Simulator(users={USER: PASSWORD}) as sim:
        client = GatewayClient(GatewaySettings(url=sim.url, username=USER, password=PASSWORD, timeout=1.0, retries=0),
                               sleep=lambda _s: None)
        first = checkin.send(db_session, encounter.id, client, settings_for_tests())
        again = checkin.send(db_session, encounter.id, client, settings_for_tests())
        assert first.transaction_id and again.transaction_id == first.transaction_id
        sim.configure(mode="down")
        with pytest.raises(GatewayUnavailable):  # the job raises: the runner tries again later
            checkin.send(db_session, encounter.id, client, settings_for_tests())

"""The desk commits the arrival before it asks the portal, on a real PostgreSQL database with real commits: a
slow portal holds no lock of the arrival (the ticket counter of the service point), so another desk at the
same point goes on while the first one waits (two threads); an unexpected error in the lookup leaves the
visit and the ticket, and the check not verified for the retry job."""

import threading
import time

import pytest
from sqlalchemy import select
from sqlalchemy.orm import close_all_sessions

from core import auth, queue
from core.app import create_app
from core.audit import Actor
from core.db import make_engine, make_session_factory
from core.models import Job
from his.gateway import cards
from his.gateway.client import GatewayClient
from his.gateway.simulator import Simulator
from his.models.encounters import Encounter
from his.models.gateway import CardCheck
from his.models.patients import Patient
from his.models.tickets import Ticket
from tests.conftest import PASSWORD, csrf_token, login, make_config
from tests.his.conftest import make_clinic

USER, SECRET = "bv01001.tiepdon", "mat-khau-cong-bhyt"
AN = "001090123456|012345678|Nguyễn Văn An|01011990|Nam|Số 1 Tràng Tiền, Hoàn Kiếm, Hà Nội|15042021"
MAI = "079190001234|025123456|Trần Thị Mai|15081990|Nữ|12 Lê Lợi, Phường Bến Thành, TP Hồ Chí Minh|20052022"
CU = "001040123456||Lê Văn Cụ|01011940|Nam|HN|15042021"
PORTAL_WAIT = 60  # seconds the simulator holds each answer; the test releases it long before


@pytest.fixture
def committed(committed_db_url, tmp_path):
    engine = make_engine(committed_db_url, pool_size=5)
    factory = make_session_factory(engine)
    with factory() as session:
        point_id = make_clinic(session)["point"].id
        for name in ("tiepdon.mot", "tiepdon.hai"):
            auth.create_user(session, Actor.system("test"), username=name, full_name=name.title(), password=PASSWORD,
                             roles=["receptionist"])
        session.commit()
    yield factory, point_id
    close_all_sessions()
    engine.dispose()


def _desk(app, username):
    client = app.test_client()
    login(client, username)
    return client


def _scan(client, point_id, qr, **fields):
    data = {"qr": qr, "service_point_id": point_id, "csrf_token": csrf_token(client, "/reception"), **fields}
    return client.post("/reception/scan", data=data)


def _tickets(factory) -> dict:
    with factory() as session:
        rows = session.execute(select(Patient.full_name, Ticket.number).join(Ticket, Ticket.patient_id == Patient.id))
        return dict(rows.all())


def test_a_slow_portal_does_not_hold_the_counter_for_the_next_desk(committed, tmp_path):
    factory, point_id = committed
    with Simulator(users={USER: SECRET}) as sim:
        extra = {"VNHIS_BHYT_GATEWAY_URL": sim.url, "VNHIS_BHYT_GATEWAY_USER": USER,
                 "VNHIS_BHYT_GATEWAY_PASSWORD": SECRET, "VNHIS_BHYT_GATEWAY_TIMEOUT": str(PORTAL_WAIT * 2),
                 "VNHIS_BHYT_GATEWAY_RETRIES": "0"}
        app = create_app(make_config(tmp_path, modules=("his",), extra=extra), session_factory=factory)
        first, second = _desk(app, "tiepdon.mot"), _desk(app, "tiepdon.hai")
        assert _scan(first, point_id, CU, bhyt="1").status_code == 302  # the token is taken while the portal is quick
        sim.configure(latency=PORTAL_WAIT)
        answers = {}
        waiting = threading.Thread(target=lambda: answers.update(first=_scan(first, point_id, AN, bhyt="1")))
        waiting.start()
        deadline = time.monotonic() + 30
        while sim.request_counts().get("card_lookup", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sim.request_counts().get("card_lookup") == 2, "the first desk never asked the portal"

        other = threading.Thread(target=lambda: answers.update(second=_scan(second, point_id, MAI)))
        other.start()
        other.join(timeout=30)
        still_waiting = waiting.is_alive()
        seen = _tickets(factory)
        sim.state.stopping.set()  # the portal answers the first desk now
        waiting.join(timeout=30)
        other.join(timeout=30)

    assert still_waiting, "the first desk's portal call ended before the second arrival was checked"
    assert answers["second"].status_code == 302
    # While the first desk was still waiting for the portal, its patient's ticket was already committed
    # and the second desk had taken the next number.
    assert seen == {"Lê Văn Cụ": 1, "Nguyễn Văn An": 2, "Trần Thị Mai": 3}
    assert answers["first"].status_code == 302
    with factory() as session:
        check = session.scalar(select(CardCheck).where(CardCheck.query_number == "001090123456"))
        assert (check.status, check.benefit_level) == ("verified", "80")


def test_an_unexpected_error_in_the_lookup_leaves_the_visit_and_a_check_to_retry(committed, tmp_path, monkeypatch):
    factory, point_id = committed
    with Simulator(users={USER: SECRET}) as sim:
        extra = {"VNHIS_BHYT_GATEWAY_URL": sim.url, "VNHIS_BHYT_GATEWAY_USER": USER,
                 "VNHIS_BHYT_GATEWAY_PASSWORD": SECRET, "VNHIS_BHYT_GATEWAY_RETRIES": "0"}
        for name, value in extra.items():
            monkeypatch.setenv(name, value)  # the retry job reads the environment, as in a worker
        app = create_app(make_config(tmp_path, modules=("his",), extra=extra), session_factory=factory)
        desk = _desk(app, "tiepdon.mot")

        def broken(*args, **kwargs):
            raise RuntimeError("a bug in the client")

        with monkeypatch.context() as patch:
            patch.setattr(GatewayClient, "lookup_card", broken)
            response = _scan(desk, point_id, AN, bhyt_number="DN4010123456789")
        assert response.status_code == 302
        html = desk.get(response.headers["Location"]).get_data(as_text=True)
        assert 'id="ticket-number">0001<' in html
        assert ("vnhis không hoàn tất được việc tra cứu trên cổng BHYT: thẻ chưa được xác minh; hệ thống sẽ tự tra "
                "cứu lại.") in html
        assert _tickets(factory) == {"Nguyễn Văn An": 1}
        with factory() as session:
            (check,) = session.scalars(select(CardCheck)).all()
            assert (check.status, check.problem, check.query_number) == ("pending", "unexpected", "DN4010123456789")
            assert session.get(Encounter, check.encounter_id).patient.full_name == "Nguyễn Văn An"
            assert session.scalar(select(Job.status).where(Job.name == cards.RETRY_JOB)) == "pending"

        assert queue.run_due(factory) == 1  # the retry job, with the client working again
        with factory() as session:
            check = session.scalar(select(CardCheck))
            assert (check.status, check.benefit_level) == ("verified", "80")
            assert session.get(Encounter, check.encounter_id).insured

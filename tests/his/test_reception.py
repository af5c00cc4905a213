"""Reception's one step under a double scan: one patient, one visit, one ticket."""

import threading
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import close_all_sessions

from core.db import make_engine, make_session_factory
from his import reception
from his.models.encounters import Encounter
from his.models.org import ServicePoint
from his.models.patients import Patient
from his.models.tickets import Ticket
from tests.his.conftest import DESK, TODAY, make_clinic

QR = "001190123456||Nguyễn Thị Bích|02021990|Nữ|Hà Nội|15042021"


def test_the_same_card_scanned_at_once_gives_one_visit_and_one_ticket(committed_db_url):
    engine = make_engine(committed_db_url, pool_size=10)
    factory = make_session_factory(engine)
    with factory() as session:
        point_id = make_clinic(session)["point"].id
        session.commit()
    barrier, numbers, errors = threading.Barrier(5), [], []

    def scan():
        try:
            with factory() as session:
                barrier.wait()
                arrival = reception.scan(session, DESK, QR, session.get(ServicePoint, point_id), day=TODAY,
                                         day_start=datetime(2026, 11, 30, 17, tzinfo=UTC))
                session.commit()
                numbers.append(arrival.ticket.number)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=scan) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert set(numbers) == {1}
    with factory() as session:
        counts = [session.scalar(select(func.count()).select_from(m)) for m in (Patient, Encounter, Ticket)]
    assert counts == [1, 1, 1]
    close_all_sessions()
    engine.dispose()

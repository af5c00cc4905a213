"""The ward's invariant under concurrent requests: a bed never holds two current stays.

Each thread has its own session on a real, committed database. The threads wait at a barrier and
then all try to take the same free bed at once. Variant "index only" switches off the friendly
pre-check, so every loser must be stopped by the partial unique index itself.
"""

import threading
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import close_all_sessions

from core.db import make_engine, make_session_factory, utcnow
from his import admission as adt
from his import encounters
from his.admission import AdmissionError
from his.models.admission import Admission, BedStay
from his.models.encounters import Encounter
from his.models.org import Bed, Department
from tests.his.test_admission import NURSE, make_patient, make_ward

THREADS = 12


@pytest.fixture
def world(committed_db_url):
    engine = make_engine(committed_db_url, pool_size=THREADS + 2)
    factory = make_session_factory(engine)
    with factory() as session:
        ward = make_ward(session)
        started = utcnow() - timedelta(hours=2)
        visits = []
        for n in range(THREADS):
            patient = make_patient(session, f"Người bệnh {n:02d}", f"2600001{n:02d}")
            visit = encounters.open_encounter(session, NURSE, patient, kind="outpatient", day=date.today(),
                                              room=ward["exam"])
            visit.started_at = started
            visits.append(visit.id)
        session.commit()
        ids = {"noi": ward["noi"].id, "visits": visits, "beds": {c: b.id for c, b in ward["beds"].items()}}
    yield factory, ids
    close_all_sessions()
    engine.dispose()


def _race(factory, work, n):
    """Run work(session, i) in n threads released together; returns (successes, error codes, other errors)."""
    barrier = threading.Barrier(n)
    wins, codes, crashes, lock = [], [], [], threading.Lock()

    def run(i):
        with factory() as session:
            try:
                barrier.wait()
                work(session, i)
                session.commit()
                with lock:
                    wins.append(i)
            except AdmissionError as exc:
                session.commit()  # whatever the refused operation left in the session: nothing half-saved
                with lock:
                    codes.append(exc.code)
            except Exception as exc:  # pragma: no cover - reported by the assertion below
                crashes.append(repr(exc))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return wins, codes, crashes


def _current_stays(factory, bed_id):
    with factory() as session:
        return session.scalar(select(func.count()).select_from(BedStay)
                              .where(BedStay.bed_id == bed_id, BedStay.ended_at.is_(None)))


@pytest.mark.parametrize("index_only", [False, True], ids=["with-precheck", "index-only"])
def test_concurrent_admissions_into_one_bed(world, monkeypatch, index_only):
    factory, ids = world
    bed_id = ids["beds"]["N201-G01"]
    if index_only:
        monkeypatch.setattr(adt, "_ensure_free", lambda *_args: None)

    def admit(session, i):
        visit = session.get(Encounter, ids["visits"][i])
        adt.admit(session, NURSE, visit, department=session.get(Department, ids["noi"]), bed=session.get(Bed, bed_id),
                  reason="Cấp cứu đồng loạt", at=utcnow() - timedelta(minutes=30))

    wins, codes, crashes = _race(factory, admit, THREADS)
    assert crashes == []
    assert len(wins) == 1 and codes == ["bed_taken"] * (THREADS - 1)
    assert _current_stays(factory, bed_id) == 1
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Admission)) == 1
        statuses = sorted(session.scalars(select(Encounter.status).where(Encounter.id.in_(ids["visits"]))))
        assert statuses == ["admitted"] + ["registered"] * (THREADS - 1)  # the losers' visits are untouched


def test_two_transfers_into_one_bed_at_once(world):
    factory, ids = world
    target = ids["beds"]["N201-G03"]
    origins = [ids["beds"]["N201-G01"], ids["beds"]["N201-G02"]]
    with factory() as session:
        for visit_id, bed_id in zip(ids["visits"][:2], origins, strict=True):
            adt.admit(session, NURSE, session.get(Encounter, visit_id), department=session.get(Department, ids["noi"]),
                      bed=session.get(Bed, bed_id), reason="Theo dõi", at=utcnow() - timedelta(hours=1))
        session.commit()

    def move(session, i):
        adt.transfer(session, NURSE, session.get(Encounter, ids["visits"][i]), to_bed=session.get(Bed, target),
                     at=utcnow())

    for _round in range(3):  # the race is short: run it a few times, moving the winner back each time
        wins, codes, crashes = _race(factory, move, 2)
        assert crashes == [] and len(wins) == 1 and codes == ["bed_taken"]
        assert _current_stays(factory, target) == 1
        with factory() as session:
            loser = session.get(Encounter, ids["visits"][1 - wins[0]])
            assert adt.current_bed_stay(session, loser).bed_id == origins[1 - wins[0]]  # still in its own bed
            winner = session.get(Encounter, ids["visits"][wins[0]])
            adt.transfer(session, NURSE, winner, to_bed=session.get(Bed, origins[wins[0]]), at=utcnow())
            session.commit()

"""Queue tickets: dense numbers under concurrency, the priority rules, call/recall/skip/transfer."""

import threading
from datetime import date

import pytest
from sqlalchemy import select
from sqlalchemy.orm import close_all_sessions

from core.db import make_engine, make_session_factory
from his import tickets
from his.models.org import ServicePoint
from his.models.patients import Patient
from his.models.tickets import Ticket
from his.tickets import TicketError
from tests.his.conftest import DESK, TODAY, make_clinic


def _patient(session, born: date, name="Bệnh nhân"):
    p = Patient(code=f"T{born:%Y%m%d}{name[:3]}", full_name=name, name_folded=name.lower(),
                name_reversed=name.lower(), birth_date=born, birth_year=born.year, sex="female", nationality="VN")
    session.add(p)
    session.flush()
    return p


@pytest.mark.parametrize(("born", "flags", "group"), [
    (date(2021, 1, 2), {}, "under6"),        # 71 months on 01/12/2026
    (date(2020, 12, 1), {}, None),           # exactly 72 months: no longer under 6
    (date(1951, 12, 1), {}, "elderly"),      # 75 today
    (date(1952, 1, 1), {}, None),            # 74
    (date(1990, 1, 1), {"pregnant": True}, "pregnant"),
    (date(1990, 1, 1), {"disabled": True}, "disabled"),
    (date(1990, 1, 1), {"merit": True}, "merit"),
    (date(1990, 1, 1), {"emergency": True}, "emergency"),
])
def test_priority_groups(db_session, born, flags, group):
    assert tickets.priority_group(_patient(db_session, born), TODAY, **flags) == group


def _issue(session, point, group=None, day=TODAY):
    return tickets.issue(session, DESK, point, day=day, group=group)


def test_numbers_are_per_point_and_day(db_session, clinic):
    point = clinic["point"]
    assert [_issue(db_session, point).number for _ in range(3)] == [1, 2, 3]
    assert _issue(db_session, point, day=date(2026, 12, 2)).number == 1


def test_calling_order_interleaves_priority_and_emergency_goes_first(db_session, clinic):
    point = clinic["point"]  # two normal tickets between priority ones
    made = {n: _issue(db_session, point, g) for n, g in
            [(1, None), (2, None), (3, "elderly"), (4, None), (5, "under6"), (6, None), (7, None), (8, "emergency")]}
    order = []
    while (ticket := tickets.call_next(db_session, DESK, point, day=TODAY)) is not None:
        order.append(ticket.number)
        tickets.done(db_session, DESK, ticket)
    assert order == [8, 3, 1, 2, 5, 4, 6, 7]
    assert all(made[n].status == "done" for n in made)


def test_recall_skip_transfer(db_session, clinic):
    point = clinic["point"]
    lab = ServicePoint(code="XN1", name="Lấy mẫu xét nghiệm", kind="lab_collection", normal_per_priority=2,
                       active=True)
    db_session.add(lab)
    first = _issue(db_session, point)
    second = _issue(db_session, point)
    assert tickets.call_next(db_session, DESK, point, day=TODAY) is first
    tickets.recall(db_session, DESK, first)
    assert first.call_count == 2
    tickets.skip(db_session, DESK, first)
    assert first.status == "no_show"
    tickets.recall(db_session, DESK, first)  # came back after all
    moved = tickets.transfer(db_session, DESK, first, lab, day=TODAY)
    assert first.status == "transferred" and first.transferred_to_id == moved.id and moved.number == 1
    with pytest.raises(TicketError) as info:
        tickets.skip(db_session, DESK, second)
    assert info.value.code == "not_called"
    with pytest.raises(TicketError) as info:
        tickets.call(db_session, DESK, second, "")
    assert info.value.code == "reason_required"
    tickets.call(db_session, DESK, second, "Người bệnh nặng")
    assert second.called_out_of_order


def test_board(db_session, clinic):
    point = clinic["point"]
    for _ in range(4):
        _issue(db_session, point)
    called = tickets.call_next(db_session, DESK, point, day=TODAY)
    view = tickets.board(db_session, point, TODAY)
    assert [t.number for t in view.called] == [called.number] and view.waiting_count == 3
    assert [t.number for t in view.waiting] == [2, 3, 4]
    tickets.call_next(db_session, DESK, point, day=TODAY)
    assert tickets.board(db_session, point, TODAY).version != view.version


def test_concurrent_tickets_are_distinct_and_dense(committed_db_url):
    engine = make_engine(committed_db_url, pool_size=20)
    factory = make_session_factory(engine)
    with factory() as session:
        point_id = make_clinic(session)["point"].id
        session.commit()
    numbers, errors, lock = [], [], threading.Lock()

    def take(n):
        try:
            for _ in range(n):
                with factory() as session:
                    ticket = tickets.issue(session, DESK, session.get(ServicePoint, point_id), day=TODAY)
                    session.commit()
                    with lock:
                        numbers.append(ticket.number)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=take, args=(25,)) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(numbers) == list(range(1, 401))
    with factory() as session:
        assert len(session.scalars(select(Ticket.id)).all()) == 400
    close_all_sessions()
    engine.dispose()


def test_a_recall_does_not_reset_the_interleaving(db_session, clinic):
    point = clinic["point"]
    made = {n: _issue(db_session, point, g) for n, g in [(1, None), (2, None), (3, None), (4, "elderly"),
                                                         (5, "elderly")]}
    order = [tickets.call_next(db_session, DESK, point, day=TODAY).number for _ in range(2)]
    tickets.recall(db_session, DESK, made[4])  # the elderly patient did not hear the first call
    order += [tickets.call_next(db_session, DESK, point, day=TODAY).number for _ in range(3)]
    assert order == [4, 1, 2, 5, 3]

"""Group commit in the MLLP listener over real sockets on a real database: the messages waiting
together share one transaction, each connection is answered after the commit of its own message,
a failed batch answers AA only for what a later commit stored, and a repeat inside one batch is
answered like its original and stored once. Then the batch itself (inbox.process_many): a mix of
outcomes in one pass, and a repeat racing its uncommitted original.

A batch is made deterministic with one writer session and the lock of a specimen held by the test:
the first message's connection applies it and waits on the lock, the next ones queue up behind it and
are taken together (by the first of them, handed the session) once the lock is released."""

from __future__ import annotations

import logging
import socket
import threading
import time

from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError

from core.models import AuditEvent
from lis import hl7, inbox, listener, mllp
from lis.models import Message, Result, Specimen
from tests.lis.messages import VALUES, cbc_oru, glucose_oru


class CountedCommits:
    """A session factory whose first session (the writer's) records each commit and fails the ones asked."""

    def __init__(self, factory, fail_from: int | None = None, fail_count: int = 0):
        self.factory, self.fail_from, self.fail_count = factory, fail_from, fail_count
        self.outcomes: list[str] = []
        self.made = 0

    def __call__(self):
        session = self.factory()
        self.made += 1
        if self.made == 1:
            real = session.commit

            def commit():
                n = len(self.outcomes) + 1
                failing = self.fail_from is not None and n >= self.fail_from and \
                    (not self.fail_count or n < self.fail_from + self.fail_count)
                if failing:
                    self.outcomes.append("failed")
                    session.rollback()
                    raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))
                real()
                self.outcomes.append("ok")

            session.commit = commit
        return session


def _server(factory, writers: int = 1):
    srv = listener.make_server(factory, "127.0.0.1", 0, idle_seconds=30, writers=writers)
    srv.start()
    return srv


def _exchange(port: int, payload: bytes, answers: dict, key: str) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(mllp.frame(payload))
        reader, frames = mllp.FrameReader(), []
        while not frames:
            data = sock.recv(65536)
            assert data, "the listener closed the connection"
            frames += reader.feed(data)
    msa = hl7.parse(frames[0].data).find("MSA")
    answers[key] = (msa.component(1), msa.component(2), frames[0].data)


def _until(condition, what: str) -> None:
    deadline = time.monotonic() + 20
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.01)


def _batched(committed_lab, counted: CountedCommits, first: bytes, rest: list[tuple[str, bytes]]) -> dict:
    """Send `first` (for the blood tube, held locked) and then `rest` on connections of their own, so that
    `rest` is one batch; returns the answers by key."""
    srv = _server(counted)
    writer = srv.open_link("test").writer
    answers: dict = {}
    threads = []
    try:
        with committed_lab["factory"]() as holder:
            holder.execute(select(Specimen.id).where(Specimen.barcode == committed_lab["blood"]).with_for_update())
            threads.append(threading.Thread(target=_exchange, args=(srv.port, first, answers, "first")))
            threads[-1].start()
            _until(lambda: counted.made >= 1 and writer.waiting() == 0 and _waiting(committed_lab), "the lock")
            for n, (key, payload) in enumerate(rest, start=1):  # one after the other: the batch keeps this order
                threads.append(threading.Thread(target=_exchange, args=(srv.port, payload, answers, key)))
                threads[-1].start()
                _until(lambda n=n: writer.waiting() == n, f"message {key} to queue up")
            holder.commit()
        for t in threads:
            t.join(60)
    finally:
        srv.stop()
    return answers


def _waiting(committed_lab) -> bool:
    """The writer waits for the row lock the test holds (in this test's own database)."""
    with committed_lab["engine"].connect() as conn:
        return bool(conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                      " AND wait_event_type = 'Lock'")).scalar())


def _stored(committed_lab) -> list[tuple]:
    with committed_lab["factory"]() as session:
        return session.execute(select(Message.control_id, Message.status, Message.ack_code, Message.error_code)
                               .order_by(Message.control_id)).all()


def _glucose_versions(committed_lab) -> list[tuple]:
    with committed_lab["factory"]() as session:
        return session.execute(select(Result.value, Result.version, Result.superseded_at.is_(None)).join(
            Specimen, Specimen.id == Result.specimen_id).where(Specimen.barcode == committed_lab["serum"])
            .order_by(Result.version)).all()


def test_messages_waiting_together_share_one_commit_and_each_gets_its_own_answer(committed_lab):
    counted = CountedCommits(committed_lab["factory"])
    serum = committed_lab["serum"]
    answers = _batched(committed_lab, counted, cbc_oru(committed_lab["blood"], "A"),
                       [("B", glucose_oru(serum, "B", "5.1")), ("U", cbc_oru("260000999999", "U")),
                        ("C", glucose_oru(serum, "C", "5.2"))])
    assert {k: v[:2] for k, v in answers.items()} == {"first": ("AA", "A"), "B": ("AA", "B"), "U": ("AE", "U"),
                                                      "C": ("AA", "C")}
    assert counted.outcomes == ["ok", "ok"]  # A alone, then B, U and C in one transaction
    assert _stored(committed_lab) == [("A", "applied", "AA", None), ("B", "applied", "AA", None),
                                      ("C", "applied", "AA", None), ("U", "unmatched", "AE", "204")]
    # B and C are in one batch, in the order they came: C is the newer version
    assert sorted(_glucose_versions(committed_lab), key=lambda r: r[1]) == [("5.1", 1, False), ("5.2", 2, True)]


def test_a_repeat_inside_one_batch_gets_the_same_answer_and_is_stored_once(committed_lab):
    counted = CountedCommits(committed_lab["factory"])
    repeat = glucose_oru(committed_lab["serum"], "R", "5.5")
    answers = _batched(committed_lab, counted, cbc_oru(committed_lab["blood"], "A"),
                       [("R1", repeat), ("R2", repeat)])
    assert answers["R1"][:2] == answers["R2"][:2] == ("AA", "R")
    assert answers["R1"][2] == answers["R2"][2]  # the stored answer, byte for byte
    assert counted.outcomes == ["ok", "ok"]
    assert _stored(committed_lab) == [("A", "applied", "AA", None), ("R", "applied", "AA", None)]
    assert _glucose_versions(committed_lab) == [("5.5", 1, True)]


def test_a_batch_whose_commit_fails_is_applied_again_message_by_message(committed_lab):
    counted = CountedCommits(committed_lab["factory"], fail_from=2, fail_count=1)
    serum = committed_lab["serum"]
    answers = _batched(committed_lab, counted, cbc_oru(committed_lab["blood"], "A"),
                       [("B", glucose_oru(serum, "B", "5.1")), ("C", glucose_oru(serum, "C", "5.2"))])
    assert {k: v[:2] for k, v in answers.items()} == {"first": ("AA", "A"), "B": ("AA", "B"), "C": ("AA", "C")}
    assert counted.outcomes == ["ok", "failed", "ok", "ok"]  # the batch, then B alone and C alone
    assert _stored(committed_lab) == [("A", "applied", "AA", None), ("B", "applied", "AA", None),
                                      ("C", "applied", "AA", None)]
    assert sorted(r[0] for r in _glucose_versions(committed_lab)) == ["5.1", "5.2"]


def test_a_failed_batch_never_answers_aa_for_what_was_not_committed(committed_lab):
    counted = CountedCommits(committed_lab["factory"], fail_from=2)  # the database is gone after A
    serum = committed_lab["serum"]
    answers = _batched(committed_lab, counted, cbc_oru(committed_lab["blood"], "A"),
                       [("B", glucose_oru(serum, "B", "5.1")), ("C", glucose_oru(serum, "C", "5.2"))])
    assert {k: v[:2] for k, v in answers.items()} == {"first": ("AA", "A"), "B": ("AR", "B"), "C": ("AR", "C")}
    assert hl7.parse(answers["B"][2]).find("ERR").value(1) == "MSH^^^207&&HL70357"
    assert counted.outcomes == ["ok", "failed", "failed", "failed"]
    # what is stored of B and C is only the refusal, kept by a session of its own
    assert _stored(committed_lab) == [("A", "applied", "AA", None), (None, "rejected", "AR", "207"),
                                      (None, "rejected", "AR", "207")]
    assert _glucose_versions(committed_lab) == []


def test_concurrent_connections_on_one_tube_get_every_version_once(committed_lab):
    srv = _server(committed_lab["factory"], writers=3)
    blood, connections, per_connection = committed_lab["blood"], 8, 6
    answers: dict = {}

    def analyser(n: int) -> None:
        got = []
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as sock:
            reader = mllp.FrameReader()
            for k in range(per_connection):
                sock.sendall(mllp.frame(cbc_oru(blood, f"K{n}-{k}")))
                frames = []
                while not frames:
                    frames += reader.feed(sock.recv(65536))
                got.append(hl7.parse(frames[0].data).find("MSA").component(1))
        answers[n] = got

    threads = [threading.Thread(target=analyser, args=(n,)) for n in range(connections)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        srv.stop()
    total = connections * per_connection
    assert answers == {n: ["AA"] * per_connection for n in range(connections)}
    with committed_lab["factory"]() as session:
        assert session.scalar(select(func.count()).select_from(Message).where(Message.status == "applied")) == total
        versions = session.execute(select(Result.test_id, func.array_agg(Result.version),
                                          func.count().filter(Result.superseded_at.is_(None)))
                                   .group_by(Result.test_id)).all()
    assert len(versions) == 25
    assert all(sorted(v) == list(range(1, total + 1)) and current == 1 for _t, v, current in versions)



QRY = ("MSH|^~\\&|BS-480|Mindray|||20261201090000||QRY^Q02|{control}|P|2.3.1||||||ASCII\r"
       "QRD|20261201090000|R|D|1|||RD|{barcode}|OTH|||T\r"
       "QRF|BS-480|20261201000000|20261201235959|||RCT|COR|ALL||\r")


def _code(answer: bytes) -> str:
    return hl7.parse(answer).find("MSA").component(1)


def _events(committed_lab) -> list[tuple]:
    with committed_lab["factory"]() as session:
        rows = session.execute(select(AuditEvent.target_id, AuditEvent.detail).where(
            AuditEvent.action == "lis.result.record").order_by(AuditEvent.id)).all()
    return [(target, detail["message_id"], len(detail["tests"])) for target, detail in rows]


def test_a_mixed_batch_is_applied_together_and_answers_each_message_as_if_alone(committed_lab):
    """One pass for all (one duplicate lookup, one lock, one history query, one insert of messages and
    one of results), with the outcome of handling each in turn: a repeat of a stored message and a repeat
    inside the batch answered like their original and stored once, an unknown specimen and a bad value
    refused without touching the others, a query answered on the way, two versions of one tube in order."""
    blood, serum, factory = committed_lab["blood"], committed_lab["serum"], committed_lab["factory"]
    with factory() as session:
        [stored] = inbox.process(session, glucose_oru(serum, "OLD", "5.0"))
        session.commit()
    a1, a2 = cbc_oru(blood, "A1"), cbc_oru(blood, "A2", values=["7.5", *VALUES[1:]])
    wrong = cbc_oru(blood, "BAD", values=[VALUES[0], "abc", *VALUES[2:]])
    batch = [(a1, "p1"), (cbc_oru("260000999999", "U1"), "p2"), (glucose_oru(serum, "OLD", "5.0"), "p3"),
             (a1, "p4"), (QRY.format(control="Q1", barcode=serum).encode(), "p5"), (a2, "p6"), (wrong, "p7"),
             (glucose_oru(serum, "G1", "5.6"), "p8")]
    with factory() as session:
        answers = inbox.process_many(session, batch)
        session.commit()
    assert [_code(a[0]) for a in answers] == ["AA", "AE", "AA", "AA", "AA", "AA", "AE", "AA"]
    assert answers[2] == [stored] and answers[3] == answers[0]  # the stored answers, byte for byte
    assert len(answers[4]) == 2  # the query's QCK and DSR
    assert hl7.parse(answers[6][0]).find("ERR").value(1) == "OBX^4^5^102&&HL70357"
    assert _stored(committed_lab) == [("A1", "applied", "AA", None), ("A2", "applied", "AA", None),
                                      ("BAD", "error", "AE", "102"), ("G1", "applied", "AA", None),
                                      ("OLD", "applied", "AA", None), ("Q1", "answered", "AA", None),
                                      ("U1", "unmatched", "AE", "204")]
    with factory() as session:
        ids = dict(session.execute(select(Message.control_id, Message.id)).all())
        blood_rows = session.execute(select(Result.version, Result.message_id, Result.superseded_at.is_(None),
                                            func.count()).join(Specimen, Specimen.id == Result.specimen_id)
                                     .where(Specimen.barcode == blood).group_by(Result.version, Result.message_id,
                                                                                Result.superseded_at.is_(None))
                                     .order_by(Result.version)).all()
    assert blood_rows == [(1, ids["A1"], False, 25), (2, ids["A2"], True, 25)]  # A2 supersedes A1
    assert _glucose_versions(committed_lab) == [("5.0", 1, False), ("5.6", 2, True)]
    blood_id, serum_id = _specimen_ids(committed_lab)
    assert _events(committed_lab) == [(serum_id, ids["OLD"], 1), (blood_id, ids["A1"], 25),
                                      (blood_id, ids["A2"], 25), (serum_id, ids["G1"], 1)]


def _specimen_ids(committed_lab) -> tuple[str, str]:
    with committed_lab["factory"]() as session:
        found = dict(session.execute(select(Specimen.barcode, Specimen.id)).all())
    return str(found[committed_lab["blood"]]), str(found[committed_lab["serum"]])


def test_a_repeat_racing_its_original_in_another_transaction_is_answered_from_the_store(committed_lab, caplog):
    """The original is not committed yet when its repeat's batch looks for it: the batch waits behind the
    original's specimen lock, then cannot store the repeat a second time, is rolled back and applied message
    by message, and the repeat gets the original's answer while the other message of the batch is stored."""
    factory, serum = committed_lab["factory"], committed_lab["serum"]
    message = glucose_oru(serum, "RACE", "5.3")
    writer = listener.GroupWriter(factory, writers=0)
    original = factory()
    try:
        [first] = inbox.process(original, message, "analyser-1")
        jobs = [listener._Job(message, "analyser-2"), listener._Job(cbc_oru(committed_lab["blood"], "OTHER"), "b")]
        racing = threading.Thread(target=writer.apply, args=(jobs,))
        caplog.set_level(logging.INFO, logger="vnhis.lis")
        racing.start()
        _until(lambda: _waiting(committed_lab), "the repeat's batch to wait for the original")
        original.commit()
        racing.join(60)
    finally:
        original.close()
        writer.stop()
    assert "HL7 batch of 2 rolled back" in caplog.text  # the repeat could not be stored twice
    assert jobs[0].error is None and jobs[0].answers == [first]
    assert _code(jobs[1].answers[0]) == "AA"
    assert _stored(committed_lab) == [("OTHER", "applied", "AA", None), ("RACE", "applied", "AA", None)]
    assert _glucose_versions(committed_lab) == [("5.3", 1, True)]


def test_with_the_database_away_each_message_is_answered_ar_and_the_listener_keeps_serving():
    from core.db import make_engine, make_session_factory

    engine = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")  # nothing listens on port 1
    srv = _server(make_session_factory(engine))
    answers: dict = {}
    try:
        for key in ("D1", "D2"):
            _exchange(srv.port, glucose_oru("260000000001", key), answers, key)
    finally:
        srv.stop()
        engine.dispose()
    assert {k: v[:2] for k, v in answers.items()} == {"D1": ("AR", "D1"), "D2": ("AR", "D2")}
    assert hl7.parse(answers["D1"][2]).find("MSA").component(3) == "the message could not be stored; resend later"

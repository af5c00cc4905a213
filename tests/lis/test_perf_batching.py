"""Group commit in the MLLP listener over real sockets on a real database: the messages waiting
together share one transaction, each connection is answered after the commit of its own message,
a failed batch answers AA only for what a later commit stored, and a repeat inside one batch is
answered like its original and stored once.

A batch is made deterministic with one writer thread and the lock of a specimen held by the test:
the writer waits on the first message, the next ones queue up behind it and are taken together
once the lock is released."""

from __future__ import annotations

import socket
import threading
import time

from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError

from lis import hl7, listener, mllp
from lis.models import Message, Result, Specimen
from tests.lis.messages import cbc_oru, glucose_oru


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
            _until(lambda: counted.made >= 1 and writer.jobs.qsize() == 0 and _waiting(committed_lab), "the lock")
            for n, (key, payload) in enumerate(rest, start=1):  # one after the other: the batch keeps this order
                threads.append(threading.Thread(target=_exchange, args=(srv.port, payload, answers, key)))
                threads[-1].start()
                _until(lambda n=n: writer.jobs.qsize() == n, f"message {key} to queue up")
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


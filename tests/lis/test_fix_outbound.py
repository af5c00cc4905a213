"""The order download after review: nothing is sent for a rejected specimen or when nothing is
pending, every attempt is kept, and an answer acknowledging another control id is a failure. ASTM
profiles accept a one-part sender name."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, update

from core.audit import Actor
from core.models import Job
from lis import analysers, hl7, inbox, jobs, mllp, specimens
from lis.models import Analyser, Message
from tests.lis.conftest import TODAY
from tests.lis.messages import glucose_oru
from tests.lis.test_outbound import TinyAnalyser

TECH = Actor(id=None, name="ktv", ip=None)


@pytest.fixture
def analyser_at(db_session, lab):
    made = []

    def start(code: str, codes: list[str]):
        tiny = TinyAnalyser(codes)
        made.append(tiny)
        db_session.execute(update(Analyser).where(Analyser.code == code).values(host="127.0.0.1", port=tiny.port))
        db_session.expire_all()
        return tiny, db_session.scalar(select(Analyser).where(Analyser.code == code))

    yield start
    for tiny in made:
        tiny.close()


def _outbound(db_session):
    return db_session.scalars(select(Message).where(Message.direction == "out").order_by(Message.id)).all()


def test_nothing_is_sent_for_a_rejected_specimen_or_when_nothing_is_pending(db_session, lab, analyser_at):
    tiny, bs480 = analyser_at("BS480", [])
    serum = specimens.by_barcode(db_session, lab["serum"])
    for code in ("1", "7", "8", "9"):  # every test of the tube is in (glucose, Na, K, Cl on the BS-480)
        inbox.process(db_session, glucose_oru(lab["serum"], f"P{code}", test=code), today=TODAY)
    done = jobs.send_order(db_session, {"specimen_id": serum.id, "analyser_id": bs480.id})
    assert done == {"specimen": lab["serum"], "analyser": "BS480", "skipped": "nothing pending"}
    blood = specimens.by_barcode(db_session, lab["blood"])
    specimens.reject(db_session, TECH, blood, "Đông máu")
    bc = db_session.scalar(select(Analyser).where(Analyser.code == "BC5380"))
    assert jobs.send_order(db_session, {"specimen_id": blood.id, "analyser_id": bc.id})["skipped"] == "rejected"
    assert tiny.received == [] and _outbound(db_session) == []


class WrongControl(TinyAnalyser):
    """Acknowledges every message with a control id it was not sent."""

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                reader, got = mllp.FrameReader(), []
                while not got:
                    data = conn.recv(65536)
                    if not data:
                        break
                    got = reader.feed(data)
                if got:
                    msg = hl7.parse(got[0].data)
                    self.received.append(msg)
                    conn.sendall(mllp.frame(hl7.ack(msg, "AA").replace(msg.control_id.encode(), b"OTHER")))


def test_an_ack_for_another_control_id_is_a_failure_kept_in_the_store(committed_lab):
    factory = committed_lab["factory"]
    tiny = WrongControl([])
    try:
        with factory() as session:
            session.execute(update(Analyser).where(Analyser.code == "BC5380").values(host="127.0.0.1",
                                                                                      port=tiny.port))
            session.commit()
        with factory() as session:
            blood = specimens.by_barcode(session, committed_lab["blood"])
            bc = session.scalar(select(Analyser).where(Analyser.code == "BC5380"))
            with pytest.raises(jobs.DeliveryError) as refused:
                jobs.send_order(session, {"specimen_id": blood.id, "analyser_id": bc.id})
            session.rollback()  # what the queue does before the retry
        [sent] = tiny.received
        assert str(refused.value) == f"BC5380 acknowledged control id 'OTHER', not the '{sent.control_id}' we sent"
        with factory() as session:
            [kept] = session.scalars(select(Message).where(Message.direction == "out")).all()
            assert (kept.status, kept.control_id, kept.error_reason) == ("error", sent.control_id,
                                                                         str(refused.value))
            assert b"OTHER" in kept.ack and session.scalar(select(func.count()).select_from(Job)) == 0
    finally:
        tiny.close()


def test_an_unreachable_analyser_is_kept_as_a_failed_attempt(committed_lab):
    factory = committed_lab["factory"]
    with factory() as session:
        session.execute(update(Analyser).where(Analyser.code == "BC5380").values(host="127.0.0.1", port=1))
        session.commit()
        blood = specimens.by_barcode(session, committed_lab["blood"])
        bc = session.scalar(select(Analyser).where(Analyser.code == "BC5380"))
        with pytest.raises(jobs.DeliveryError):
            jobs.send_order(session, {"specimen_id": blood.id, "analyser_id": bc.id})
        session.rollback()
    with factory() as session:
        [kept] = session.scalars(select(Message).where(Message.direction == "out")).all()
        assert kept.status == "error" and kept.error_reason.startswith("BC5380 at 127.0.0.1:1 is unreachable")


def test_an_astm_profile_takes_a_one_part_sender(db_session, lab):
    form = {"code": "CA1500", "name": "Sysmex CA-1500", "sender": "CA-1500", "protocol": "astm"}
    row = analysers.save(db_session, TECH, None, form)
    assert (row.sender, row.protocol) == ("CA-1500", "astm")
    with pytest.raises(analysers.ProfileError) as empty:
        analysers.save(db_session, TECH, None, {**form, "code": "CA2", "sender": " "})
    assert str(empty.value.errors["sender"]) == ("Give the sender name as the analyser writes it in the ASTM header "
                                                 "(H-5).")
    with pytest.raises(analysers.ProfileError) as hl7_one_part:
        analysers.save(db_session, TECH, None, {**form, "code": "HL1", "sender": "CA-1600", "protocol": "hl7"})
    assert str(hl7_one_part.value.errors["sender"]) == "Give the sending application and facility as MSH-3^MSH-4."
    assert db_session.scalar(select(func.count()).select_from(Analyser).where(Analyser.code.in_(("CA2", "HL1")))) == 0

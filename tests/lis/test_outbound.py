"""Bidirectional HL7: the order download queued at reception (ORM^O01 or OML^O21 per profile) sent by
a job to a tiny MLLP analyser in the test, retried after a refusal; and host queries (QRY^Q02,
QBP^Q11) answered with the specimen's pending tests."""

from __future__ import annotations

import socket
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from core import queue
from core.audit import Actor
from core.db import utcnow
from core.models import Job
from lis import hl7, inbox, mllp, specimens
from lis.models import Analyser, Message
from tests.lis.conftest import TODAY
from tests.lis.messages import glucose_oru

pytestmark = pytest.mark.tubes_at_ward  # these tests take the tubes through reception themselves


class TinyAnalyser:
    """Accepts MLLP connections, keeps each message, answers with the next code from `codes`."""

    def __init__(self, codes: list[str]):
        self.codes, self.received = codes, []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                reader = mllp.FrameReader()
                got = []
                while not got:
                    data = conn.recv(65536)
                    if not data:
                        break
                    got = reader.feed(data)
                if not got:
                    continue
                msg = hl7.parse(got[0].data)
                self.received.append(msg)
                code = self.codes.pop(0) if self.codes else "AA"
                conn.sendall(mllp.frame(hl7.ack(msg, code)))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def tiny():
    made = []

    def start(codes):
        made.append(TinyAnalyser(codes))
        return made[-1]

    yield start
    for t in made:
        t.close()


def _point(factory, code: str, port: int, order_message: str = "ORM^O01") -> None:
    with factory() as session:
        session.execute(update(Analyser).where(Analyser.code == code).values(host="127.0.0.1", port=port,
                                                                             order_message=order_message))
        session.commit()


def test_reception_sends_the_orders_and_retries_after_a_refusal(committed_lab, tiny):
    factory = committed_lab["factory"]
    analyser = tiny(["AE"])
    _point(factory, "BC5380", analyser.port)
    with factory() as session:
        specimens.receive(session, Actor(id=None, name="ktv", ip=None), committed_lab["blood"])
        session.commit()
    queue.run_due(factory)
    with factory() as session:
        job = session.scalars(select(Job).where(Job.name == "lis.order.send")).one()
        assert job.status == "pending" and "BC5380 refused the order with AE" in job.last_error
        session.execute(update(Job).where(Job.id == job.id).values(run_after=utcnow() - timedelta(seconds=1)))
        session.commit()
    queue.run_due(factory)
    with factory() as session:
        assert session.scalars(select(Job.status).where(Job.name == "lis.order.send")).one() == "done"
        failed, sent = session.scalars(select(Message).where(Message.direction == "out").order_by(Message.id))
        assert (failed.status, failed.error_reason, failed.specimen_barcodes) == (
            "error", "BC5380 refused the order with AE", committed_lab["blood"])  # every attempt is kept
        assert (sent.status, sent.ack_code, sent.specimen_barcodes, sent.message_type) == (
            "sent", "AA", committed_lab["blood"], "ORM^O01")
    first, second = analyser.received
    assert first.control_id != second.control_id  # the retry is a message of its own
    orders = [s for s in second.segments if s.name == "OBR"]
    assert len(orders) == 25 and orders[0].component(4, 1) == "WBC" and orders[0].value(2) == committed_lab["blood"]
    assert second.find("PID").component(5) == "Nguyễn Văn An" and second.version == "2.3.1"


def test_an_oml_o21_profile_gets_specimen_and_container_segments(committed_lab, tiny):
    factory = committed_lab["factory"]
    analyser = tiny([])
    _point(factory, "BS480", analyser.port, "OML^O21")
    with factory() as session:
        specimens.receive(session, Actor(id=None, name="ktv", ip=None), committed_lab["serum"])
        session.commit()
    queue.run_due(factory)
    [msg] = analyser.received
    assert msg.type == ("OML", "O21")
    assert msg.find("SPM").component(2) == committed_lab["serum"] and msg.find("SAC").value(3) == committed_lab["serum"]
    assert [s.component(4, 1) for s in msg.segments if s.name == "OBR"] == ["1", "7", "8", "9"]  # GLU, Na, K, Cl


def _query(session, raw: bytes) -> list[hl7.Message]:
    return [hl7.parse(answer) for answer in inbox.process(session, raw, today=TODAY)]


def test_a_mindray_host_query_is_answered_with_qck_and_dsr(db_session, lab):
    qry = (f"MSH|^~\\&|BS-480|Mindray|||20261201090000||QRY^Q02|7|P|2.3.1||||||ASCII\r"
           f"QRD|20261201090000|R|D|1|||RD|{lab['serum']}|OTH|||T\r"
           "QRF|BS-480|20261201000000|20261201235959|||RCT|COR|ALL||\r").encode()
    qck, dsr = _query(db_session, qry)
    assert qck.type == ("QCK", "Q02") and qck.find("QAK").value(2) == "OK" and qck.find("MSA").value(2) == "7"
    dsp = {s.value(1): s.value(3) for s in dsr.segments if s.name == "DSP"}
    assert dsp["1"] == lab["patient_code"] and dsp["3"] == "Nguyễn Văn An" and dsp["21"] == lab["serum"]
    assert [dsp[str(n)] for n in range(29, 33)] == ["1^Glucose^^", "7^Natri^^", "8^Kali^^", "9^Clo^^"]
    # the tube reaches the lab; once its glucose is in, only the electrolytes are pending
    specimens.receive(db_session, Actor.system("test"), lab["serum"])
    inbox.process(db_session, glucose_oru(lab["serum"], "G1"), today=TODAY)
    _qck, dsr = _query(db_session, qry.replace(b"|7|P|", b"|8|P|"))
    assert [s.value(3) for s in dsr.segments if s.name == "DSP" and int(s.value(1)) >= 29] == [
        "7^Natri^^", "8^Kali^^", "9^Clo^^"]
    [nothing] = _query(db_session, qry.replace(lab["serum"].encode(), b"000000").replace(b"|7|P|", b"|9|P|"))
    assert nothing.find("QAK").value(2) == "NF"
    stored = db_session.scalars(select(Message).order_by(Message.id)).all()
    assert [m.status for m in stored] == ["answered", "applied", "answered", "answered"]


def test_a_law_query_by_container_id_is_answered_with_rsp_k11(db_session, lab):
    qbp = (f"MSH|^~\\&|Alinity|Abbott|VNHIS|LIS|20261201090000+0700||QBP^Q11^QBP_Q11|Q1|P|2.5.1|||NE|AL||"
           f"UNICODE UTF-8\rQPD|WOS^Work Order Step^IHE_LABTF|T1|{lab['blood']}\rRCP|I||R\r").encode()
    [rsp] = _query(db_session, qbp)
    assert rsp.type == ("RSP", "K11") and rsp.find("QAK").value(1) == "T1" and rsp.find("QAK").value(2) == "OK"
    assert rsp.find("SAC").value(3) == lab["blood"] and len([s for s in rsp.segments if s.name == "OBR"]) == 25
    [empty] = _query(db_session, qbp.replace(lab["blood"].encode(), b"NOPE").replace(b"|Q1|", b"|Q2|"))
    assert empty.find("QAK").value(2) == "NF" and empty.find("OBR") is None

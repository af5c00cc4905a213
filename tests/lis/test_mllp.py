"""The MLLP listener over real sockets on a real database: a realistic mixed stream on one kept-open
connection (split and merged frames, noise, a truncated and an over-long frame, a duplicate, an
unknown specimen), many connections at once, and python-hl7's mllp_send as a client."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from lis import hl7, listener, mllp
from lis.models import Message, Result, Specimen
from tests.lis.messages import VALUES, cbc_oru, glucose_oru, oul_r22

MAX_BYTES = 64 * 1024


@pytest.fixture
def server(committed_lab):
    srv = listener.make_server(committed_lab["factory"], "127.0.0.1", 0, max_bytes=MAX_BYTES, idle_seconds=30)
    srv.start()
    yield srv
    srv.stop()


class Client:
    """An analyser's side of the connection: send bytes in any cut, read framed answers."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.reader = mllp.FrameReader()
        self.pending: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def answer(self) -> hl7.Message:
        while not self.pending:
            data = self.sock.recv(65536)
            assert data, "the listener closed the connection"
            self.pending += [f.data for f in self.reader.feed(data)]
        return hl7.parse(self.pending.pop(0))

    def close(self) -> None:
        self.sock.close()


def _msa(answer: hl7.Message) -> tuple[str, str]:
    msa = answer.find("MSA")
    return msa.component(1), msa.component(2)


def test_a_mixed_stream_on_one_connection_gets_every_answer_and_exactly_the_right_rows(server, committed_lab):
    blood, serum = committed_lab["blood"], committed_lab["serum"]
    client = Client(server.port)
    first = mllp.frame(cbc_oru(blood, "S1"))
    # 1. a valid CBC, split into pieces of 7 bytes (a slow serial-to-TCP converter)
    for i in range(0, len(first), 7):
        client.send(first[i:i + 7])
    assert _msa(client.answer()) == ("AA", "S1")
    # 2. two glucose results merged in one read, with noise between the frames
    client.send(b"\x00\r\n" + mllp.frame(glucose_oru(serum, "S2", "5.1")) + b"\n\n\x00"
                + mllp.frame(glucose_oru(serum, "S3", "5.3")))
    assert _msa(client.answer()) == ("AA", "S2")
    assert _msa(client.answer()) == ("AA", "S3")
    # 3. the analyser lost our ACK and sends S1 again: same answer, nothing doubled
    client.send(first)
    assert _msa(client.answer()) == ("AA", "S1")
    # 4. an unknown specimen: AE, waiting in the unmatched inbox
    client.send(mllp.frame(cbc_oru("260000999999", "S4")))
    answer = client.answer()
    assert _msa(answer) == ("AE", "S4") and answer.find("ERR").value(1) == "OBR^1^3^204&&HL70357"
    # 5. a frame cut off by the next one (the analyser restarted mid-message), then a good one
    client.send(b"\x0b" + cbc_oru(blood, "S5")[:200] + mllp.frame(oul_r22(serum, "S6", {"2951-2": "140"})))
    truncated = client.answer()
    assert _msa(truncated) == ("AR", "S5") and "truncated" in truncated.find("MSA").value(3)
    assert _msa(client.answer()) == ("AA", "S6")
    # 6. an over-long message (a histogram far beyond the limit): AR, the connection stays usable
    huge = cbc_oru(blood, "S7").replace(b"ZRI|scattergram omitted", b"ZRI|" + b"A" * (MAX_BYTES + 10))
    client.send(mllp.frame(huge))
    answer = client.answer()
    assert _msa(answer) == ("AR", "S7") and answer.find("ERR").value(1) == "MSH^^^100&&HL70357"
    # 7. not HL7 at all, then a comma decimal: AR and AE
    client.send(mllp.frame(b"hello analyser"))
    assert _msa(client.answer()) == ("AR", "")
    client.send(mllp.frame(glucose_oru(serum, "S8", "5,6")))
    assert _msa(client.answer()) == ("AE", "S8")
    # 8. and the connection still carries a valid message
    client.send(mllp.frame(glucose_oru(serum, "S9", "5.8")))
    assert _msa(client.answer()) == ("AA", "S9")
    client.close()

    with committed_lab["factory"]() as session:
        stored = session.execute(select(Message.control_id, Message.status, Message.ack_code, Message.error_code)
                                 .order_by(Message.id)).all()
        assert stored == [("S1", "applied", "AA", None), ("S2", "applied", "AA", None),
                          ("S3", "applied", "AA", None), ("S4", "unmatched", "AE", "204"),
                          (None, "rejected", "AR", "100"), ("S6", "applied", "AA", None),
                          (None, "rejected", "AR", "100"), (None, "rejected", "AR", "100"),
                          ("S8", "error", "AE", "102"), ("S9", "applied", "AA", None)]
        oversized = session.scalars(select(Message).where(Message.error_reason.like("message of%"))).one()
        assert oversized.raw.startswith(b"MSH|") and len(oversized.raw) == mllp.HEAD_KEPT
        current = session.execute(select(Specimen.barcode, Result.value, Result.version).join(
            Specimen, Specimen.id == Result.specimen_id).where(Result.superseded_at.is_(None))).all()
        blood_values = sorted(v for b, v, _ in current if b == blood)
        assert blood_values == sorted(VALUES)
        assert sorted((v, n) for b, v, n in current if b == serum) == [("140", 1), ("5.8", 3)]
        assert session.scalar(select(func.count()).select_from(Result)) == 25 + 3 + 1


def test_many_connections_at_once_each_keep_their_own_stream(server, committed_lab):
    serum = committed_lab["serum"]
    answers: dict[int, list] = {}

    def analyser(n: int) -> None:
        client = Client(server.port)
        got = []
        for k in range(5):
            client.send(mllp.frame(glucose_oru(serum, f"C{n}-{k}", f"{5 + n}.{k}")))
            got.append(_msa(client.answer()))
        client.close()
        answers[n] = got

    threads = [threading.Thread(target=analyser, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert answers == {n: [("AA", f"C{n}-{k}") for k in range(5)] for n in range(6)}
    with committed_lab["factory"]() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 30
        assert session.scalar(select(func.count()).select_from(Result)) == 30
        assert session.scalar(select(func.count()).select_from(Result).where(Result.superseded_at.is_(None))) == 1


def test_python_hl7_mllp_send_is_answered(server, committed_lab, tmp_path: Path):
    """The client shown in the README: two messages from a file, one connection, both acknowledged."""
    messages = tmp_path / "results.hl7"
    messages.write_bytes(cbc_oru(committed_lab["blood"], "MS1", sep="\r\n")
                         + glucose_oru(committed_lab["serum"], "MS2").replace(b"\r", b"\r\n"))
    done = subprocess.run([str(Path(sys.executable).parent / "mllp_send"), "--loose", "--port", str(server.port),
                           "--file", str(messages), "127.0.0.1"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "MSA|AA|MS1" in done.stdout and "MSA|AA|MS2" in done.stdout
    with committed_lab["factory"]() as session:
        assert session.scalar(select(func.count()).select_from(Result)) == 26

"""The ASTM E1394 / LIS2-A2 adapter over a real TCP socket: ENQ/ACK/EOT, frames with checksums, a
record over two frames, NAK on a bad checksum (kept in the store), a repeated frame, an unknown
specimen into the unmatched inbox; results land exactly as with HL7."""

from __future__ import annotations

import socket

import pytest
from sqlalchemy import func, select

from lis import astm
from lis.demo import CBC, SYSMEX_NAMES
from lis.models import Message, Result
from tests.lis.messages import VALUES


@pytest.fixture
def server(committed_lab):
    srv = astm.make_server(committed_lab["factory"], "127.0.0.1", 0)
    srv.start()
    yield srv
    srv.stop()


def _records(barcode: str, values=VALUES) -> list[str]:
    records = ["H|\\^&|||XN-1000^Sysmex^11001^^^^12345678||||||||E1394-97",
               "P|1|||MRN001|^Nguyen Van An||19800101|M",
               f"O|1||^^          {barcode}^B||^^^^WBC\\^^^^RBC|||||||N||||||||||||||F",
               "C|1|I|Mau lay luc doi^^|G"]
    for n, ((code, *_rest), value) in enumerate(zip(CBC, values, strict=True), start=1):
        records.append(f"R|{n}|^^^^{SYSMEX_NAMES.get(code, code)}^1|{value}|10*3/uL||N||F||||20261201083000")
    records.append("L|1|N")
    return records


class Analyser:
    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)

    def say(self, data: bytes) -> bytes:
        self.sock.sendall(data)
        return self.sock.recv(1)


def test_a_sysmex_transmission_with_a_bad_checksum_and_a_repeated_frame(server, committed_lab):
    analyser = Analyser(server.server_address[1])
    assert analyser.say(astm.ENQ) == astm.ACK
    frames = astm.frames(_records(committed_lab["blood"]))
    assert len(frames) == 30
    broken = frames[1][:-4] + b"00\r\n"  # wrong checksum
    assert analyser.say(broken) == astm.NAK
    for i, frame in enumerate(frames):
        assert analyser.say(frame) == astm.ACK, i
        if i == 3:
            assert analyser.say(frame) == astm.ACK  # our ACK was lost: the repeat is not used twice
    analyser.sock.sendall(astm.EOT)
    # the next transmission on the same connection: an unknown tube
    assert analyser.say(astm.ENQ) == astm.ACK
    for frame in astm.frames(_records("UNKNOWN-TUBE")):
        assert analyser.say(frame) == astm.ACK
    analyser.sock.sendall(astm.EOT)
    analyser.sock.close()

    with committed_lab["factory"]() as session:
        rows = session.execute(select(Message.status, Message.error_reason, Message.sender)
                               .order_by(Message.id)).all()
        assert rows[0][0] == "rejected" and rows[0][1].startswith("checksum 00 does not match")
        assert rows[1:] == [("applied", None, "XN-1000^Sysmex"),
                            ("unmatched", "specimen id UNKNOWN-TUBE is not registered", "XN-1000^Sysmex")]
        values = {r.test.code: r for r in session.scalars(select(Result))}
        assert sorted(r.value for r in values.values()) == sorted(VALUES)
        assert values["NEU#"].value == "4.1" and values["WBC"].note is None  # the C record was the order's
        assert session.scalar(select(func.count()).select_from(Result)) == 25


def test_a_long_record_split_over_frames_and_a_repeat_of_a_whole_message(server, committed_lab):
    records = ["H|\\^&|||XN-1000^Sysmex||||||||E1394-97", f"O|1||{committed_lab['serum']}",
               "R|1|^^^GLU|5.6|mmol/L|3.9-6.4|N||F", "C|1|I|Mẫu hơi đục " + "x" * 400 + "|G", "L|1|N"]
    frames = astm.frames(records)
    assert [f[-5:-4] for f in frames].count(astm.ETB) == 1  # the comment is continued over two frames
    for _ in range(2):  # the same message twice: stored once
        analyser = Analyser(server.server_address[1])
        assert analyser.say(astm.ENQ) == astm.ACK
        for frame in frames:
            assert analyser.say(frame) == astm.ACK
        analyser.sock.sendall(astm.EOT)
        analyser.sock.close()
    with committed_lab["factory"]() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 1
        [result] = session.scalars(select(Result)).all()
        assert (result.test.code, result.value, result.note) == ("GLU", "5.6", "Mẫu hơi đục " + "x" * 400)


def test_checksums_follow_lis1_a():
    body = b"1H|\\^&\r" + astm.ETX
    assert astm.checksum(body) == f"{sum(body) % 256:02X}".encode()
    assert astm.frames(["L|1|N"]) == [b"\x021L|1|N\r\x03" + astm.checksum(b"1L|1|N\r\x03") + b"\r\n"]

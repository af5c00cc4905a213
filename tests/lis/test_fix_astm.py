"""An ASTM message whose store fails is taken back with its NAK: the repeated frame stores it once,
with the bytes as sent."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from lis import astm
from lis.models import Message, Result


def test_a_failed_store_is_answered_nak_and_the_repeat_is_stored_once(committed_lab, monkeypatch):
    records = ["H|\\^&|||XN-1000^Sysmex||||||||E1394-97", f"O|1||{committed_lab['serum']}",
               "R|1|^^^GLU|5.6|mmol/L|3.9-6.4|N||F", "L|1|N"]
    frames = astm.frames(records)
    receiver = astm.Receiver(committed_lab["factory"], "10.0.0.5:4000")
    real, calls = astm.process, []

    def fails_once(session, raw, peer=None, **kw):
        calls.append(raw)
        if len(calls) == 1:
            raise OperationalError("INSERT", {}, Exception("the database went away"))
        return real(session, raw, peer, **kw)

    monkeypatch.setattr(astm, "process", fails_once)
    assert receiver.feed(astm.ENQ) == astm.ACK
    for frame in frames[:-1]:
        assert receiver.feed(frame) == astm.ACK
    assert receiver.feed(frames[-1]) == astm.NAK  # the L record could not be stored
    assert receiver.feed(frames[-1]) == astm.ACK  # the sender repeats it
    receiver.feed(astm.EOT)
    sent = "".join(r + "\r" for r in records).encode()
    assert calls == [sent, sent]
    with committed_lab["factory"]() as session:
        [stored] = session.scalars(select(Message)).all()
        assert (stored.raw, stored.status) == (sent, "applied")
        assert session.scalar(select(func.count()).select_from(Result)) == 1


def test_a_failed_store_of_a_record_continued_over_frames_is_taken_back_whole(committed_lab, monkeypatch):
    records = ["H|\\^&|||XN-1000^Sysmex||||||||E1394-97", f"O|1||{committed_lab['serum']}",
               "R|1|^^^GLU|5.6|mmol/L|3.9-6.4|N||F", "L|1|N" + " " * 300]
    frames = astm.frames(records)
    assert frames[-2][-5:-4] == astm.ETB  # the terminator record spans the last two frames
    receiver = astm.Receiver(committed_lab["factory"])
    real, calls = astm.process, []

    def fails_once(session, raw, peer=None, **kw):
        calls.append(raw)
        if len(calls) == 1:
            raise OperationalError("INSERT", {}, Exception("the database went away"))
        return real(session, raw, peer, **kw)

    monkeypatch.setattr(astm, "process", fails_once)
    receiver.feed(astm.ENQ)
    for frame in frames[:-1]:
        assert receiver.feed(frame) == astm.ACK
    assert receiver.feed(frames[-1]) == astm.NAK
    assert receiver.feed(frames[-1]) == astm.ACK
    sent = "".join(r + "\r" for r in records).encode()
    assert calls == [sent, sent]

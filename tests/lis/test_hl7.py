"""The fast parser and the MLLP framer on their own: delimiters read from MSH-1/MSH-2, escapes,
repetitions, charsets, NTE and Z-segments, times; frames split, merged, noisy, over-long."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lis import hl7, mllp
from lis.hl7 import Hl7Error


def test_delimiters_come_from_the_message_and_escapes_are_decoded():
    raw = ("MSH#$*@!#LAB#X#####ORU$R01#1#P#2.4\r"
           "OBX#1#ST#NOTE$Ghi chú#1#Dương tính @F@ mạnh @S@ 3+@.br@lặp#  #  #H*A\r").encode()
    msg = hl7.parse(raw)
    assert msg.d == hl7.Delimiters("#", "$", "*", "@", "!")
    assert msg.type == ("ORU", "R01") and msg.sender == "LAB^X"
    obx = msg.segments[1]
    assert obx.value(5) == "Dương tính # mạnh $ 3+\nlặp"
    assert obx.repetitions(8) == ["H", "A"] and obx.component(3, 2) == "Ghi chú"


def test_groups_under_obr_with_nte_and_z_segments():
    raw = (b"MSH|^~\\&|A|B|||20261201||ORU^R01|1|P|2.3.1\rPID|1\rOBR|1||T1\rOBX|1|NM|GLU||5.5|mmol/L|||||F|||"
           b"20261201083000\rNTE|1||lipemic\rZQC|x\rOBR|2||T2\rOBX|1|SN|K||<^2.0|mmol/L|||||P\r"
           b"OBX|2|ED|PDF||^application^pdf^Base64^AAAA\r")
    first, second = hl7.results_of(hl7.parse(raw))
    assert first.candidates == {"OBR-3": "T1"} and second.candidates == {"OBR-3": "T2"}
    [glu] = first.observations
    assert (glu.value, glu.notes, glu.observed_at) == ("5.5", ["lipemic"], datetime(2026, 12, 1, 1, 30, tzinfo=UTC))
    assert [(o.code, o.value, o.status) for o in second.observations] == [("K", "<2.0", "P")]


@pytest.mark.parametrize(("raw", "ack", "code"), [
    (b"PID|1", "AR", "100"),
    (b"MSH|^~\\&|A|B|||x||ORU^R01|1|P|2.5.1||||||KOI8-R", "AE", "103"),
    (b"MSH|^~\\&|A|B|||x||ORU^R01|1|P|2.5.1\rOB X|bad", "AE", "100"),
    (b"MSH|^~\\&|A|B|||x||ORU^R01|1|P|2.5.1||||||8859/1\rOBX|1|NM|A||12.5.3", "AE", "102"),
])
def test_what_cannot_be_read_says_why(raw, ack, code):
    with pytest.raises(Hl7Error) as refused:
        hl7.results_of(hl7.parse(raw))
    assert (refused.value.ack, refused.value.code) == (ack, code)


def test_latin_1_is_read_when_declared():
    raw = "MSH|^~\\&|A|B|||x||ORU^R01|1|P|2.4||||||8859/1\rPID|1||||Müller".encode("latin-1")
    assert hl7.parse(raw).segments[1].value(5) == "Müller"


def test_frames_split_merged_noisy_and_over_long():
    reader = mllp.FrameReader(max_bytes=20)
    data = b"\r\n\x00" + mllp.frame(b"MSH|one") + b"junk" + mllp.frame(b"MSH|two")
    out = []
    for i in range(len(data)):  # one byte per read: the end block straddles reads
        out += reader.feed(data[i:i + 1])
    assert [(f.kind, f.data) for f in out] == [("message", b"MSH|one"), ("message", b"MSH|two")]
    big = mllp.frame(b"MSH|" + b"x" * 100)
    got = reader.feed(big[:50]) + reader.feed(big[50:-1]) + reader.feed(big[-1:]) + reader.feed(mllp.frame(b"MSH|3"))
    assert [(f.kind, f.size) for f in got] == [("oversized", 104), ("message", 0)]
    assert got[0].data.startswith(b"MSH|xx")
    cut = reader.feed(b"\x0bMSH|cut" + mllp.frame(b"MSH|next"))
    assert [(f.kind, f.data) for f in cut] == [("truncated", b"MSH|cut"), ("message", b"MSH|next")]

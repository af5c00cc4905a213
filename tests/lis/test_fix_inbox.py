"""The HL7 edge after review: reprocessing locks the message and keeps its new answer, a repeated
host query replays its answers as separate frames, table 0357 codes, and training or debugging
messages that are never applied to real patients."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select, text

from lis import hl7, inbox, specimens
from lis.models import Message, Result
from tests.lis.conftest import TODAY
from tests.lis.messages import glucose_oru


def _msa(answer: bytes) -> tuple[str, str]:
    msa = hl7.parse(answer).find("MSA")
    return msa.value(1), msa.value(2)


def _err(answer: bytes) -> str:
    return hl7.parse(answer).find("ERR").raw(1)


def _count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def test_a_resolved_message_repeated_by_the_analyser_is_answered_aa(db_session, lab):
    frame = glucose_oru("999999999", "U1")
    [first] = inbox.process(db_session, frame, today=TODAY)
    assert _msa(first) == ("AE", "U1")
    row = db_session.scalars(select(Message)).one()
    assert inbox.reprocess(db_session, lab["doctor"], row, barcode=lab["serum"], today=TODAY) == "AA"
    [again] = inbox.process(db_session, frame, today=TODAY)
    assert _msa(again) == ("AA", "U1") and hl7.parse(again).find("ERR") is None
    assert (_count(db_session, Message), _count(db_session, Result)) == (1, 1)
    with pytest.raises(inbox.InboxError) as twice:
        inbox.reprocess(db_session, lab["doctor"], row, barcode=lab["serum"], today=TODAY)
    assert twice.value.code == "already_applied" and _count(db_session, Result) == 1


def test_two_staff_reprocessing_one_message_apply_it_once(committed_lab):
    factory, doctor = committed_lab["factory"], committed_lab["doctor"]
    with factory() as session:
        inbox.process(session, glucose_oru("999999999", "U2"), today=TODAY)
        session.commit()
        message_id = session.scalars(select(Message.id)).one()
    first = factory()
    assert inbox.reprocess(first, doctor, first.get(Message, message_id), barcode=committed_lab["serum"],
                           today=TODAY) == "AA"
    outcome: list = []

    def second():
        with factory() as session:
            try:
                outcome.append(inbox.reprocess(session, doctor, session.get(Message, message_id),
                                               barcode=committed_lab["serum"], today=TODAY))
                session.commit()
            except inbox.InboxError as exc:
                session.rollback()
                outcome.append(exc.code)

    thread = threading.Thread(target=second)
    thread.start()
    for _ in range(200):
        with factory() as probe:
            if probe.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                 "AND datname = current_database()")) or not thread.is_alive():
                break
        thread.join(0.05)
    first.commit()
    first.close()
    thread.join(30)
    assert outcome == ["already_applied"]
    with factory() as session:
        assert _count(session, Result) == 1


QRY = ("MSH|^~\\&|BS-480|Mindray|||20261201090000||QRY^Q02|{control}|P|2.3.1||||||ASCII\r"
       "QRD|20261201090000|R|D|1|||RD|{barcode}|OTH|||T\r"
       "QRF|BS-480|20261201000000|20261201235959|||RCT|COR|ALL||\r")


def test_a_repeated_host_query_gets_its_two_answers_as_two_frames(db_session, lab):
    qry = QRY.format(control="Q7", barcode=lab["serum"]).encode()
    first = inbox.process(db_session, qry, today=TODAY)
    again = inbox.process(db_session, qry, today=TODAY)
    assert again == first and len(again) == 2
    assert [hl7.parse(a).type for a in again] == [("QCK", "Q02"), ("DSR", "Q03")]
    assert all(a.count(b"MSH|") == 1 for a in again)
    assert _count(db_session, Message) == 1


def test_an_unmapped_test_code_is_103_and_a_rejected_specimen_207(db_session, lab):
    [unmapped] = inbox.process(db_session, glucose_oru(lab["serum"], "T1", test="777"), today=TODAY)
    assert _msa(unmapped) == ("AE", "T1") and _err(unmapped).endswith("^103&&HL70357")
    specimens.reject(db_session, lab["doctor"], specimens.by_barcode(db_session, lab["serum"]), "Vỡ ống")
    [refused] = inbox.process(db_session, glucose_oru(lab["serum"], "T2"), today=TODAY)
    assert _msa(refused) == ("AE", "T2") and _err(refused).endswith("^207&&HL70357")
    stored = db_session.scalars(select(Message).order_by(Message.id.desc()).limit(1)).one()
    assert (stored.error_code, stored.status) == ("207", "error")
    assert stored.error_reason.endswith("was rejected at the laboratory (unsuitable sample): its results are not "
                                        "accepted")
    assert _count(db_session, Result) == 0


@pytest.mark.parametrize("processing, mode", [("T", "training"), ("D", "debugging")])
def test_training_and_debugging_messages_are_not_applied_to_patients(db_session, lab, processing, mode):
    frame = glucose_oru(lab["serum"], "TR1").replace(b"|TR1|P|", f"|TR1|{processing}|".encode())
    [answer] = inbox.process(db_session, frame, today=TODAY)
    assert _msa(answer) == ("AR", "TR1") and _err(answer) == "MSH^1^11^202&&HL70357"
    stored = db_session.scalars(select(Message)).one()
    assert (stored.status, stored.error_code, stored.raw) == ("rejected", "202", frame)
    assert stored.error_reason == (f"processing id {processing} ({mode}) is not applied to patients: send "
                                   "production messages with MSH-11 = P")
    assert _count(db_session, Result) == 0
    assert specimens.by_barcode(db_session, lab["serum"]).status == "received"
    assert inbox.process(db_session, frame, today=TODAY) == [answer] and _count(db_session, Message) == 1

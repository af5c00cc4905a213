"""The HL7 message store and result recording, inside one rolled-back transaction: every ACK code,
what is stored for each, and that a refused message changes nothing else."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select

from lis import hl7, inbox
from lis.models import Message, Result, Specimen
from tests.lis.conftest import TODAY
from tests.lis.messages import cbc_oru, glucose_oru, oul_r22


def _ack(answer: bytes) -> hl7.Message:
    return hl7.parse(answer)


def _msa(answer: bytes) -> tuple[str, str]:
    msa = _ack(answer).find("MSA")
    return msa.component(1), msa.component(2)


def _err(answer: bytes) -> str:
    return _ack(answer).find("ERR").value(1) or _ack(answer).find("ERR").value(3)


def _count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def test_a_cbc_message_is_stored_then_its_25_results_recorded(db_session, lab):
    [answer] = inbox.process(db_session, cbc_oru(lab["blood"], "MSG0001"), "10.1.1.5:4000", today=TODAY)
    assert _msa(answer) == ("AA", "MSG0001")
    ack = _ack(answer)
    assert ack.type == ("ACK", "R01") and ack.version == "2.3.1" and ack.msh.value(5) == "BC-5380"
    stored = db_session.scalars(select(Message)).one()
    assert (stored.status, stored.sender, stored.control_id, stored.message_type, stored.results_count) == (
        "applied", "BC-5380^Mindray", "MSG0001", "ORU^R01", 25)
    assert stored.analyser_id == lab["analysers"]["BC5380"] and stored.ack == answer
    rows = {r.test.code: r for r in db_session.scalars(select(Result))}
    assert len(rows) == 25
    hgb = rows["HGB"]
    assert (hgb.value, hgb.numeric_value, hgb.unit, hgb.reference_range, hgb.flag, hgb.stage, hgb.version) == (
        "142", Decimal("142"), "g/L", "130-170", None, "preliminary", 1)  # the male range, not the analyser's
    assert rows["WBC"].analyser_flags == "N"
    specimen = db_session.scalar(select(Specimen).where(Specimen.barcode == lab["blood"]))
    assert specimen.status == "resulted"


def test_an_exact_repeat_gets_the_same_answer_and_stores_nothing(db_session, lab):
    message = cbc_oru(lab["blood"], "MSG0002")
    [first] = inbox.process(db_session, message, today=TODAY)
    [again] = inbox.process(db_session, message, today=TODAY)
    assert again == first
    assert _count(db_session, Message) == 1 and _count(db_session, Result) == 25


def test_the_same_control_id_with_new_content_is_a_new_message(db_session, lab):
    """Mindray BS counters restart at 1 after a reboot: the content decides."""
    inbox.process(db_session, glucose_oru(lab["serum"], "1", "5.4"), today=TODAY)
    [answer] = inbox.process(db_session, glucose_oru(lab["serum"], "1", "5.9"), today=TODAY)
    assert _msa(answer) == ("AA", "1")
    versions = db_session.scalars(select(Result).order_by(Result.version)).all()
    assert [(r.version, r.value, r.superseded_at is not None) for r in versions] == [(1, "5.4", True),
                                                                                     (2, "5.9", False)]
    assert versions[0].note == "Mau hoi vang\nda kiem tra lai"


def test_an_unknown_specimen_waits_in_the_unmatched_inbox_and_is_answered_ae(db_session, lab):
    [answer] = inbox.process(db_session, cbc_oru("999999999", "MSG0003"), today=TODAY)
    assert _msa(answer) == ("AE", "MSG0003")
    assert _err(answer) == "OBR^1^3^204&&HL70357"
    stored = db_session.scalars(select(Message)).one()
    assert (stored.status, stored.error_code, stored.specimen_barcodes) == ("unmatched", "204", "999999999")
    assert stored.error_reason == "specimen id 999999999 is not registered"
    assert _count(db_session, Result) == 0
    # lab staff recognise the tube: the results go to the chosen specimen
    assert inbox.reprocess(db_session, lab["doctor"], stored, barcode=lab["blood"], today=TODAY) == "AA"
    assert stored.status == "resolved" and stored.resolved_by == "bs.lab" and _count(db_session, Result) == 25


def test_oul_r22_2_5_1_uses_the_container_id_and_answers_with_err_3(db_session, lab):
    [answer] = inbox.process(db_session, oul_r22(lab["serum"], "LAW-7", {"2951-2": "141", "2823-3": "7.1"}),
                             today=TODAY)
    assert _msa(answer) == ("AA", "LAW-7")
    assert _ack(answer).msh.value(9) == "ACK^R22^ACK"
    k = db_session.scalar(select(Result).where(Result.value == "7.1"))
    assert (k.test.code, k.flag, k.critical) == ("K", "HH", True)
    [bad] = inbox.process(db_session, oul_r22("NOPE", "LAW-8", {"2951-2": "141"}), today=TODAY)
    err = _ack(bad).find("ERR")
    assert _msa(bad) == ("AE", "LAW-8")
    assert (err.value(2), err.value(3), err.value(4)) == ("SAC^1^3", "204^^HL70357", "E")  # where the id was


def test_refusals_store_the_raw_message_with_its_reason_and_nothing_else(db_session, lab):
    cases = [
        (b"garbage without header", "AR", "", "100", "message does not start with an MSH segment"),
        (b"MSH|^~\\&|X|Y|||20261201||ADT^A01|C1|P|2.3.1", "AR", "C1", "200", "message type ADT^A01 is not supported"),
        (b"MSH|^~\\&|X|Y|||20261201||ORU^R01|C2|P|2.2", "AR", "C2", "203", "version 2.2 is not supported"),
        (b"MSH|^~\\&|X|Y|||20261201||ORU^R01||P|2.3.1", "AE", "", "101", "MSH-10 message control id is missing"),
        (b"MSHab|X|Y", "AE", "", "102", "unusable encoding characters in MSH-1/MSH-2"),
        (cbc_oru(lab["blood"], "C3", values=["6,5", *["1"] * 24]), "AE", "C3", "102",
         "OBX-5 value '6,5' is not a number (NM)"),
        (cbc_oru(lab["blood"], "C4", charset="UNICODE UTF-8").replace("Nguyễn".encode(), b"Nguy\xff"), "AE", "C4",
         "102", "bytes not valid in the declared character set UNICODE UTF-8"),
        (glucose_oru(lab["serum"], "C5", test="777"), "AE", "C5", "103",
         "test code 777 is not mapped for this analyser"),
    ]
    for raw, code, control, err, reason in cases:
        [answer] = inbox.process(db_session, raw, today=TODAY)
        assert _msa(answer) == (code, control), raw
        stored = db_session.scalars(select(Message).order_by(Message.id.desc()).limit(1)).one()
        assert (stored.raw, stored.error_code, stored.error_reason, stored.ack_code) == (raw, err, reason, code)
        assert stored.status in ("rejected", "error")
    assert _count(db_session, Result) == 0
    assert {s.status for s in db_session.scalars(select(Specimen))} == {"received"}


def test_lf_separated_messages_and_escapes_are_read(db_session, lab):
    raw = cbc_oru(lab["blood"], "LF1", sep="\n", name="^Ph\\S\\m Văn Đức")
    [answer] = inbox.process(db_session, raw, today=TODAY)
    assert _msa(answer) == ("AA", "LF1")
    assert _count(db_session, Result) == 25


def test_a_rejected_specimen_is_refused(db_session, lab):
    from lis import specimens

    specimen = specimens.by_barcode(db_session, lab["serum"])
    specimens.reject(db_session, lab["doctor"], specimen, "Vỡ ống")
    [answer] = inbox.process(db_session, glucose_oru(lab["serum"], "R1"), today=TODAY)
    assert _msa(answer) == ("AE", "R1")
    stored = db_session.scalars(select(Message)).one()
    assert (stored.error_code, stored.error_reason) == (
        "207", f"specimen {lab['serum']} was rejected at the laboratory (unsuitable sample): its results are not "
               "accepted")
    assert _count(db_session, Result) == 0


def test_a_quality_control_run_is_kept_but_not_applied(db_session, lab):
    raw = glucose_oru(lab["serum"], "QC1").replace(b"||||0||ASCII", b"||||2||ASCII")
    [answer] = inbox.process(db_session, raw, today=TODAY)
    assert _msa(answer) == ("AA", "QC1")
    stored = db_session.scalars(select(Message)).one()
    assert (stored.status, stored.error_reason) == ("answered", "quality control run: kept in the store, not "
                                                                "applied to a patient")
    assert _count(db_session, Result) == 0


def test_a_sender_asking_for_an_accept_acknowledgment_gets_ca_or_ce(db_session, lab):
    raw = oul_r22(lab["serum"], "EN1", {"2951-2": "140"}).replace(b"|||NE|AL|", b"|||AL|NE|")
    [answer] = inbox.process(db_session, raw, today=TODAY)
    assert _msa(answer) == ("CA", "EN1")
    [refused] = inbox.process(db_session, oul_r22("NOPE", "EN2", {"2951-2": "140"}).replace(b"|||NE|AL|",
                                                                                           b"|||AL|NE|"), today=TODAY)
    assert _msa(refused) == ("CE", "EN2")


def test_a_message_is_reprocessed_from_the_store_after_the_code_is_mapped(db_session, lab):
    from lis.models import AnalyserCode, LabTest

    [answer] = inbox.process(db_session, glucose_oru(lab["serum"], "RP1", test="777"), today=TODAY)
    assert _msa(answer) == ("AE", "RP1")
    stored = db_session.scalars(select(Message)).one()
    assert inbox.reprocess(db_session, lab["doctor"], stored, today=TODAY) == "AE"  # nothing fixed yet
    assert (stored.status, stored.attempts, _count(db_session, Result)) == ("error", 1, 0)
    glucose = db_session.scalar(select(LabTest).where(LabTest.code == "GLU"))
    db_session.add(AnalyserCode(analyser_id=lab["analysers"]["BS480"], code="777", test_id=glucose.id))
    db_session.flush()
    assert inbox.reprocess(db_session, lab["doctor"], stored, today=TODAY) == "AA"
    assert (stored.status, stored.error_reason, stored.results_count) == ("applied", None, 1)
    assert db_session.scalars(select(Result)).one().value == "5.4"
    with pytest.raises(inbox.InboxError):
        inbox.reprocess(db_session, lab["doctor"], stored, today=TODAY)


@pytest.mark.parametrize("version", ["2.3.1", "2.4", "2.5.1"])
def test_oru_r01_is_accepted_in_each_version(db_session, lab, version):
    [answer] = inbox.process(db_session, cbc_oru(lab["blood"], f"V{version}", version=version), today=TODAY)
    assert _msa(answer) == ("AA", f"V{version}")
    assert _ack(answer).msh.value(9) == ("ACK^R01^ACK" if version == "2.5.1" else "ACK^R01")
    assert _count(db_session, Result) == 25


def test_a_database_outage_is_answered_ar_never_aa(lab):
    from core.db import make_engine, make_session_factory

    down = make_session_factory(make_engine("postgresql+psycopg://postgres@127.0.0.1:1/none",
                                            connect_args={"connect_timeout": 1}))
    [answer] = inbox.handle(down, cbc_oru(lab["blood"], "DOWN1"))
    assert _msa(answer) == ("AR", "DOWN1")
    err = _ack(answer).find("ERR").value(1)
    assert err == "MSH^^^207&&HL70357"


@pytest.mark.tubes_at_ward
def test_a_result_for_a_tube_the_lab_has_not_received_waits_until_it_is(db_session, lab):
    from core.audit import Actor
    from lis import specimens

    [answer] = inbox.process(db_session, glucose_oru(lab["serum"], "NR1"), today=TODAY)
    assert _msa(answer) == ("AE", "NR1") and _err(answer) == "OBR^1^2^207&&HL70357"
    stored = db_session.scalars(select(Message)).one()
    assert (stored.status, stored.specimen_barcodes) == ("error", lab["serum"])
    assert stored.error_reason == (f"specimen {lab['serum']} has not been received at the laboratory: receive the "
                                   "tube, then the message can be applied")
    assert _count(db_session, Result) == 0
    assert specimens.by_barcode(db_session, lab["serum"]).status == "ordered"
    specimens.receive(db_session, Actor.system("test"), lab["serum"])
    assert inbox.reprocess(db_session, Actor.system("test"), stored) == "AA"
    assert [r.value for r in db_session.scalars(select(Result))] == ["5.4"]


def test_a_result_for_a_test_not_ordered_on_the_tube_is_refused_unless_the_profile_skips_it(db_session, lab):
    from lis.models import Analyser

    # glucose (code 1) is ordered on the serum tube, not on the EDTA blood tube
    [answer] = inbox.process(db_session, glucose_oru(lab["blood"], "UR1"), today=TODAY)
    assert _msa(answer) == ("AE", "UR1") and _err(answer) == "OBX^1^3^103&&HL70357"
    stored = db_session.scalars(select(Message)).one()
    assert (stored.status, stored.error_reason) == ("error", f"test GLU was not ordered on specimen {lab['blood']}")
    assert _count(db_session, Result) == 0
    mindray = db_session.scalar(select(Analyser).where(Analyser.sender == "BS-480^Mindray"))
    mindray.quirks = {**(mindray.quirks or {}), "ignore_unrequested": True}
    db_session.commit()
    [answer] = inbox.process(db_session, glucose_oru(lab["blood"], "UR2"), today=TODAY)
    assert _msa(answer) == ("AA", "UR2") and _count(db_session, Result) == 0

"""Bidirectional HL7 with analysers: answering host queries (QRY^Q02 → QCK^Q02 + DSR^Q03 as Mindray
BS asks; QBP^Q11 → RSP^K11 as IHE LAW asks) with a specimen's pending tests, and building the
order download (ORM^O01 or OML^O21) sent when a specimen is received."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from his.models.patients import Patient
from lis import catalog, hl7
from lis.hl7 import Delimiters, escape
from lis.models import Analyser, Result, Specimen

SEX = {"male": "M", "female": "F"}


def pending_tests(session: Session, specimen: Specimen):
    done = set(session.scalars(select(Result.test_id).where(Result.specimen_id == specimen.id,
                                                            Result.superseded_at.is_(None))))
    return [r.test for r in specimen.requests if r.test_id not in done]


def _lookup(session: Session, barcode: str) -> Specimen | None:
    specimen = session.scalar(select(Specimen).where(Specimen.barcode == barcode.strip()))
    if specimen is None or specimen.status == "rejected":
        return None
    return specimen


def _code(analyser: Analyser | None, test) -> str:
    return catalog.analyser_code(analyser, test) if analyser is not None else test.code


def _birth(patient: Patient) -> str:
    return patient.birth_date.strftime("%Y%m%d") if patient.birth_date else str(patient.birth_year)


def _name(patient: Patient, d: Delimiters) -> str:
    return escape(patient.full_name, d)


def answer(session: Session, msg: hl7.Message) -> list[bytes]:
    analyser = session.scalar(select(Analyser).where(Analyser.sender == msg.sender, Analyser.active.is_(True)))
    if msg.type == ("QRY", "Q02"):
        return _answer_qry(session, msg, analyser)
    return [_answer_qbp(session, msg, analyser)]


def _reply_msh(msg: hl7.Message, kind: str) -> list[str]:
    return hl7.msh(kind, msg.version, sender=(msg.msh.raw(5) or "VNHIS", msg.msh.raw(6) or "LIS"),
                   receiver=(msg.msh.raw(3), msg.msh.raw(4)), d=msg.d)


def _answer_qry(session: Session, msg: hl7.Message, analyser: Analyser | None) -> list[bytes]:
    d, c = msg.d, msg.d.component
    qrd = msg.find("QRD")
    barcode = qrd.component(8) if qrd is not None else ""
    specimen = _lookup(session, barcode) if barcode else None
    tests = pending_tests(session, specimen) if specimen else []
    found = "OK" if tests else "NF"
    control = escape(msg.control_id, d)
    qck = hl7.build([_reply_msh(msg, f"QCK{c}Q02"), ["MSA", "AA", control], ["ERR", "0"], ["QAK", "SR", found]], d)
    if not tests:
        return [qck]
    patient = session.get(Patient, specimen.patient_id)
    rows = [("1", patient.code), ("2", ""), ("3", _name(patient, d)), ("4", _birth(patient)),
            ("5", SEX.get(patient.sex, "U")), ("21", escape(specimen.barcode, d)), ("22", str(specimen.id)),
            ("23", hl7.format_time(specimen.received_at or specimen.created_at)), ("24", "N"),
            ("26", escape(specimen.specimen_type, d))]
    rows += [(str(29 + i), f"{escape(_code(analyser, t), d)}{c}{escape(t.name, d)}{c}{c}")
             for i, t in enumerate(tests)]
    segments = [_reply_msh(msg, f"DSR{c}Q03"), ["MSA", "AA", control], ["ERR", "0"], ["QAK", "SR", "OK"],
                ["QRD", *qrd.fields[1:]] if qrd is not None else ["QRD"], ["QRF", *(msg.find("QRF").fields[1:]
                                                                                    if msg.find("QRF") else [])]]
    segments += [["DSP", number, "", value, "", ""] for number, value in rows]
    segments.append(["DSC", "", ""])
    return [qck, hl7.build(segments, d)]


def _answer_qbp(session: Session, msg: hl7.Message, analyser: Analyser | None) -> bytes:
    d, c = msg.d, msg.d.component
    qpd = msg.find("QPD")
    barcode = qpd.component(3) if qpd is not None else ""
    specimen = _lookup(session, barcode) if barcode else None
    tests = pending_tests(session, specimen) if specimen else []
    segments = [_reply_msh(msg, f"RSP{c}K11{c}RSP_K11"), ["MSA", "AA", escape(msg.control_id, d)],
                ["QAK", qpd.raw(2) if qpd is not None else "", "OK" if tests else "NF",
                 qpd.raw(1) if qpd is not None else ""],
                ["QPD", *qpd.fields[1:]] if qpd is not None else ["QPD"]]
    if tests:
        segments += order_segments(session, specimen, tests, analyser, d, with_spm=True)
    return hl7.build(segments, d)


def order_segments(session: Session, specimen: Specimen, tests, analyser: Analyser | None, d: Delimiters,
                   *, with_spm: bool, control: str = "NW") -> list[list[str]]:
    c = d.component
    patient = session.get(Patient, specimen.patient_id)
    barcode = escape(specimen.barcode, d)
    segments = [["PID", "1", "", f"{escape(patient.code, d)}{c}{c}{c}VNHIS{c}MR", "", _name(patient, d), "",
                 _birth(patient), SEX.get(patient.sex, "U")]]
    if with_spm:
        segments.append(["SPM", "1", f"{barcode}{c}", "", escape(specimen.specimen_type, d)])
        segments.append(["SAC", "", "", barcode])
    for n, test in enumerate(tests, start=1):
        segments.append(["ORC", control, barcode, "", "", "", "", "", "", hl7.format_time(specimen.created_at)])
        segments.append(["OBR", str(n), barcode, "", f"{escape(_code(analyser, test), d)}{c}{escape(test.name, d)}",
                         "", "", hl7.format_time(specimen.collected_at or specimen.created_at)])
    return segments


def _receiver(analyser: Analyser) -> tuple[str, str]:
    application, _sep, facility = analyser.sender.partition("^")
    return application, facility


def order_message(session: Session, specimen: Specimen, analyser: Analyser) -> bytes:
    """The order download for the tests of a specimen that this analyser runs."""
    d = hl7.DEFAULT
    c = d.component
    runs = {code.test_id for code in analyser.codes}
    tests = [t for t in pending_tests(session, specimen) if t.id in runs]
    if analyser.order_message == "OML^O21":
        head = hl7.msh(f"OML{c}O21{c}OML_O21", analyser.hl7_version, receiver=_receiver(analyser))
        body = order_segments(session, specimen, tests, analyser, d, with_spm=True)
    else:
        head = hl7.msh(f"ORM{c}O01", analyser.hl7_version, receiver=_receiver(analyser))
        body = order_segments(session, specimen, tests, analyser, d, with_spm=False)
    return hl7.build([head, *body], d)

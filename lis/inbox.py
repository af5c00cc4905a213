"""The HL7 edge: one received frame in, the answer frames out — the way an interface engine does it.

For each frame: parse; keep the raw message in the store; apply its results in the same
transaction; commit; only then build the AA. A well-formed message we cannot apply (unknown
specimen, unmapped test) is kept with its reason and answered AE + ERR; what we cannot parse or do
not support is kept and answered AR. A repeat (same sender, MSH-10 and content) gets the answer
stored the first time and nothing is stored again (a query's answers — QCK then DSR — replay as
the separate frames they were). A training or debugging message (MSH-11 T or D) is never applied to
real patients: it is kept as rejected and answered AR. Lab staff can resolve an unmatched message
(choose its specimen) or reprocess any message after a fix (a code mapped, a specimen registered).
"""

from __future__ import annotations

import logging
from datetime import date

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from core import audit
from core.audit import Actor
from core.db import utcnow
from lis import catalog, hl7, queries, results
from lis.hl7 import Hl7Error
from lis.models import Message

log = logging.getLogger("vnhis.lis.hl7")
ACTOR = Actor.system("hl7")
SUPPORTED = hl7.RESULT_MESSAGES | hl7.QUERY_MESSAGES | hl7.ACCEPTED_ACKS
# 204 unknown key identifier, 103 table value not found, 207 application internal error (the specimen
# exists but the lab refused it), 101 required field missing
TABLE_0357 = {"unknown_specimen": "204", "rejected_specimen": "207", "unknown_test": "103", "no_results": "101"}
APPLIED_PROCESSING = ("P", "")  # MSH-11: production (empty: senders that leave it out)
ANSWER_SEPARATOR = b"\x1c"  # between the stored answer frames of one message: never inside an HL7 message
STATUS_OF = {"unknown_specimen": "unmatched"}


def partial_message(frame: bytes) -> hl7.Message | None:
    """Enough of a broken message to address the answer (delimiters, MSH-10), or None."""
    try:
        d, _header = hl7.read_header(hl7.normalise(frame))
    except Hl7Error:
        return None
    first = hl7.normalise(frame).split(b"\r", 1)[0].decode("latin-1")
    return hl7.Message(frame, [hl7.Segment("MSH", ["MSH", d.field, *first[4:].split(d.field)], d)], d, "latin-1")


def _sender(msg: hl7.Message | None) -> str | None:
    return msg.sender[:200] if msg is not None else None


def _store(session: Session, raw: bytes, peer: str | None, msg: hl7.Message | None, status: str, *,
           analyser: catalog.AnalyserInfo | None = None, error: Hl7Error | None = None, flush: bool = True) -> Message:
    row = Message(protocol="hl7", direction="in", raw=raw, peer=peer, status=status, received_at=utcnow(),
                  sender=_sender(msg), control_id=msg.control_id[:199] if msg is not None and msg.control_id else None,
                  content_hash=msg.content_hash if msg is not None else None,
                  message_type="^".join(msg.type)[:20] if msg is not None else None,
                  version=msg.version[:10] if msg is not None else None,
                  analyser_id=analyser.id if analyser else None)
    if error is not None:
        row.error_code, row.error_location, row.error_reason = error.code, error.location[:40], error.text
    session.add(row)
    if flush:
        session.flush()
    return row


def _answer(row: Message, msg: hl7.Message | None, code: str, error: Hl7Error | None = None) -> bytes:
    row.ack_code, row.ack = code, hl7.ack(msg, code, error)
    row.processed_at = utcnow()
    return row.ack


def _profile(session: Session, sender: str | None) -> catalog.AnalyserInfo | None:
    return catalog.snapshot(session).analysers.get(sender) if sender else None


def _apply(session: Session, row: Message, msg: hl7.Message, analyser: catalog.AnalyserInfo | None, *,
           actor: Actor = ACTOR, barcode: str | None = None, today: date | None = None,
           on_outcome=None) -> tuple[str, Hl7Error | None]:
    """Results of a stored message into the database; returns the MSA code and the error, if any."""
    try:
        groups = hl7.results_of(msg)
    except Hl7Error as exc:
        row.status = "error"
        row.error_code, row.error_location, row.error_reason = exc.code, exc.location[:40], exc.text
        if on_outcome is not None:
            on_outcome(exc.ack, exc)
        return exc.ack, exc
    return apply_groups(session, row, analyser, groups, actor=actor, barcode=barcode, today=today,
                        on_outcome=on_outcome)


def apply_groups(session: Session, row: Message, analyser: catalog.AnalyserInfo | None, groups, *, actor: Actor,
                 barcode: str | None = None, today: date | None = None,
                 on_outcome=None) -> tuple[str, Hl7Error | None]:
    """Record the results of a stored message (HL7 or ASTM) and set its status and reason.

    The checks run before the message row is flushed, so a new message is inserted once, in its
    final state (on_outcome sets its answer first), and its results after it.
    """
    try:
        with session.no_autoflush:
            planned = results.plan(session, analyser, groups, barcode)
    except results.ResultError as exc:
        text = exc.text
        if exc.kind == "rejected_specimen":
            text = f"{exc.text} at the laboratory (unsuitable sample): its results are not accepted"
        error = Hl7Error("AE", TABLE_0357[exc.kind], text, exc.location)
        row.status = STATUS_OF.get(exc.kind, "error")
        row.error_code, row.error_location, row.error_reason = error.code, exc.location[:40], text
        row.specimen_barcodes = (exc.barcode or "")[:300] or None
        if on_outcome is not None:
            on_outcome("AE", error)
        return "AE", error
    made = results.counted(planned)
    row.status = "applied" if barcode is None else "resolved"
    row.error_code = row.error_location = row.error_reason = None
    row.results_count = made.count
    row.specimen_barcodes = ",".join(made.barcodes)[:300]
    if on_outcome is not None:
        on_outcome("AA", None)
    session.flush()
    results.write(session, actor, analyser, planned, message_id=row.id, today=today)
    return "AA", None


def is_quality_control(msg: hl7.Message) -> bool:
    """Mindray BS marks QC runs with 2 in MSH-16 (not table 0155); LAW with SPM-11 = Q."""
    return msg.msh.component(16) == "2" or any(s.component(11) == "Q" for s in msg.segments if s.name == "SPM")


def _duplicate(session: Session, msg: hl7.Message) -> Message | None:
    return session.scalar(select(Message).where(Message.sender == _sender(msg), Message.control_id == msg.control_id,
                                                Message.content_hash == msg.content_hash, Message.direction == "in"))


def stored_answers(row: Message) -> list[bytes]:
    """The answer frames kept for a message, to send again to a repeat."""
    return [part for part in row.ack.split(ANSWER_SEPARATOR) if part] if row.ack else []


def _not_for_patients(msg: hl7.Message) -> Hl7Error | None:
    processing = msg.msh.component(11)
    if processing in APPLIED_PROCESSING:
        return None
    mode = {"T": "training", "D": "debugging"}.get(processing, processing)
    return Hl7Error("AR", "202", f"processing id {processing} ({mode}) is not applied to patients: "
                                 "send production messages with MSH-11 = P", "MSH^1^11")


def process(session: Session, frame: bytes, peer: str | None = None, *, today: date | None = None) -> list[bytes]:
    """Handle one frame inside the caller's transaction; the caller commits, then sends the answer."""
    try:
        msg = hl7.parse(frame)
        hl7.check_header(msg, SUPPORTED)
    except Hl7Error as exc:
        partial = partial_message(frame)
        row = _store(session, frame, peer, None, "rejected", error=exc)
        # the sender id is kept for the inbox but not as a duplicate key: a broken frame is never "the same"
        row.sender = _sender(partial)
        return [_answer(row, partial, exc.ack, exc)]
    previous = _duplicate(session, msg)
    if previous is not None:
        return stored_answers(previous)
    analyser = _profile(session, msg.sender)
    kind = msg.type
    if kind in hl7.ACCEPTED_ACKS:
        _store(session, frame, peer, msg, "answered", analyser=analyser)
        return []
    refused = _not_for_patients(msg)
    if refused is not None:
        row = _store(session, frame, peer, msg, "rejected", analyser=analyser, error=refused)
        return [_answer(row, msg, refused.ack, refused)]
    if kind in hl7.QUERY_MESSAGES:
        row = _store(session, frame, peer, msg, "answered", analyser=analyser)
        answers = queries.answer(session, msg)
        row.ack_code, row.ack, row.processed_at = "AA", ANSWER_SEPARATOR.join(answers), utcnow()
        return answers
    if is_quality_control(msg):
        row = _store(session, frame, peer, msg, "answered", analyser=analyser)
        row.error_reason = "quality control run: kept in the store, not applied to a patient"
        return [_answer(row, msg, "AA")]
    row = _store(session, frame, peer, msg, "pending", analyser=analyser, flush=False)
    _apply(session, row, msg, analyser, today=today, on_outcome=lambda code, error: _answer(row, msg, code, error))
    return [row.ack]


def handle(factory: sessionmaker, frame: bytes, peer: str | None = None, *,
           session: Session | None = None) -> list[bytes]:
    """The edge: process, commit, then answer. A repeat racing its original is answered from the store;
    a database failure is answered AR 207, never AA.

    session: the connection's own session, kept across its messages (no pool checkout and ping per
    message); emptied after each one.
    """
    own = session is None
    session = factory() if own else session
    try:
        answers = process(session, frame, peer)
        session.commit()
        return answers
    except IntegrityError:
        session.rollback()
        try:
            msg = hl7.parse(frame)
            previous = _duplicate(session, msg)
            answers = stored_answers(previous) if previous is not None else []
            session.rollback()
            if answers:
                return answers
        except (Hl7Error, SQLAlchemyError):
            session.rollback()
        return [_internal_error(factory, frame, peer, "the message conflicts with stored data")]
    except SQLAlchemyError as exc:
        session.rollback()
        log.warning("HL7 message not stored: %s", str(exc).splitlines()[0])
        return [_internal_error(factory, frame, peer, "the message could not be stored; resend later")]
    finally:
        if own:
            session.close()
        else:
            session.expunge_all()


def _internal_error(factory: sessionmaker, frame: bytes, peer: str | None, text: str) -> bytes:
    return _store_broken(factory, frame, peer, Hl7Error("AR", "207", text, "MSH"))


def oversized(factory: sessionmaker, head: bytes, size: int, peer: str | None, limit: int) -> bytes:
    """A frame longer than the limit: its beginning is kept with the reason, the answer is AR."""
    error = Hl7Error("AR", "100", f"message of {size} bytes exceeds the limit of {limit} bytes", "MSH")
    return _store_broken(factory, head, peer, error)


def truncated(factory: sessionmaker, frame: bytes, peer: str | None) -> bytes:
    """A frame cut off by the start of the next one: kept with the reason, answered AR."""
    error = Hl7Error("AR", "100", "frame truncated: a new message started before the end block", "MSH")
    return _store_broken(factory, frame, peer, error)


def _store_broken(factory: sessionmaker, raw: bytes, peer: str | None, error: Hl7Error) -> bytes:
    msg = partial_message(raw)
    try:
        with factory() as session:
            row = _store(session, raw, peer, None, "rejected", error=error)
            row.sender = _sender(msg)
            answer = _answer(row, msg, error.ack, error)
            session.commit()
            return answer
    except SQLAlchemyError:
        return hl7.ack(msg, error.ack, error)


# --- lab staff: the unmatched inbox and reprocessing ------------------------------------------

class InboxError(ValueError):
    def __init__(self, code: str, text):
        super().__init__(code)
        self.code, self.text = code, text


def reprocess(session: Session, actor: Actor, row: Message, *, barcode: str | None = None,
              today: date | None = None) -> str:
    """Apply a stored message again (after a fix), or with the specimen chosen by lab staff.

    The message row is locked first, so two reprocessings of one message (two staff, a double click)
    run one after the other and the second finds it applied. The new answer (AA once applied) is kept
    as the message's answer: a sender that repeats the message now gets AA, not the old AE."""
    row = session.get(Message, row.id, with_for_update=True, populate_existing=True)
    if row.direction != "in" or row.protocol not in ("hl7", "astm"):
        raise InboxError("not_inbound", _l("Only received messages can be reprocessed."))
    if row.status in ("applied", "resolved", "answered"):
        raise InboxError("already_applied", _l("This message has already been applied."))
    if row.protocol == "astm":
        from lis import astm

        code, error = astm.reapply(session, actor, row, barcode=barcode, today=today)
    else:
        try:
            msg = hl7.parse(row.raw)
            hl7.check_header(msg, hl7.RESULT_MESSAGES)
        except Hl7Error as exc:
            raise InboxError("unparseable", _l("This message cannot be read: %(reason)s", reason=exc.text)) from None
        code, error = _apply(session, row, msg, _profile(session, msg.sender), actor=actor, barcode=barcode,
                             today=today)
        _answer(row, msg, code, error)
    row.attempts += 1
    if barcode is not None and code == "AA":
        row.resolved_by = actor.name
    audit.record(session, actor, "lis.message.reprocess", row,
                 {"barcode": barcode, "outcome": code, "reason": error.text if error else None})
    return code


def unmatched(session: Session) -> list[Message]:
    return list(session.scalars(select(Message).where(Message.status.in_(("unmatched", "error")),
                                                      Message.direction == "in")
                                .order_by(Message.received_at.desc()).limit(200)))

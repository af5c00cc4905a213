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

import hashlib
import logging
from datetime import date

from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, insert, or_, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from core import audit
from core.audit import Actor
from core.db import is_postgresql, utcnow
from lis import catalog, hl7, queries, results
from lis.hl7 import Hl7Error
from lis.models import Message

log = logging.getLogger("vnhis.lis.hl7")
ACTOR = Actor.system("hl7")
SUPPORTED = hl7.RESULT_MESSAGES | hl7.QUERY_MESSAGES | hl7.ACCEPTED_ACKS
# 204 unknown key identifier, 103 table value not found, 207 application internal error (the specimen
# exists but the lab refused it), 101 required field missing
TABLE_0357 = {"unknown_specimen": "204", "rejected_specimen": "207", "unreceived_specimen": "207",
              "unknown_test": "103", "unrequested_test": "103", "no_results": "101"}
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
           analyser: catalog.AnalyserInfo | None = None, error: Hl7Error | None = None) -> Message:
    row = Message(protocol="hl7", direction="in", raw=raw, peer=peer, status=status, received_at=utcnow(),
                  sender=_sender(msg), control_id=msg.control_id[:199] if msg is not None and msg.control_id else None,
                  content_hash=msg.content_hash if msg is not None else None,
                  message_type="^".join(msg.type)[:20] if msg is not None else None,
                  version=msg.version[:10] if msg is not None else None,
                  analyser_id=analyser.id if analyser else None)
    if error is not None:
        row.error_code, row.error_location, row.error_reason = error.code, error.location[:40], error.text
    session.add(row)
    session.flush()
    return row


def _answer(row: Message, msg: hl7.Message | None, code: str, error: Hl7Error | None = None) -> bytes:
    row.ack_code, row.ack = code, hl7.ack(msg, code, error)
    row.processed_at = utcnow()
    return row.ack


def _profile(session: Session, sender: str | None) -> catalog.AnalyserInfo | None:
    return catalog.snapshot(session).analysers.get(sender) if sender else None


def _apply(session: Session, row: Message, msg: hl7.Message, analyser: catalog.AnalyserInfo | None, *,
           actor: Actor = ACTOR, barcode: str | None = None, today: date | None = None) -> tuple[str, Hl7Error | None]:
    """Results of a stored message into the database; returns the MSA code and the error, if any."""
    try:
        groups = hl7.results_of(msg)
    except Hl7Error as exc:
        row.status = "error"
        row.error_code, row.error_location, row.error_reason = exc.code, exc.location[:40], exc.text
        return exc.ack, exc
    return apply_groups(session, row, analyser, groups, actor=actor, barcode=barcode, today=today)


def _refusal(exc: results.ResultError) -> tuple[Hl7Error, str, str | None]:
    """The AE for results that cannot be applied, the message's status and the specimen id it named."""
    text = exc.text
    if exc.kind == "rejected_specimen":
        text = f"{exc.text} at the laboratory (unsuitable sample): its results are not accepted"
    elif exc.kind == "unreceived_specimen":
        text = f"{exc.text}: receive the tube, then the message can be applied"
    return (Hl7Error("AE", TABLE_0357[exc.kind], text, exc.location), STATUS_OF.get(exc.kind, "error"),
            (exc.barcode or "")[:300] or None)


def apply_groups(session: Session, row: Message, analyser: catalog.AnalyserInfo | None, groups, *, actor: Actor,
                 barcode: str | None = None, today: date | None = None) -> tuple[str, Hl7Error | None]:
    """Record the results of a stored message (HL7 or ASTM: reprocessing, the ASTM listener) and set its
    status and reason."""
    try:
        with session.no_autoflush:
            planned = results.plan(session, analyser, groups, barcode)
    except results.ResultError as exc:
        error, row.status, row.specimen_barcodes = _refusal(exc)
        row.error_code, row.error_location, row.error_reason = error.code, error.location[:40], error.text
        return "AE", error
    made = results.counted(planned)
    row.status = "applied" if barcode is None else "resolved"
    row.error_code = row.error_location = row.error_reason = None
    row.results_count = made.count
    row.specimen_barcodes = ",".join(made.barcodes)[:300]
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
    return _answers_of(row.ack)


def _answers_of(ack: bytes | None) -> list[bytes]:
    return [part for part in ack.split(ANSWER_SEPARATOR) if part] if ack else []


def _not_for_patients(msg: hl7.Message) -> Hl7Error | None:
    processing = msg.msh.component(11)
    if processing in APPLIED_PROCESSING:
        return None
    mode = {"T": "training", "D": "debugging"}.get(processing, processing)
    return Hl7Error("AR", "202", f"processing id {processing} ({mode}) is not applied to patients: "
                                 "send production messages with MSH-11 = P", "MSH^1^11")


def _slow(session: Session, frame: bytes, peer: str | None, msg: hl7.Message | None, error: Hl7Error | None, *,
          today: date | None) -> list[bytes]:
    """Everything but a production result message: a broken frame, an ACK, a query, a training or QC run."""
    if error is not None:
        partial = partial_message(frame)
        row = _store(session, frame, peer, None, "rejected", error=error)
        # the sender id is kept for the inbox but not as a duplicate key: a broken frame is never "the same"
        row.sender = _sender(partial)
        return [_answer(row, partial, error.ack, error)]
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
    row = _store(session, frame, peer, msg, "answered", analyser=analyser)
    row.error_reason = "quality control run: kept in the store, not applied to a patient"
    return [_answer(row, msg, "AA")]


def process(session: Session, frame: bytes, peer: str | None = None, *, today: date | None = None) -> list[bytes]:
    """Handle one frame inside the caller's transaction; the caller commits, then sends the answer."""
    return process_many(session, [(frame, peer)], today=today)[0]


class _Result:
    """A production result message on the hot path, and what becomes of it."""

    __slots__ = ("index", "frame", "peer", "msg", "key", "analyser", "groups", "error", "plan", "row")

    def __init__(self, index: int, frame: bytes, peer: str | None, msg: hl7.Message, snapshot: catalog.Snapshot):
        self.index, self.frame, self.peer, self.msg = index, frame, peer, msg
        self.key = (_sender(msg), msg.control_id[:199], hashlib.sha256(msg.raw).hexdigest())
        self.analyser = snapshot.analysers.get(msg.sender)
        self.plan, self.row = None, None
        try:
            self.groups, self.error = hl7.results_of(msg), None
        except Hl7Error as exc:
            self.groups, self.error = [], exc


def process_many(session: Session, items: list[tuple[bytes, str | None]], *,
                 today: date | None = None) -> list[list[bytes]]:
    """Handle frames (of several connections) inside the caller's transaction, in their order, as if
    each were processed alone; returns each one's answers. The result messages among them are applied
    together: one duplicate lookup, one lock and one history query for all, then one insert of their
    rows and one of their results (on PostgreSQL two round trips, the first under the specimen locks)."""
    answers: list[list[bytes] | None] = [None] * len(items)
    snapshot = catalog.snapshot(session)
    fast: list[_Result] = []
    for n, (frame, peer) in enumerate(items):
        try:
            msg, error = hl7.parse(frame), None
            hl7.check_header(msg, SUPPORTED)
        except Hl7Error as exc:
            msg, error = None, exc
        if error is None and msg.type in hl7.RESULT_MESSAGES and _not_for_patients(msg) is None \
                and not is_quality_control(msg):
            fast.append(_Result(n, frame, peer, msg, snapshot))
        else:
            answers[n] = _slow(session, frame, peer, msg, error, today=today)
    if fast:
        for item, answer in _apply_results(session, fast, snapshot, today):
            answers[item.index] = answer
    return answers


_PG_STORED = ("SELECT sender, control_id, content_hash, ack FROM lis_messages WHERE direction = 'in'"
              " AND (sender, control_id, content_hash) IN (SELECT * FROM unnest(CAST(%(senders)s AS text[]),"
              " CAST(%(controls)s AS text[]), CAST(%(hashes)s AS text[])))")
_PG_IDS = "SELECT nextval(pg_get_serial_sequence('lis_messages', 'id')) FROM generate_series(1, %(n)s)"
_MESSAGE_COLUMNS = ("id", "protocol", "direction", "sender", "control_id", "content_hash", "message_type", "version",
                    "analyser_id", "peer", "raw", "received_at", "status", "error_code", "error_location",
                    "error_reason", "ack_code", "ack", "specimen_barcodes", "results_count", "processed_at",
                    "attempts")
_PG_INSERT_MESSAGE = (f"INSERT INTO lis_messages ({', '.join(_MESSAGE_COLUMNS)})"  # noqa: S608 (constant columns)
                      f" VALUES ({', '.join(f'%({c})s' for c in _MESSAGE_COLUMNS)})")


def _stored_many(session: Session, keys: list[tuple]) -> dict[tuple, bytes | None]:
    found = session.execute(select(Message.sender, Message.control_id, Message.content_hash, Message.ack).where(
        Message.direction == "in", or_(*(and_(Message.sender == s, Message.control_id == c,
                                              Message.content_hash == h) for s, c, h in keys))))
    return {(s, c, h): ack for s, c, h, ack in found}


def _look_up(session: Session, fast: list[_Result], snapshot: catalog.Snapshot, barcodes: set[str]):
    """The stored repeats (key -> answer), new message ids (PostgreSQL), the locked specimens and their
    history. PostgreSQL: one round trip, the history read after the locks are held."""
    keys = list(dict.fromkeys(item.key for item in fast))
    if not is_postgresql(session):
        stored = _stored_many(session, keys)
        known = results.lock_specimens(session, barcodes) if barcodes else {}
        return stored, None, known, results.read_prior(session, barcodes) if barcodes else {}
    senders, controls, hashes = (list(column) for column in zip(*keys, strict=True))
    found, ids, locked, prior = results.send(session, [
        (_PG_STORED, {"senders": senders, "controls": controls, "hashes": hashes}),
        (_PG_IDS, {"n": len(keys)}),
        results.lock_statement(barcodes),
        (results.PG_PRIOR, results.prior_params(barcodes, snapshot))])
    return ({(s, c, h): ack for s, c, h, ack in found}, [i for (i,) in ids], {r.barcode: r for r in locked},
            results.prior_of(prior))


def _outcome(item: _Result, known: dict, snapshot: catalog.Snapshot, now) -> dict:
    """Check the message against the locked specimens; its row as it will be stored, answer included."""
    msg, error, status = item.msg, item.error, "error"
    barcodes = None
    if error is None:
        try:
            item.plan = results.check(known, snapshot, item.analyser, item.groups)
        except results.ResultError as exc:
            error, status, barcodes = _refusal(exc)
    made = results.counted(item.plan) if item.plan is not None else None
    code = error.ack if error is not None else "AA"
    sender, control, digest = item.key
    return {"id": None, "protocol": "hl7", "direction": "in", "sender": sender, "control_id": control,
            "content_hash": digest, "message_type": "^".join(msg.type)[:20], "version": msg.version[:10],
            "analyser_id": item.analyser.id if item.analyser else None, "peer": item.peer, "raw": item.frame,
            "received_at": now, "status": "applied" if made else status,
            "error_code": error.code if error else None, "error_location": error.location[:40] if error else None,
            "error_reason": error.text if error else None, "ack_code": code, "ack": hl7.ack(msg, code, error),
            "specimen_barcodes": ",".join(made.barcodes)[:300] if made else barcodes,
            "results_count": made.count if made else 0, "processed_at": now, "attempts": 0}


def _apply_results(session: Session, fast: list[_Result], snapshot: catalog.Snapshot, today: date | None):
    """(message, answers) for each result message: the repeats of stored ones answered from the store,
    the others checked in their order, then stored and their results written, all in two statements."""
    barcodes = {b for item in fast if item.error is None for b in results.wanted(item.analyser, item.groups)}
    stored, ids, known, prior = _look_up(session, fast, snapshot, barcodes)
    now = utcnow()
    first: dict[tuple, _Result] = {}
    for item in fast:
        if item.key in stored:
            yield item, _answers_of(stored[item.key])
        elif item.key in first:  # the same message twice in this batch: stored once, answered alike
            continue
        else:
            first[item.key] = item
            item.row = _outcome(item, known, snapshot, now)
    new = list(first.values())
    if ids is not None:
        for item, ident in zip(new, ids, strict=False):
            item.row["id"] = ident
        before = [(_PG_INSERT_MESSAGE, [item.row for item in new])] if new else []
    else:
        for item in new:
            values = {k: v for k, v in item.row.items() if k != "id"}
            item.row["id"] = session.execute(insert(Message.__table__).values(**values)).inserted_primary_key[0]
        before = []
    applied = [(item.analyser, item.plan, item.row["id"]) for item in new if item.plan is not None]
    if applied or before:
        results.write_many(session, ACTOR, applied, today=today, prior=prior, before=before)
    for item in fast:
        if item.key not in stored:
            yield item, [first[item.key].row["ack"]]


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

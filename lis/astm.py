"""ASTM E1394 / CLSI LIS2-A2 records over the LIS1-A low-level protocol on TCP (`vnhis hl7
--astm-port`): the second analyser adapter, feeding the same message store and result recording.

The sender opens with ENQ (we answer ACK), sends frames `STX FN text ETB|ETX C1 C2 CR LF` (FN the
frame number 1…7,0; C1C2 the hex sum of FN…ETB/ETX modulo 256) and closes with EOT. A frame with a
wrong checksum or number is answered NAK and the sender repeats it; a repeat of the frame we
already took is answered ACK and not used twice. ETB continues a record in the next frame, ETX
ends it. When the frame holding the terminator record (L) arrives, the message (H … L) is stored
and its results recorded and committed — only then is that last frame answered ACK, so an
acknowledged transmission is never lost. ASTM has no application answer: a message that cannot
be applied (unknown specimen) is still acknowledged and waits in the unmatched inbox.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import socketserver
import threading
from datetime import date

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from core.audit import Actor
from core.db import utcnow
from lis import catalog, hl7, inbox
from lis.models import Message
from lis.observations import Observation, SpecimenResults

ENQ, ACK, NAK, EOT = b"\x05", b"\x06", b"\x15", b"\x04"
STX, ETX, ETB, CR, LF = b"\x02", b"\x03", b"\x17", b"\r", b"\n"
MAX_FRAME_TEXT = 240  # LIS1-A: at most 247 characters per frame, 240 of them text
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
ACTOR = Actor.system("astm")
log = logging.getLogger("vnhis.lis.astm")


def checksum(body: bytes) -> bytes:
    return f"{sum(body) % 256:02X}".encode("ascii")


def frames(records: list[str], encoding: str = "utf-8") -> list[bytes]:
    """The frames that carry these records (what an analyser sends; used by tests and tools)."""
    out, number = [], 1
    for record in records:
        data = (record + "\r").encode(encoding)
        chunks = [data[i:i + MAX_FRAME_TEXT] for i in range(0, len(data), MAX_FRAME_TEXT)]
        for i, chunk in enumerate(chunks):
            end = ETX if i == len(chunks) - 1 else ETB
            body = str(number % 8).encode() + chunk + end
            out.append(STX + body + checksum(body) + CR + LF)
            number += 1
    return out


# --- records -> results -----------------------------------------------------------------------

def _fields(record: str, field: str) -> list[str]:
    return record.split(field)


def _comp(value: str, component: str, n: int) -> str:
    parts = value.split(component)
    return parts[n - 1].strip() if n - 1 < len(parts) else ""


def parse_records(text: str) -> tuple[dict, list[SpecimenResults]]:
    """H, P, O, R, C, L records (CR-separated) into the header facts and the results per specimen."""
    records = [r for r in text.replace("\n", "").split("\r") if r]
    if not records or not records[0].startswith("H") or len(records[0]) < 5:
        raise hl7.Hl7Error("AR", "100", "the message does not start with an H record", "H")
    head = records[0]
    field, repeat, component = head[1], head[2], head[3]
    h = _fields(head, field)
    header = {"sender": "^".join(c for c in (_comp(h[4] if len(h) > 4 else "", component, 1),
                                             _comp(h[4] if len(h) > 4 else "", component, 2)) if c),
              "control_id": h[2] if len(h) > 2 else "", "version": h[12] if len(h) > 12 else ""}
    groups: list[SpecimenResults] = []
    current: SpecimenResults | None = None
    last: Observation | None = None
    count = 0
    for record in records[1:]:
        f = _fields(record, field)
        kind = f[0][-1:] if f[0] else ""
        if kind == "O":
            # O-3 the LIS specimen id; O-4 the instrument's (Sysmex: rack^tube^sample no^B)
            ids = {}
            for name, n in (("O-3", 2), ("O-4", 3)):
                value = f[n] if len(f) > n else ""
                value = _comp(value, component, 3) if component in value else value.strip()
                if value:
                    ids[name] = value
            current = SpecimenResults(ids)
            groups.append(current)
        elif kind == "R":
            count += 1
            if current is None:
                current = SpecimenResults({})
                groups.append(current)
            test = f[2] if len(f) > 2 else ""
            # ^^^ALT (LIS2-A2), ^^^^WBC^1 (Sysmex: the name in the 5th component, the dilution after it)
            code = _comp(test, component, 4) or _comp(test, component, 5) or _comp(test, component, 1)
            if not code:
                raise hl7.Hl7Error("AE", "101", f"R record {count}: the test id (R-3) is missing", f"R^{count}^3")
            value = (f[3] if len(f) > 3 else "").strip()
            try:
                observed = hl7.parse_time(f[12]) if len(f) > 12 else None
            except ValueError:
                raise hl7.Hl7Error("AE", "102", f"R record {count}: R-13 is not a date/time",
                                   f"R^{count}^13") from None
            last = Observation(index=count, code=code, alt_codes=(), name="", value_type="NM" if hl7.NUMBER.fullmatch(
                value) else "ST", value=value, unit=f[4].strip() if len(f) > 4 else "",
                reference_range=f[5].strip() if len(f) > 5 else "",
                flags=[x for x in (f[6].split(repeat) if len(f) > 6 else []) if x.strip()],
                status=((f[8] if len(f) > 8 else "") or "F").strip()[:1].upper(), observed_at=observed,
                location=f"R^{count}")
            current.observations.append(last)
        elif kind == "C" and last is not None and len(f) > 3:
            last.notes.append(f[3].replace(component, " ").strip())
    return header, groups


# --- the message store ------------------------------------------------------------------------

def _analyser(session: Session, sender: str | None) -> catalog.AnalyserInfo | None:
    return catalog.snapshot(session).analysers.get(sender) if sender else None


def _text(raw: bytes) -> str:
    """ASTM names no character set: UTF-8 when the bytes are UTF-8 (Vietnamese names), else Latin-1."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def process(session: Session, raw: bytes, peer: str | None = None, *, today: date | None = None) -> Message:
    """Store one ASTM message (its records, CR-separated) and record its results; the caller commits."""
    digest = hashlib.sha256(raw).hexdigest()
    try:
        header, groups = parse_records(_text(raw))
    except hl7.Hl7Error as exc:
        row = Message(protocol="astm", direction="in", raw=raw, peer=peer, status="rejected", received_at=utcnow(),
                      error_code=exc.code, error_location=exc.location, error_reason=exc.text, processed_at=utcnow())
        session.add(row)
        session.flush()
        return row
    sender = header["sender"][:200] or None
    control = (header["control_id"] or digest[:20])[:199]
    previous = session.scalar(select(Message).where(Message.protocol == "astm", Message.sender == sender,
                                                    Message.control_id == control, Message.content_hash == digest))
    if previous is not None:
        return previous
    analyser = _analyser(session, sender)
    row = Message(protocol="astm", direction="in", raw=raw, peer=peer, status="pending", received_at=utcnow(),
                  sender=sender, control_id=control, content_hash=digest, message_type="ASTM",
                  version=header["version"][:10] or None, analyser_id=analyser.id if analyser else None)
    session.add(row)
    session.flush()
    inbox.apply_groups(session, row, analyser, groups, actor=ACTOR, today=today)
    row.processed_at = utcnow()
    return row


def reapply(session: Session, actor: Actor, row: Message, *, barcode: str | None = None,
            today: date | None = None) -> tuple[str, hl7.Hl7Error | None]:
    _header, groups = parse_records(_text(row.raw))
    return inbox.apply_groups(session, row, _analyser(session, row.sender), groups, actor=actor, barcode=barcode,
                              today=today)


def store_bad_frame(factory: sessionmaker, frame: bytes, peer: str | None, reason: str) -> None:
    try:
        with factory() as session:
            session.add(Message(protocol="astm", direction="in", raw=frame, peer=peer, status="rejected",
                                received_at=utcnow(), error_code="102", error_reason=reason, ack_code="NK"))
            session.commit()
    except SQLAlchemyError as exc:
        log.warning("bad ASTM frame not stored: %s", str(exc).splitlines()[0])


# --- the low-level protocol -------------------------------------------------------------------

class Receiver:
    """One connection's LIS1-A receiver state: bytes in, the bytes to answer out."""

    def __init__(self, factory: sessionmaker, peer: str | None = None):
        self.factory, self.peer = factory, peer
        self.buffer = bytearray()
        self.receiving = False
        self.expected = 1
        self.record = bytearray()  # a record continued over ETB frames
        self.message = bytearray()  # the records of the message in progress

    def feed(self, data: bytes) -> bytes:
        self.buffer += data
        out = bytearray()
        while self.buffer:
            first = self.buffer[:1]
            if first == ENQ:
                del self.buffer[:1]
                self.receiving, self.expected = True, 1
                self.record.clear()
                self.message.clear()
                out += ACK
            elif first == EOT:
                del self.buffer[:1]
                self.receiving = False
                if self.message:  # records without a terminator: keep what came, as a message
                    self._finish()
            elif first == STX:
                answer = self._frame()
                if answer is None:
                    break  # the frame is not complete yet
                out += answer
            else:
                del self.buffer[:1]  # noise between frames
        return bytes(out)

    def _frame(self) -> bytes | None:
        end = -1
        for i in range(1, len(self.buffer)):
            if self.buffer[i] in (0x03, 0x17):
                end = i
                break
            if self.buffer[i] == 0x02:  # a new frame began: this one was cut
                frame = bytes(self.buffer[:i])
                del self.buffer[:i]
                store_bad_frame(self.factory, frame, self.peer, "frame truncated")
                return NAK
        if end < 0:
            if len(self.buffer) > MAX_FRAME_TEXT * 4:
                frame = bytes(self.buffer)
                self.buffer.clear()
                store_bad_frame(self.factory, frame[:1024], self.peer, "frame too long")
                return NAK
            return None
        if len(self.buffer) < end + 5:
            return None
        frame = bytes(self.buffer[:end + 5])
        del self.buffer[:end + 5]
        body, sent = frame[1:end + 1], frame[end + 1:end + 3]
        if checksum(body) != sent.upper():
            store_bad_frame(self.factory, frame, self.peer,
                            f"checksum {sent.decode('latin-1')} does not match {checksum(body).decode()}")
            return NAK
        number = body[:1]
        if number == str((self.expected - 1) % 8).encode() and self.expected != 1:
            return ACK  # the sender missed our ACK and repeats the frame we already have
        if number != str(self.expected % 8).encode():
            store_bad_frame(self.factory, frame, self.peer,
                            f"frame number {number.decode('latin-1')} where {self.expected % 8} was expected")
            return NAK
        record_before, message_before = len(self.record), len(self.message)
        self.record += body[1:-1]
        if body[-1:] == ETX:
            self.message += self.record if self.record.endswith(CR) else self.record + CR
            terminator = self.record[:1] == b"L"
            if len(self.message) > MAX_MESSAGE_BYTES:
                store_bad_frame(self.factory, bytes(self.message[:1024]), self.peer, "message too long")
                self.message.clear()
            elif terminator and not self._finish():
                # not stored: the sender repeats this frame, so what it added is taken back
                del self.message[message_before:]
                del self.record[record_before:]
                return NAK
            self.record.clear()
        self.expected += 1
        return ACK

    def _finish(self) -> bool:
        raw = bytes(self.message)
        try:
            with self.factory() as session:
                process(session, raw, self.peer)
                session.commit()
        except SQLAlchemyError as exc:
            log.warning("ASTM message not stored: %s", str(exc).splitlines()[0])
            return False
        self.message.clear()
        return True


class _Connection(socketserver.BaseRequestHandler):
    server: AstmServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(self.server.idle_seconds)
        receiver = Receiver(self.server.factory, f"{self.client_address[0]}:{self.client_address[1]}")
        while True:
            try:
                data = sock.recv(65536)
                if not data:
                    return
                answer = receiver.feed(data)
                if answer:
                    sock.sendall(answer)
            except OSError:
                return
            except Exception:  # the listener must outlive any bug in one transmission
                log.exception("ASTM data from %s could not be handled", receiver.peer)
                sock.sendall(NAK)


class AstmServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], factory: sessionmaker, idle_seconds: float = 600.0):
        self.factory, self.idle_seconds = factory, idle_seconds
        super().__init__(address, _Connection)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="vnhis-astm", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def make_server(factory: sessionmaker, host: str, port: int) -> AstmServer:
    return AstmServer((host, port), factory)

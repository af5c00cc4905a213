"""Background work of the laboratory: the order download to an analyser after reception.

Imported by core.modules at start-up, which also brings in the event subscribers of lis.specimens.
"""

from __future__ import annotations

import logging
import socket

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from core import queue
from core.db import utcnow
from lis import hl7, queries, specimens
from lis.mllp import END, frame
from lis.models import Analyser, Message, Specimen

SEND_TIMEOUT_SECONDS = 10
log = logging.getLogger("vnhis.lis.jobs")


class DeliveryError(RuntimeError):
    """The analyser did not accept the order; the job is tried again later."""


def exchange(host: str, port: int, payload: bytes, timeout: float = SEND_TIMEOUT_SECONDS) -> bytes:
    """Send one framed message and read the answer frame, however many reads it takes."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(frame(payload))
        buffer = bytearray()
        while END not in buffer:
            data = sock.recv(65536)
            if not data:
                raise DeliveryError(f"{host}:{port} closed the connection without an answer")
            buffer += data
    start = buffer.find(b"\x0b")
    return bytes(buffer[start + 1:buffer.find(END)])


@queue.job(specimens.SEND_ORDER_JOB, queue="lis", max_attempts=8)
def send_order(session: Session, payload: dict) -> dict:
    """Download the pending tests of a received specimen. Every attempt is kept in the message store,
    a failed one too (in its own transaction: the job's is rolled back before the retry). The answer
    must acknowledge the control id we sent; any other answer is a failure and is retried."""
    specimen = session.get(Specimen, payload["specimen_id"])
    analyser = session.get(Analyser, payload["analyser_id"])
    runs = {code.test_id for code in analyser.codes}
    if specimen.status == "rejected":
        return {"specimen": specimen.barcode, "analyser": analyser.code, "skipped": "rejected"}
    if not any(t.id in runs for t in queries.pending_tests(session, specimen)):
        return {"specimen": specimen.barcode, "analyser": analyser.code, "skipped": "nothing pending"}
    message = queries.order_message(session, specimen, analyser)
    sent = hl7.parse(message)
    row = Message(protocol="hl7", direction="out", sender=f"VNHIS^LIS>{analyser.code}"[:200],
                  control_id=sent.control_id, content_hash=sent.content_hash, message_type="^".join(sent.type),
                  version=sent.version, analyser_id=analyser.id, peer=f"{analyser.host}:{analyser.port}",
                  raw=message, status="sent", received_at=utcnow(), specimen_barcodes=specimen.barcode)
    try:
        row.ack = _exchange(analyser, message)
        code = _accepted(analyser, sent.control_id, row.ack)
    except DeliveryError as exc:
        row.status, row.error_reason, row.processed_at = "error", str(exc), utcnow()
        _keep_failed(session, row)
        raise
    row.ack_code, row.processed_at = code, utcnow()
    session.add(row)
    session.flush()
    return {"specimen": specimen.barcode, "analyser": analyser.code, "ack": code}


def _exchange(analyser: Analyser, message: bytes) -> bytes:
    try:
        return exchange(analyser.host, analyser.port, message)
    except OSError as exc:
        raise DeliveryError(f"{analyser.code} at {analyser.host}:{analyser.port} is unreachable: {exc}") from None


def _accepted(analyser: Analyser, control_id: str, answer: bytes) -> str:
    """The MSA-1 code of an answer that accepts our message, or DeliveryError."""
    try:
        ack = hl7.parse(answer)
    except hl7.Hl7Error as exc:
        raise DeliveryError(f"{analyser.code} answered something that is not HL7: {exc.text}") from None
    msa = ack.find("MSA")
    code = msa.component(1) if msa is not None else ""
    if code not in ("AA", "CA"):
        raise DeliveryError(f"{analyser.code} refused the order with {code or 'no MSA'}")
    if msa.component(2) != control_id:
        raise DeliveryError(f"{analyser.code} acknowledged control id {msa.component(2)!r}, not the {control_id!r} "
                            "we sent")
    return code


def _keep_failed(session: Session, row: Message) -> None:
    try:
        with Session(bind=session.get_bind()) as own:
            own.add(row)
            own.commit()
    except SQLAlchemyError as exc:
        log.warning("failed order download not stored: %s", str(exc).splitlines()[0])

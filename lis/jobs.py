"""Background work of the laboratory: the order download to an analyser after reception.

Imported by core.modules at start-up, which also brings in the event subscribers of lis.specimens.
"""

from __future__ import annotations

import socket

from sqlalchemy.orm import Session

from core import queue
from core.db import utcnow
from lis import hl7, queries, specimens
from lis.mllp import END, frame
from lis.models import Analyser, Message, Specimen

SEND_TIMEOUT_SECONDS = 10


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
    specimen = session.get(Specimen, payload["specimen_id"])
    analyser = session.get(Analyser, payload["analyser_id"])
    message = queries.order_message(session, specimen, analyser)
    try:
        answer = exchange(analyser.host, analyser.port, message)
    except OSError as exc:
        raise DeliveryError(f"{analyser.code} at {analyser.host}:{analyser.port} is unreachable: {exc}") from None
    try:
        ack = hl7.parse(answer)
    except hl7.Hl7Error as exc:
        raise DeliveryError(f"{analyser.code} answered something that is not HL7: {exc.text}") from None
    msa = ack.find("MSA")
    code = msa.component(1) if msa is not None else ""
    if code not in ("AA", "CA"):
        raise DeliveryError(f"{analyser.code} refused the order with {code or 'no MSA'}")
    sent = hl7.parse(message)
    session.add(Message(protocol="hl7", direction="out", sender=f"VNHIS^LIS>{analyser.code}"[:200],
                        control_id=sent.control_id, content_hash=sent.content_hash, message_type="^".join(sent.type),
                        version=sent.version, analyser_id=analyser.id, peer=f"{analyser.host}:{analyser.port}",
                        raw=message, status="sent", ack_code=code, ack=answer, processed_at=utcnow(),
                        specimen_barcodes=specimen.barcode))
    session.flush()
    return {"specimen": specimen.barcode, "analyser": analyser.code, "ack": code}

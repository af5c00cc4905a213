"""`vnhis hl7`: the MLLP listener (and, with --astm-port, the ASTM one) wired to the message store."""

from __future__ import annotations

import logging
import signal
import threading

from sqlalchemy.orm import sessionmaker

from lis import catalog, hl7, inbox
from lis.hl7 import Hl7Error
from lis.mllp import DEFAULT_MAX_BYTES, Frame, MllpServer

log = logging.getLogger("vnhis.lis")


class MessageLink:
    """One analyser connection: its own database session for all its messages."""

    def __init__(self, factory: sessionmaker, peer: str, max_bytes: int):
        self.factory, self.peer, self.max_bytes = factory, peer, max_bytes
        self.session = factory()

    def handle(self, item: Frame) -> list[bytes]:
        if item.kind == "oversized":
            return [inbox.oversized(self.factory, item.data, item.size, self.peer, self.max_bytes)]
        if item.kind == "truncated":
            return [inbox.truncated(self.factory, item.data, self.peer)]
        return inbox.handle(self.factory, item.data, self.peer, session=self.session)

    def close(self) -> None:
        self.session.close()


def fallback(item: Frame) -> bytes:
    return hl7.ack(inbox.partial_message(item.data), "AR", Hl7Error("AR", "207", "application internal error", "MSH"))


def make_server(factory: sessionmaker, host: str, port: int, *, max_bytes: int = DEFAULT_MAX_BYTES,
                idle_seconds: float = 600.0) -> MllpServer:
    return MllpServer((host, port), lambda peer: MessageLink(factory, peer, max_bytes), fallback,
                      max_bytes=max_bytes, idle_seconds=idle_seconds)


def run(factory: sessionmaker, host: str, port: int, *, astm_port: int | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES, ready=None) -> None:
    """Serve until SIGTERM/SIGINT."""
    catalog.trust_seconds = 1.0  # a catalogue edit reaches the listener within a second
    servers = [make_server(factory, host, port, max_bytes=max_bytes)]
    if astm_port is not None:
        from lis import astm

        servers.append(astm.make_server(factory, host, astm_port))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    for server in servers:
        server.start()
    if ready is not None:
        ready([s.server_address[1] for s in servers])
    stop.wait()
    for server in servers:
        server.stop()

"""MLLP framing (VT message FS CR) and the TCP listener behind `vnhis hl7`.

One thread per connection (analysers are a few dozen at most, each waiting for its ACK), a byte
buffer per connection: a frame may arrive in many reads and one read may carry several frames.
Bytes between frames are dropped; a frame is decoded only when complete; a frame longer than the
limit is read to its end without being kept, then answered AR; a frame cut short by the start
of the next one is answered AR too. Answers are sent only after the handler has committed.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

VT, FS, CR = b"\x0b", b"\x1c", b"\x0d"
END = FS + CR
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
DEFAULT_BATCH = 64  # messages the listener commits in one transaction at most (bounds how long it holds locks)
DEFAULT_WRITERS = 2  # batches the listener applies at once, each on a database connection of its own
HEAD_KEPT = 64 * 1024  # how much of an oversized frame the store keeps
log = logging.getLogger("vnhis.lis.mllp")


def frame(payload: bytes) -> bytes:
    return VT + payload + END


@dataclass(frozen=True)
class Frame:
    kind: str  # "message", "oversized", "truncated"
    data: bytes
    size: int = 0


class FrameReader:
    """Cuts a byte stream into frames."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES):
        self.max_bytes = max_bytes
        self.buffer = bytearray()
        self.in_frame = False
        self.discarding = 0  # bytes of an oversized frame seen so far
        self.head = b""

    def feed(self, data: bytes) -> list[Frame]:
        out: list[Frame] = []
        self.buffer += data
        while True:
            if not self.in_frame:
                start = self.buffer.find(VT)
                if start < 0:
                    self.buffer.clear()  # noise between frames
                    return out
                del self.buffer[:start + 1]
                self.in_frame = True
            end = self.buffer.find(END)
            restart = self.buffer.find(VT)
            if restart >= 0 and (end < 0 or restart < end):
                if self.discarding:
                    out.append(Frame("oversized", self.head, self.discarding + restart))
                    self.discarding, self.head = 0, b""
                else:
                    out.append(Frame("truncated", bytes(self.buffer[:restart])))
                del self.buffer[:restart]
                self.in_frame = False
                continue
            if end < 0:
                if self.discarding or len(self.buffer) > self.max_bytes:
                    if not self.discarding:
                        self.head = bytes(self.buffer[:HEAD_KEPT])
                    keep = 1 if self.buffer.endswith(FS) else 0  # FS CR may straddle two reads
                    self.discarding += len(self.buffer) - keep
                    del self.buffer[:len(self.buffer) - keep]
                return out
            if self.discarding:
                out.append(Frame("oversized", self.head, self.discarding + end))
                self.discarding, self.head = 0, b""
            elif end > self.max_bytes:
                out.append(Frame("oversized", bytes(self.buffer[:HEAD_KEPT]), end))
            else:
                out.append(Frame("message", bytes(self.buffer[:end])))
            del self.buffer[:end + 2]
            self.in_frame = False


class Link(Protocol):
    """What one connection's frames go to: `handle(frame)` returns the answers; `close()` at the end."""

    def handle(self, item: Frame) -> list[bytes]: ...

    def close(self) -> None: ...


class _Connection(socketserver.BaseRequestHandler):
    server: MllpServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        peer = f"{self.client_address[0]}:{self.client_address[1]}"
        sock.settimeout(self.server.idle_seconds)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # an ACK is one small write: send it now
        reader = FrameReader(self.server.max_bytes)
        link = self.server.open_link(peer)
        try:
            self._serve(sock, reader, link, peer)
        finally:
            link.close()

    def _serve(self, sock: socket.socket, reader: FrameReader, link: Link, peer: str) -> None:
        while True:
            try:
                data = sock.recv(65536)
            except (TimeoutError, OSError):
                return  # idle or broken: an unfinished frame is dropped with the connection
            if not data:
                return
            for item in reader.feed(data):
                try:
                    answers = link.handle(item)
                except Exception:  # the listener must outlive any bug in one message
                    log.exception("frame from %s could not be handled", peer)
                    answers = [self.server.fallback(item)]
                try:
                    for answer in answers:
                        sock.sendall(frame(answer))
                except OSError:
                    return


class MllpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], open_link: Callable[[str], Link], fallback: Callable[[Frame], bytes],
                 *, max_bytes: int = DEFAULT_MAX_BYTES, idle_seconds: float = 600.0,
                 on_stop: Callable[[], None] | None = None):
        self.open_link, self.fallback, self.on_stop = open_link, fallback, on_stop
        self.max_bytes, self.idle_seconds = max_bytes, idle_seconds
        super().__init__(address, _Connection)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="vnhis-mllp", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self.on_stop is not None:
            self.on_stop()

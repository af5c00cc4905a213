"""pynetdicom's acceptor side, adapted for a busy node: threads that wait on events instead of polling,
fewer copies of the bytes, and less work per message.

- pynetdicom runs two threads per association that poll: the DUL thread checks the socket with a zero
  timeout and sleeps 1 ms when idle, the association thread sleeps 1 ms between looks at its message
  queue, so each C-STORE waited up to a millisecond twice. Here the DUL thread blocks in select() on the
  socket and on a wake-up socket written to for every queued PDU and kill, and the association thread
  blocks on its message queue, woken too when a release or abort arrives.
- PDUs are read with one recv and P-DATA is decoded over a memoryview; a large C-STORE data set goes to
  its file as it arrives (`SpooledDataSet`); the C-STORE-RSP is encoded directly (`store_response`); the
  supported contexts are copied cheaply for each association (`_Contexts`).

pynetdicom has no setting for these classes, so the acceptor's objects get their class swapped right after
pynetdicom made them, before its threads start; the overridden methods are few and keep pynetdicom's
contracts (checked against pynetdicom 3.0, `tests/pacs/test_transport.py`).
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import queue
import select
import socket
import socketserver
import struct
import threading

from pynetdicom import _config, evt
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import C_STORE_RQ, DIMSEMessage
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

SPILL_BYTES = 8 << 20  # a C-STORE data set longer than this goes to a file as it arrives
IDLE_WAIT = 0.02  # seconds a thread waits before its periodic checks (timers, kill) when nothing happens
_WAKE = object()  # put on the association's message queue when the DUL has an ACSE primitive for it


class _NotifyingQueue(queue.Queue):
    """The DUL's queue of ACSE primitives (release, abort) for the association thread, which is told on its
    message queue too, so that it answers a release at once rather than at its next periodic check."""

    def __init__(self, notify) -> None:
        super().__init__()
        self._notify = notify

    def put(self, item, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._notify()


class _WakingDUL(DULServiceProvider):
    """The DUL whose reactor sleeps in select() (see `_BulkSocket.ready`) and is woken to send."""

    def _prepare(self) -> None:
        self._run_loop_delay = 0  # the wait happens in `ready`, which returns as soon as there is work
        self.to_user_queue = _NotifyingQueue(lambda: self.assoc.dimse.msg_queue.put(_WAKE))
        self._waker, self._wake_fd = socket.socketpair()
        for end in (self._waker, self._wake_fd):
            end.setblocking(False)
        self._wake_lock = threading.Lock()

    def wake(self) -> None:
        with self._wake_lock:
            if self._waker is not None:
                with contextlib.suppress(BlockingIOError):  # a wake-up is already pending
                    self._waker.send(b"\0")

    def drain(self) -> None:
        with contextlib.suppress(OSError):  # BlockingIOError once empty
            while self._wake_fd.recv(4096):
                pass

    def has_work(self) -> bool:
        return not (self.to_provider_queue.empty() and self.event_queue.empty())

    def send_pdu(self, primitive) -> None:
        super().send_pdu(primitive)
        self.wake()

    def _decode_pdu(self, bytestream: bytearray):
        # A P-DATA-TF is decoded over a view of the bytes received: pynetdicom copies each PDU twice
        # (bytes(), then a slice per PDV), 1.7 ms a MiB. EVT_DATA_RECV, which is given the bytes, has no
        # handler in the node; if one is bound, pynetdicom's own decoding runs.
        if bytestream[:1] != b"\x04" or self.assoc.get_handlers(evt.EVT_DATA_RECV):
            return super()._decode_pdu(bytestream)
        pdu = P_DATA_TF()
        pdu.decode(memoryview(bytestream))
        evt.trigger(self.assoc, evt.EVT_PDU_RECV, {"pdu": pdu})
        return pdu, "Evt10"

    def kill_dul(self) -> None:
        super().kill_dul()
        self.wake()

    def stop_dul(self) -> bool:
        if self.state_machine.current_state != "Sta1":
            return False
        self._kill_thread = True
        self.wake()
        if threading.current_thread() is not self:
            self.join()
        return True

    def run(self) -> None:  # Thread.run, which calls the reactor pynetdicom bound as the target
        try:
            super().run()
        finally:
            with self._wake_lock:
                self._waker.close()
                self._wake_fd.close()
                self._waker = None


def quiet_protocol_logging() -> None:
    """Unless pynetdicom's logger shows INFO, skip its default handlers, which describe every PDU and
    DIMSE message received or sent for that logger (a dump of each C-STORE request's command set):
    work done whether or not the lines are shown. pynetdicom documents the switch."""
    if not logging.getLogger("pynetdicom").isEnabledFor(logging.INFO):
        _config.LOG_HANDLER_LEVEL = "none"


def _element(element: int, value: bytes) -> bytes:
    """One command element, group 0000, Implicit VR Little Endian."""
    return struct.pack("<HHI", 0, element, len(value)) + value


def store_response(primitive: C_STORE) -> bytes:
    """The command set of a C-STORE-RSP (PS3.7 9.3.1.2), encoded as pynetdicom would encode it.

    pynetdicom builds a response through a deep-copied pydicom Dataset it encodes twice (once for the
    group length), and does it for every instance.
    """
    def uid(value) -> bytes:
        raw = str(value).encode("ascii")
        return raw + b"\0" * (len(raw) % 2)

    body = [_element(0x0002, uid(primitive.AffectedSOPClassUID)), _element(0x0100, struct.pack("<H", 0x8001)),
            _element(0x0120, struct.pack("<H", primitive.MessageIDBeingRespondedTo)),
            _element(0x0800, struct.pack("<H", 0x0101)), _element(0x0900, struct.pack("<H", primitive.Status))]
    if primitive.ErrorComment:
        comment = primitive.ErrorComment.encode("ascii", "replace")
        body.append(_element(0x0902, comment + b" " * (len(comment) % 2)))
    body.append(_element(0x1000, uid(primitive.AffectedSOPInstanceUID)))
    encoded = b"".join(body)
    return _element(0x0000, struct.pack("<I", len(encoded))) + encoded


class SpooledDataSet(io.BytesIO):
    """A received data set: in memory while it is small; past SPILL_BYTES, a C-STORE data set goes on into
    the file the server's `dataset_file(sop_class, sop_instance, transfer_syntax, calling_ae)` makes,
    fragment by fragment. A large image is then copied once, into that file, while the network still
    brings the rest, instead of being gathered and copied about ten times in memory. pynetdicom's own
    STORE_RECV_CHUNKED_DATASET does so for every instance, at 0.4 ms of file meta encoding each."""

    def __init__(self, message: DIMSEMessage, assoc, dataset_file) -> None:
        super().__init__()
        self._message, self._assoc, self._dataset_file = message, assoc, dataset_file
        self.file = None

    def write(self, data) -> int:
        if self.file is None and self.tell() + len(data) > SPILL_BYTES and isinstance(self._message, C_STORE_RQ):
            command = self._message.command_set
            context = self._assoc._accepted_cx[self._message.context_id]
            self.file = self._dataset_file(str(command.AffectedSOPClassUID or ""),
                                           str(command.AffectedSOPInstanceUID or ""), context.transfer_syntax[0],
                                           self._assoc.requestor.ae_title)
            self.file.write(self.getbuffer())
            self.seek(0)
            self.truncate()
        if self.file is not None:
            return self.file.write(data)
        return super().write(data)


class _BlockingDimse(DIMSEServiceProvider):
    def receive_primitive(self, primitive) -> None:
        if self.message is None and self.dataset_file is not None:
            self.message = DIMSEMessage()
            self.message.data_set = SpooledDataSet(self.message, self.assoc, self.dataset_file)
        super().receive_primitive(primitive)

    def send_msg(self, primitive, context_id: int) -> None:
        if (isinstance(primitive, C_STORE) and primitive.MessageIDBeingRespondedTo is not None
                and primitive.OffendingElement is None and primitive.AffectedSOPClassUID
                and primitive.AffectedSOPInstanceUID and not self.assoc.get_handlers(evt.EVT_DIMSE_SENT)):
            pdata = P_DATA()
            pdata.presentation_data_value_list.append((context_id, b"\x03" + store_response(primitive)))
            self.dul.send_pdu(pdata)  # one PDV: the last (and only) fragment of a command
            return
        super().send_msg(primitive, context_id)

    def get_msg(self, block: bool = False):
        # The association reactor asks without blocking after a 1 ms sleep; waiting here instead hands it
        # each message the moment it is complete, and returns at once when the DUL has a release or abort.
        while True:
            try:
                item = self.msg_queue.get(timeout=self.dimse_timeout if block else IDLE_WAIT)
            except queue.Empty:
                return None, None
            if item is not _WAKE:
                return item
            if not block:
                return None, None


class _BulkSocket(AssociationSocket):
    """Reads a PDU in one recv (MSG_WAITALL) instead of pynetdicom's 4 KiB recv loop, which capped a large
    C-STORE near 300 MB/s, and waits for data in select() together with the DUL's wake-up socket. A PDU
    longer than WHOLE is read in CHUNK steps into a buffer that grows only as bytes arrive, so a peer
    that announces a huge PDU length and sends nothing makes us allocate at most WHOLE (and the network
    timeout, which counts per recv, still allows a slow link about 70 KB/s)."""

    WHOLE = 4 << 20
    CHUNK = 1 << 20

    @property
    def ready(self) -> bool:
        if self.socket is None or self._is_connected is False:
            return False
        dul = self.assoc.dul
        timeout = 0 if dul.has_work() else IDLE_WAIT
        try:
            readable, _, _ = select.select([self.socket, dul._wake_fd], [], [], timeout)
        except (OSError, TimeoutError, ValueError):
            self.event_queue.put("Evt17")  # transport connection closed, as pynetdicom does
            return False
        if dul._wake_fd in readable:
            dul.drain()
        return self.socket in readable

    def recv(self, nr_bytes: int) -> bytes | bytearray:
        if nr_bytes <= self.WHOLE:  # one allocation, filled by the kernel
            return self.socket.recv(nr_bytes, socket.MSG_WAITALL)  # short only if the connection broke
        buffer = bytearray()
        while len(buffer) < nr_bytes:
            start = len(buffer)
            want = min(nr_bytes - start, self.CHUNK)
            buffer.extend(bytes(want))
            with memoryview(buffer) as view:
                got = self.socket.recv_into(view[start:], want)
            del buffer[start + got:]
            if not got:  # the connection broke: what was read, as pynetdicom does
                break
        return buffer


class Handler(RequestHandler):
    def _create_association(self):
        assoc = super()._create_association()
        assoc.dul.__class__ = _WakingDUL
        assoc.dul._prepare()
        assoc.dimse.__class__ = _BlockingDimse
        assoc.dimse.dataset_file = getattr(self.server, "dataset_file", None)
        assoc.dul.socket.__class__ = _BulkSocket
        return assoc


class _Contexts(list):
    """The supported presentation contexts, which pynetdicom deep-copies for each association: copied here
    context by context with their own transfer syntax lists (UIDs are immutable strings), ~60 times faster.
    The deep copy of every storage class with every transfer syntax (8,000 UIDs) cost 60 ms an association,
    and a modality may open one association per image."""

    def __deepcopy__(self, memo) -> list:
        copies = []
        for context in self:
            twin = copy.copy(context)
            twin._transfer_syntax = list(context._transfer_syntax)
            copies.append(twin)
        return copies


class Server(ThreadedAssociationServer):
    """Binds with SO_REUSEPORT, so several node processes can accept on one port, and turns Nagle's
    algorithm off on each connection (with it, every small response waits for a delayed ACK: ~20 msg/s)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.contexts = _Contexts(self.contexts)

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

    def get_request(self):
        sock, address = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, address

    def shutdown(self) -> None:
        # Made with AE.make_server, so it is not in the AE's list of servers pynetdicom's shutdown edits.
        socketserver.TCPServer.shutdown(self)
        self.server_close()

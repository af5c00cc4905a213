"""`vnhis hl7`: the MLLP listener (and, with --astm-port, the ASTM one) wired to the message store.

Group commit: the messages waiting together, from all connections, are applied in one transaction
(inbox.process_many: one pass for all of them), so one commit (one WAL flush, one audit insert)
serves many messages. Each connection waits for the commit of its own message before it answers.
If anything in a batch fails (a lost connection, a deadlock with another batch, a repeat racing its
original), nothing of it is answered: the batch is rolled back and each message is applied again
alone, with the answers of a single message (AA, AE, AR 207).
"""

from __future__ import annotations

import collections
import logging
import signal
import threading

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from lis import catalog, hl7, inbox
from lis.hl7 import Hl7Error
from lis.mllp import DEFAULT_BATCH, DEFAULT_MAX_BYTES, DEFAULT_WRITERS, Frame, MllpServer

log = logging.getLogger("vnhis.lis")


class _Job:
    __slots__ = ("frame", "peer", "answers", "error", "done", "wake", "baton")

    def __init__(self, frame: bytes, peer: str):
        self.frame, self.peer = frame, peer
        self.answers: list[bytes] = []
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.wake = threading.Event()  # set when done, or when handed a session to lead the next batch
        self.baton: tuple | None = None  # (that session,): it may be None, not opened yet

    def finish(self, answers: list[bytes] | None = None, error: BaseException | None = None) -> None:
        self.answers, self.error = answers or [], error
        self.done.set()
        self.wake.set()


class GroupWriter:
    """Applies the waiting messages of all connections a batch per transaction, on at most `writers`
    database sessions at once.

    No writer threads: the connection whose message finds a session free applies it at once, with
    whatever else waits (one analyser: no thread hand-over at all); the others queue. A connection
    that has applied a batch hands its session to the first message still waiting, whose connection
    applies the next batch. So each batch costs one wake-up per waiting connection, and more than one
    session lets the database work on one batch while Python prepares the next."""

    def __init__(self, factory: sessionmaker, max_batch: int = DEFAULT_BATCH, writers: int = DEFAULT_WRITERS):
        self.factory, self.max_batch = factory, max_batch
        self.jobs: collections.deque[_Job] = collections.deque()
        self._free: list = [None] * max(writers, 1)  # sessions not in use (None: not opened yet)
        self._lock = threading.Lock()
        self._stopping = False

    def waiting(self) -> int:
        return len(self.jobs)

    def submit(self, frame: bytes, peer: str) -> list[bytes]:
        """The answers to one message, once it is committed (or known not to be stored)."""
        job = _Job(frame, peer)
        with self._lock:
            if self._stopping:
                raise RuntimeError("the HL7 listener is stopping")
            leading = bool(self._free)
            session = self._free.pop() if leading else None
            if not leading:
                self.jobs.append(job)
        if not leading:
            job.wake.wait()
            leading = job.baton is not None
            if leading:
                (session,), job.baton = job.baton, None
        if leading:
            self._lead(job, session)
        if job.error is not None:
            raise job.error
        return job.answers

    def _lead(self, job: _Job, session) -> None:
        with self._lock:
            batch = [job]
            while self.jobs and len(batch) < self.max_batch:
                batch.append(self.jobs.popleft())
        try:
            if session is None:
                session = self._open()
            self._handle(session, batch)
        except Exception as exc:  # never leave a connection waiting
            for waiting in batch:
                if not waiting.done.is_set():
                    waiting.finish(error=exc)
        finally:
            with self._lock:
                following = self.jobs.popleft() if self.jobs and not self._stopping else None
                if following is None:
                    self._free.append(session)
            if following is not None:  # its connection applies the next batch on this session
                following.baton = (session,)
                following.wake.set()
            elif self._stopping and session is not None:
                self._close_free()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            waiting, self.jobs = list(self.jobs), collections.deque()
        for job in waiting:  # whoever still waits gets the AR of an internal error
            job.finish(error=RuntimeError("the HL7 listener is stopping"))
        self._close_free()

    def _close_free(self) -> None:
        with self._lock:
            sessions, self._free = [s for s in self._free if s is not None], []
        for session in sessions:
            _close(session)

    def apply(self, batch: list[_Job]) -> None:
        """Handle a batch on the calling thread, on a session of the writer (the profiler does)."""
        with self._lock:
            session = self._free.pop()
        try:
            if session is None:
                session = self._open()
            self._handle(session, batch)
        finally:
            with self._lock:
                self._free.append(session)

    def _open(self):
        """A session on a database connection of its own for the writer's life: a session of the engine
        gives its connection back to the pool at each commit and takes one again (with the pool's ping, a
        round trip) at the next batch. After a lost connection it reconnects on next use."""
        bind = getattr(self.factory, "kw", {}).get("bind")
        if isinstance(bind, Engine):
            try:
                return self.factory(bind=bind.connect())
            except SQLAlchemyError as exc:  # the database is away: a session of the engine, which answers AR
                log.warning("HL7 writer without a connection of its own: %s", str(exc).splitlines()[0])
        return self.factory()

    def _handle(self, session, batch: list[_Job]) -> None:
        try:
            if len(batch) == 1:
                self._alone(session, batch[0])
            else:
                self._together(session, batch)
        except Exception as exc:  # never leave a connection waiting
            log.exception("HL7 batch could not be handled")
            for job in batch:
                if not job.done.is_set():
                    job.finish(error=exc)

    def _alone(self, session, job: _Job) -> None:
        try:
            job.finish(inbox.handle(self.factory, job.frame, job.peer, session=session))
        except Exception as exc:  # a bug in one message: that connection answers AR
            session.rollback()
            session.expunge_all()
            job.finish(error=exc)

    def _together(self, session, batch: list[_Job]) -> None:
        try:
            answers = inbox.process_many(session, [(job.frame, job.peer) for job in batch])
            session.commit()
        except Exception as exc:
            session.rollback()
            session.expunge_all()
            log.info("HL7 batch of %d rolled back (%s); applying each message alone", len(batch),
                     str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            for job in batch:
                self._alone(session, job)
            return
        session.expunge_all()
        for job, answer in zip(batch, answers, strict=True):
            job.finish(answer)


def _close(session) -> None:
    bind = session.bind
    session.close()
    if isinstance(bind, Connection):
        bind.close()


class MessageLink:
    """One analyser connection: its messages go to the process's writer."""

    def __init__(self, factory: sessionmaker, writer: GroupWriter, peer: str, max_bytes: int):
        self.factory, self.writer, self.peer, self.max_bytes = factory, writer, peer, max_bytes

    def handle(self, item: Frame) -> list[bytes]:
        if item.kind == "oversized":
            return [inbox.oversized(self.factory, item.data, item.size, self.peer, self.max_bytes)]
        if item.kind == "truncated":
            return [inbox.truncated(self.factory, item.data, self.peer)]
        return self.writer.submit(item.data, self.peer)

    def close(self) -> None:
        pass


def fallback(item: Frame) -> bytes:
    return hl7.ack(inbox.partial_message(item.data), "AR", Hl7Error("AR", "207", "application internal error", "MSH"))


def make_server(factory: sessionmaker, host: str, port: int, *, max_bytes: int = DEFAULT_MAX_BYTES,
                idle_seconds: float = 600.0, max_batch: int = DEFAULT_BATCH, writers: int = DEFAULT_WRITERS
                ) -> MllpServer:
    writer = GroupWriter(factory, max_batch, writers)
    try:
        return MllpServer((host, port), lambda peer: MessageLink(factory, writer, peer, max_bytes), fallback,
                          max_bytes=max_bytes, idle_seconds=idle_seconds, on_stop=writer.stop)
    except OSError:  # the port is taken
        writer.stop()
        raise


def run(factory: sessionmaker, host: str, port: int, *, astm_port: int | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES, max_batch: int = DEFAULT_BATCH, writers: int = DEFAULT_WRITERS,
        ready=None) -> None:
    """Serve until SIGTERM/SIGINT."""
    catalog.trust_seconds = 1.0  # a catalogue edit reaches the listener within a second
    servers = [make_server(factory, host, port, max_bytes=max_bytes, max_batch=max_batch, writers=writers)]
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

"""`vnhis hl7`: the MLLP listener (and, with --astm-port, the ASTM one) wired to the message store.

Group commit: the messages of every connection go to a few writer threads; a writer applies the
messages waiting together in one transaction, so one commit (one WAL flush, one audit insert)
serves many messages. Each connection waits for the commit of its own message before it answers.
If anything in a batch fails (a lost connection, a deadlock with another writer's batch), nothing
of it is answered: the batch is rolled back and each message is applied again alone, with the
answers of a single message (AA, AE, AR 207). More than one writer, so that the database works on
one batch while Python prepares the next.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading

from sqlalchemy.orm import sessionmaker

from lis import catalog, hl7, inbox
from lis.hl7 import Hl7Error
from lis.mllp import DEFAULT_BATCH, DEFAULT_MAX_BYTES, DEFAULT_WRITERS, Frame, MllpServer

log = logging.getLogger("vnhis.lis")


class _Job:
    __slots__ = ("frame", "peer", "answers", "error", "done")

    def __init__(self, frame: bytes, peer: str):
        self.frame, self.peer = frame, peer
        self.answers: list[bytes] = []
        self.error: BaseException | None = None
        self.done = threading.Event()

    def finish(self, answers: list[bytes] | None = None, error: BaseException | None = None) -> None:
        self.answers, self.error = answers or [], error
        self.done.set()


class GroupWriter:
    """Writer threads, each with its database session, applying the waiting messages of all connections
    a batch per transaction."""

    def __init__(self, factory: sessionmaker, max_batch: int = DEFAULT_BATCH, writers: int = DEFAULT_WRITERS):
        self.factory, self.max_batch = factory, max_batch
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.threads = [threading.Thread(target=self._loop, name=f"vnhis-hl7-writer-{n}", daemon=True)
                        for n in range(writers)]
        for thread in self.threads:
            thread.start()

    def submit(self, frame: bytes, peer: str) -> list[bytes]:
        """The answers to one message, once it is committed (or known not to be stored)."""
        job = _Job(frame, peer)
        self.jobs.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.answers

    def stop(self) -> None:
        for _thread in self.threads:
            self.jobs.put(None)
        for thread in self.threads:
            thread.join(timeout=30)
        while True:  # whoever still waits gets the AR of an internal error
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.finish(error=RuntimeError("the HL7 listener is stopping"))

    def _take(self) -> list[_Job] | None:
        first = self.jobs.get()
        if first is None:
            return None
        batch = [first]
        while len(batch) < self.max_batch:  # no waiting: what arrived while the last batch was committed
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:  # stopping: the marker is this thread's or another's, and stays for it
                self.jobs.put(None)
                break
            batch.append(job)
        return batch

    def _loop(self) -> None:
        session = self.factory()
        try:
            while (batch := self._take()) is not None:
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
        finally:
            session.close()

    def _alone(self, session, job: _Job) -> None:
        try:
            job.finish(inbox.handle(self.factory, job.frame, job.peer, session=session))
        except Exception as exc:  # a bug in one message: that connection answers AR
            session.rollback()
            session.expunge_all()
            job.finish(error=exc)

    def _together(self, session, batch: list[_Job]) -> None:
        try:
            answers = [inbox.process(session, job.frame, job.peer) for job in batch]
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

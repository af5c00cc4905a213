"""Background jobs: a transactional outbox (the `jobs` table) relayed to Redis after commit.

`enqueue(session, name, payload)` adds a job row to the caller's transaction, so a job exists
exactly when the work that caused it was committed. After the commit a dispatcher wakes the
runners: with Redis, the relay pushes the job ids onto one Redis list per queue and `vnhis worker`
pops them; without Redis an in-process thread runs them. A runner claims a job with one
conditional UPDATE, so a duplicate id on a list never runs a job twice; the job's own work and
its `done` mark commit in the same transaction.

Why plain Redis lists rather than RQ: the truth about a job (status, attempts, last error, next
try) must live in the database beside the work that caused it, survive a Redis restart (our Redis
keeps nothing on disk) and show in the admin screen. Redis only carries ids to wake workers; RQ
would keep a second, pickled copy of that state in Redis.

While Redis is down nothing is lost: jobs stay `pending` in the outbox and the worker's relay
pushes them once Redis answers again. A worker that dies mid-job leaves it `running`; after
JOB_LEASE it is taken back and tried again, so handlers with effects outside the database must be
idempotent (the bank, the insurance gateway: send a stable request id).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta

import redis
from sqlalchemy import and_, event, func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from core import audit
from core.db import is_postgresql, utcnow
from core.models import Job

log = logging.getLogger("vnhis.queue")

PENDING, QUEUED, RUNNING, DONE, DEAD = "pending", "queued", "running", "done", "dead"
STATUSES = (PENDING, QUEUED, RUNNING, DONE, DEAD)
RUNNABLE = (PENDING, QUEUED)

DEFAULT_QUEUE = "default"
BACKOFF_BASE_SECONDS = 10
BACKOFF_MAX_SECONDS = 3600
JOB_LEASE = timedelta(minutes=15)   # a job running longer than this is taken as lost
RELAY_INTERVAL_SECONDS = 1.0
REDIS_KEY = "vnhis:queue:{}"
DISPATCHER_KEY = "vnhis.queue.dispatcher"  # in sessionmaker info: who to wake after a commit
_NEW_JOBS = "vnhis.queue.new_jobs"


@dataclass(frozen=True)
class JobType:
    name: str
    func: Callable[[Session, dict], dict | None]
    queue: str
    max_attempts: int


_REGISTRY: dict[str, JobType] = {}


def job(name: str, queue: str = DEFAULT_QUEUE, max_attempts: int = 5):
    """Register `func(session, payload) -> dict | None` as the handler of jobs called `name`.

    The handler adds and flushes like any operation; the runner commits its work together with
    the job's `done` mark, or rolls it back and schedules a retry.
    """
    def decorator(func):
        existing = _REGISTRY.get(name)
        if existing is not None and existing.func is not func:
            raise ValueError(f"job {name!r} registered twice")
        _REGISTRY[name] = JobType(name, func, queue, max_attempts)
        return func

    return decorator


_DECLARED_QUEUES: set[str] = {DEFAULT_QUEUE}


def declare_queue(name: str) -> None:
    """A queue used through `enqueue(..., queue_name=...)` rather than by a job type."""
    _DECLARED_QUEUES.add(name)


def known_queues() -> list[str]:
    return sorted(_DECLARED_QUEUES | {t.queue for t in _REGISTRY.values()})


def redis_key(queue: str) -> str:
    return REDIS_KEY.format(queue)


def backoff_seconds(attempts: int) -> int:
    """Wait before the next try after `attempts` failed tries: 10 s, 20 s, 40 s … at most an hour."""
    return min(BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0), BACKOFF_MAX_SECONDS)


# --- the outbox side: in the caller's transaction ----------------------------------------------

def enqueue(session: Session, name: str, payload: dict | None = None, *, actor: audit.Actor | None = None,
            delay: timedelta | None = None, dedupe_key: str | None = None, queue_name: str | None = None) -> Job:
    """Add a job to the session's transaction; it is dispatched only if that transaction commits.

    queue_name: overrides the job type's queue (event deliveries run on their subscriber's queue).
    dedupe_key: a job with the same key is not created twice (the existing one is returned).
    """
    kind = _REGISTRY.get(name)
    if kind is None:
        raise KeyError(f"unknown job {name!r}")
    if dedupe_key is not None:
        existing = session.scalar(select(Job).where(Job.dedupe_key == dedupe_key))
        if existing is not None:
            return existing
    record = Job(queue=queue_name or kind.queue, name=name,
                 payload=json.loads(json.dumps(payload or {}, ensure_ascii=False)),  # JSON-able now, not later
                 status=PENDING, attempts=0, max_attempts=kind.max_attempts,
                 run_after=utcnow() + (delay or timedelta(0)), dedupe_key=dedupe_key,
                 created_by=actor.id if actor else None)
    session.add(record)
    session.flush()
    session.info[_NEW_JOBS] = True
    return record


def retry(session: Session, actor: audit.Actor, record: Job) -> None:
    """Give a failed job a fresh set of attempts."""
    record.status, record.attempts, record.run_after, record.finished_at = PENDING, 0, utcnow(), None
    session.info[_NEW_JOBS] = True
    audit.record(session, actor, "job.retry", record, {"name": record.name})


@event.listens_for(Session, "after_commit")
def _dispatch_after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint was released; the jobs become visible at the real commit
    if session.info.pop(_NEW_JOBS, False):
        dispatcher = session.info.get(DISPATCHER_KEY)
        if dispatcher is not None:
            dispatcher.notify()


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    if not session.in_nested_transaction():
        session.info.pop(_NEW_JOBS, None)


# --- relay to Redis ----------------------------------------------------------------------------

def relay(session_factory: sessionmaker, client: redis.Redis, queues: Iterable[str] | None = None,
          limit: int = 1000) -> int:
    """Push due outbox jobs onto their Redis lists and mark them queued; returns how many.

    If Redis fails nothing is marked and the jobs wait. Jobs marked queued whose list is empty
    (Redis restarted and forgot them, or a worker died between pop and claim) are pushed again.
    """
    now = utcnow()
    with session_factory() as session:
        due = and_(Job.status == PENDING, Job.run_after <= now)
        conditions = [due]
        if queues is not None:
            queues = list(queues)
            conditions = [and_(due, Job.queue.in_(queues))]
            empty = [q for q in queues if client.llen(redis_key(q)) == 0]
            if empty:
                conditions.append(and_(Job.status == QUEUED, Job.queue.in_(empty),
                                       Job.relayed_at < now - timedelta(seconds=5)))
        stmt = select(Job.id, Job.queue).where(or_(*conditions))
        rows = session.execute(stmt.order_by(Job.id).limit(limit)).all()
        if not rows:
            return 0
        pipe = client.pipeline(transaction=False)
        for job_id, queue in rows:
            pipe.lpush(redis_key(queue), job_id)
        pipe.execute()
        # Not a job that a runner took, failed and set to wait meanwhile: that one is relayed when due.
        session.execute(update(Job).where(Job.id.in_([r[0] for r in rows]), Job.status.in_(RUNNABLE),
                                          Job.run_after <= now)
                        .values(status=QUEUED, relayed_at=now))
        session.commit()
        return len(rows)


class RedisDispatcher:
    """After a commit that enqueued jobs: relay them at once (Redis down: the worker relays later)."""

    def __init__(self, session_factory: sessionmaker, client: redis.Redis):
        self.session_factory, self.client = session_factory, client

    def notify(self) -> None:
        try:
            relay(self.session_factory, self.client)
        except redis.RedisError as exc:
            log.warning("Redis unavailable (%s): jobs wait in the outbox for the worker's relay", exc)
        except SQLAlchemyError as exc:
            log.warning("job relay failed (%s): the worker's relay will retry", exc)


# --- running jobs ------------------------------------------------------------------------------

def _claimed(session: Session, job_id: int, now) -> bool:
    result = session.execute(update(Job).where(Job.id == job_id, Job.status.in_(RUNNABLE), Job.run_after <= now)
                             .values(status=RUNNING, attempts=Job.attempts + 1, started_at=now))
    return result.rowcount == 1


def claim(session_factory: sessionmaker, job_id: int) -> bool:
    """Take a job whose id came from Redis; False if another runner has it or it is not due."""
    with session_factory() as session:
        ok = _claimed(session, job_id, utcnow())
        session.commit()
        return ok


def claim_next(session_factory: sessionmaker, queues: Iterable[str] | None = None) -> int | None:
    """Take the oldest due job straight from the table (no Redis); None when there is none."""
    now = utcnow()
    with session_factory() as session:
        stmt = (select(Job.id).where(Job.status.in_(RUNNABLE), Job.run_after <= now)
                .order_by(Job.run_after, Job.id).limit(1))
        if queues is not None:
            stmt = stmt.where(Job.queue.in_(list(queues)))
        if is_postgresql(session):
            stmt = stmt.with_for_update(skip_locked=True)
        job_id = session.scalar(stmt)
        if job_id is None or not _claimed(session, job_id, now):
            session.rollback()
            return None
        session.commit()
        return job_id


def _still_ours(job_id: int, attempt: int):
    # The run that claimed attempt N may finish the job only if nobody took it back meanwhile
    # (its lease ran out and another runner started attempt N+1).
    return and_(Job.id == job_id, Job.status == RUNNING, Job.attempts == attempt)


def run_claimed(session_factory: sessionmaker, job_id: int) -> str:
    """Run a claimed job; returns its new status: done, pending (a retry is due later), dead, or
    running when this run had lost its claim and its work was dropped."""
    with session_factory() as session:
        record = session.get(Job, job_id)
        name, attempt, payload = record.name, record.attempts, dict(record.payload)
        kind = _REGISTRY.get(name)
        try:
            if kind is None:
                raise LookupError(f"no handler is registered for job {name!r} in this process")
            result = kind.func(session, payload)
        except Exception:
            error = traceback.format_exc(limit=20)
            session.rollback()
        else:
            finished = session.execute(update(Job).where(_still_ours(job_id, attempt))
                                       .values(status=DONE, result=result, finished_at=utcnow()))
            if finished.rowcount == 1:
                session.commit()  # the job's work and its done mark, together
                return DONE
            session.rollback()
            log.warning("job %s (%s) was taken back while it ran; this run's work is dropped", job_id, name)
            return RUNNING
    log.warning("job %s (%s) failed: %s", job_id, name, error.strip().splitlines()[-1])
    return _record_failure(session_factory, job_id, attempt, error)


def _record_failure(session_factory: sessionmaker, job_id: int, attempt: int, error: str) -> str:
    now = utcnow()
    with session_factory() as session:
        record = session.scalar(select(Job).where(_still_ours(job_id, attempt)).with_for_update())
        if record is None:
            return RUNNING  # taken back meanwhile; the newer run records its own outcome
        record.last_error = error[-8000:]
        if record.attempts >= record.max_attempts:
            record.status, record.finished_at = DEAD, now
        else:
            record.status, record.run_after = PENDING, now + timedelta(seconds=backoff_seconds(record.attempts))
        session.commit()
        return record.status


def reclaim_lost(session_factory: sessionmaker, lease: timedelta = JOB_LEASE) -> int:
    """Jobs left running by a worker that died go back to pending (or dead when out of attempts)."""
    now = utcnow()
    with session_factory() as session:
        lost = session.scalars(select(Job).where(Job.status == RUNNING, Job.started_at < now - lease)).all()
        for record in lost:
            record.last_error = f"the runner was lost: no result {int(lease.total_seconds())} s after the start"
            if record.attempts >= record.max_attempts:
                record.status, record.finished_at = DEAD, now
            else:
                record.status, record.run_after = PENDING, now
        session.commit()
        return len(lost)


def run_due(session_factory: sessionmaker, queues: Iterable[str] | None = None, limit: int | None = None) -> int:
    """Run due jobs from the table until none is left (or `limit`); returns how many ran."""
    ran = 0
    while limit is None or ran < limit:
        job_id = claim_next(session_factory, queues)
        if job_id is None:
            break
        run_claimed(session_factory, job_id)
        ran += 1
    return ran


def _has_due(session_factory: sessionmaker, queues: list[str]) -> bool:
    with session_factory() as session:
        return session.scalar(select(Job.id).where(Job.status.in_(RUNNABLE), Job.run_after <= utcnow(),
                                                   Job.queue.in_(queues)).limit(1)) is not None


def run_worker(session_factory: sessionmaker, redis_url: str | None, queues: list[str], *,
               stop_event: threading.Event, burst: bool = False, poll_seconds: float = 1.0) -> int:
    """`vnhis worker`: run jobs of `queues` until stopped (or, with burst, until none is due).

    With Redis: relay the outbox, block on the queues' lists, claim and run. Without: poll the
    table. Redis or database outages are waited out, never fatal. Returns how many jobs ran.
    """
    ran = 0
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=poll_seconds + 5) \
        if redis_url else None
    keys = [redis_key(q) for q in queues]
    next_relay = 0.0
    while not stop_event.is_set():
        try:
            if time.monotonic() >= next_relay:
                reclaim_lost(session_factory)
                if client is not None:
                    relay(session_factory, client, queues)
                next_relay = time.monotonic() + RELAY_INTERVAL_SECONDS
            if client is None:
                job_id = claim_next(session_factory, queues)
                if job_id is None:
                    if burst:
                        break
                    stop_event.wait(poll_seconds)
                    continue
            else:
                item = client.brpop(keys, timeout=poll_seconds)
                if item is None:
                    if burst and not _has_due(session_factory, queues):
                        break
                    next_relay = 0.0  # idle: look at the outbox now
                    continue
                job_id = int(item[1])
                if not claim(session_factory, job_id):
                    continue  # a duplicate id, or another worker has it
            run_claimed(session_factory, job_id)
            ran += 1
        except redis.RedisError as exc:
            if burst:
                raise
            log.warning("Redis unavailable (%s); jobs wait in the outbox, retrying", exc)
            stop_event.wait(2)
        except SQLAlchemyError as exc:
            log.warning("database unavailable (%s); retrying", str(exc).splitlines()[0])
            stop_event.wait(2)
    return ran


class InProcessRunner:
    """Runs jobs in a thread of the web process when there is no Redis (demo, small clinic)."""

    def __init__(self, session_factory: sessionmaker, poll_seconds: float = 5.0):
        self.session_factory, self.poll_seconds = session_factory, poll_seconds
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="vnhis-jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def wake(self) -> None:
        self._wake.set()

    def run_due(self) -> int:
        return run_due(self.session_factory)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                reclaim_lost(self.session_factory)
                self.run_due()
            except SQLAlchemyError as exc:
                log.warning("in-process jobs: database unavailable (%s)", str(exc).splitlines()[0])
            self._wake.wait(self.poll_seconds)


class LocalDispatcher:
    def __init__(self, runner: InProcessRunner):
        self.runner = runner

    def notify(self) -> None:
        self.runner.wake()


# --- reading, for the admin screen and the API -------------------------------------------------

def list_jobs(session: Session, *, status: str | None = None, name: str | None = None, page: int = 1,
              per_page: int = 50) -> tuple[list[Job], int]:
    stmt = select(Job)
    if status:
        stmt = stmt.where(Job.status == status)
    if name:
        stmt = stmt.where(Job.name == name)
    total = session.scalar(select(func.count()).select_from(stmt.subquery()))
    rows = session.scalars(stmt.order_by(Job.id.desc()).offset((page - 1) * per_page).limit(per_page)).all()
    return list(rows), total


def counts_by_status(session: Session) -> dict[str, int]:
    return dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())

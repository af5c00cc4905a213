"""The job outbox: transactional, retried with backoff, relayed to a real Redis, never lost or doubled."""

import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.orm import close_all_sessions

from core import audit, modules, queue
from core.audit import Actor
from core.db import make_engine, make_session_factory, utcnow
from core.models import AuditEvent, Job
from tests.conftest import REDIS_URL

TOUCH = "test.touch"


@queue.job(TOUCH, queue="test", max_attempts=3)
def _touch(session, payload):
    """Leaves one audit event per successful run; with fail=True it does the same and then fails,
    so the test can see that a failed run's work is rolled back."""
    audit.record(session, Actor.system("worker"), "test.touched", ("marker", payload["marker"]))
    session.flush()
    if payload.get("fail"):
        raise RuntimeError(f"boom {payload['marker']}")
    return {"marker": payload["marker"]}


def _touches(session, marker: str) -> int:
    session.commit()  # seal pending audit events, end the snapshot
    return session.scalar(select(func.count()).select_from(AuditEvent)
                          .where(AuditEvent.action == "test.touched", AuditEvent.target_id == marker))


def _job(session, job_id) -> Job:
    return session.get(Job, job_id, populate_existing=True)


def test_a_job_exists_only_if_its_transaction_commits(db_session):
    record = queue.enqueue(db_session, TOUCH, {"marker": "rolled-back"})
    job_id = record.id
    db_session.rollback()
    assert db_session.get(Job, job_id) is None


def test_unknown_job_and_bad_payload_are_refused(db_session):
    with pytest.raises(KeyError, match="unknown job 'no.such'"):
        queue.enqueue(db_session, "no.such", {})
    with pytest.raises(TypeError):
        queue.enqueue(db_session, TOUCH, {"marker": object()})


def test_in_process_runner_runs_the_job_after_commit(session_factory):
    session = session_factory()
    runner = queue.InProcessRunner(session_factory)
    session.info[queue.DISPATCHER_KEY] = queue.LocalDispatcher(runner)
    record = queue.enqueue(session, TOUCH, {"marker": "local"}, actor=Actor(id=None, name="t"))
    assert record.status == queue.PENDING and record.queue == "test" and record.max_attempts == 3
    assert not runner._wake.is_set()
    session.commit()
    assert runner._wake.is_set()  # the commit woke the runner
    assert runner.run_due() == 1
    done = _job(session, record.id)
    assert (done.status, done.attempts, done.result) == (queue.DONE, 1, {"marker": "local"})
    assert done.started_at <= done.finished_at
    assert _touches(session, "local") == 1
    assert runner.run_due() == 0  # nothing runs twice


def test_failures_back_off_then_die_and_can_be_retried(session_factory):
    session = session_factory()
    record = queue.enqueue(session, TOUCH, {"marker": "flaky", "fail": True})
    session.commit()
    for attempt in (1, 2):
        before = utcnow()
        assert queue.run_due(session_factory) == 1
        failed = _job(session, record.id)
        assert failed.status == queue.PENDING and failed.attempts == attempt
        assert "RuntimeError: boom flaky" in failed.last_error
        wait = queue.backoff_seconds(attempt)
        assert wait == 10 * 2 ** (attempt - 1)
        assert before + timedelta(seconds=wait) <= failed.run_after <= utcnow() + timedelta(seconds=wait)
        assert queue.run_due(session_factory) == 0  # not before its time
        failed.run_after = utcnow()
        session.commit()
    assert queue.run_due(session_factory) == 1
    dead = _job(session, record.id)
    assert dead.status == queue.DEAD and dead.attempts == 3 and dead.finished_at is not None
    assert _touches(session, "flaky") == 0  # every failed run's work was rolled back

    queue.retry(session, Actor(id=None, name="quantri"), dead)
    session.commit()
    again = _job(session, record.id)
    assert (again.status, again.attempts) == (queue.PENDING, 0)
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "job.retry")
                           .order_by(AuditEvent.seq.desc()).limit(1))
    assert event.target_id == str(record.id) and event.actor_name == "quantri"


def test_a_rolled_back_savepoint_does_not_cancel_the_wake_up(session_factory):
    session = session_factory()
    runner = queue.InProcessRunner(session_factory)
    session.info[queue.DISPATCHER_KEY] = queue.LocalDispatcher(runner)
    queue.enqueue(session, TOUCH, {"marker": "outer"})
    session.begin_nested().rollback()
    with session.begin_nested():
        pass
    assert not runner._wake.is_set()  # releasing a savepoint is not the commit
    session.commit()
    assert runner._wake.is_set()


def test_backoff_is_capped():
    assert queue.backoff_seconds(30) == queue.BACKOFF_MAX_SECONDS


def test_a_job_is_claimed_once(session_factory):
    session = session_factory()
    record = queue.enqueue(session, TOUCH, {"marker": "claim"})
    session.commit()
    assert queue.claim(session_factory, record.id) is True
    assert queue.claim(session_factory, record.id) is False
    assert queue.claim_next(session_factory) is None


def test_dedupe_key_gives_back_the_existing_job(db_session):
    first = queue.enqueue(db_session, TOUCH, {"marker": "a"}, dedupe_key="touch:a")
    second = queue.enqueue(db_session, TOUCH, {"marker": "a"}, dedupe_key="touch:a")
    assert first.id == second.id


def test_a_job_left_running_by_a_lost_worker_is_taken_back(session_factory):
    session = session_factory()
    record = queue.enqueue(session, TOUCH, {"marker": "lost"})
    session.commit()
    assert queue.claim(session_factory, record.id)
    assert queue.reclaim_lost(session_factory) == 0  # still within its lease
    running = _job(session, record.id)
    running.started_at = utcnow() - queue.JOB_LEASE - timedelta(minutes=1)
    session.commit()
    assert queue.reclaim_lost(session_factory) == 1
    back = _job(session, record.id)
    assert back.status == queue.PENDING and "runner was lost" in back.last_error
    assert queue.run_due(session_factory) == 1
    assert _touches(session, "lost") == 1


def test_admin_listing(db_session):
    queue.enqueue(db_session, TOUCH, {"marker": "list"})
    rows, total = queue.list_jobs(db_session, status=queue.PENDING, name=TOUCH)
    assert total >= 1 and rows[0].name == TOUCH
    assert queue.counts_by_status(db_session)[queue.PENDING] >= 1


# --- over a real Redis -------------------------------------------------------------------------

@pytest.fixture
def committed(committed_db_url):
    engine = make_engine(committed_db_url)
    factory = make_session_factory(engine)
    yield factory
    close_all_sessions()
    engine.dispose()


TAKEOVER = "test.takeover"
_takeover = {}


@queue.job(TAKEOVER, queue="test")
def _taken_over_while_running(session, payload):
    """Plays a run whose lease runs out: meanwhile another runner takes the job back and starts it."""
    audit.record(session, Actor.system("worker"), "test.touched", ("marker", "takeover"))
    factory = _takeover.pop("factory", None)
    if factory is not None:
        assert queue.reclaim_lost(factory, lease=timedelta(0)) == 1
        assert queue.claim(factory, _takeover["job_id"])
    return {"ran": True}


def test_a_run_that_lost_its_claim_cannot_finish_the_job(committed):
    session_factory = committed  # separate connections: the takeover commits on its own
    session = session_factory()
    record = queue.enqueue(session, TAKEOVER, {})
    session.commit()
    _takeover.update(factory=session_factory, job_id=record.id)
    assert queue.claim(session_factory, record.id)
    time.sleep(0.01)
    assert queue.run_claimed(session_factory, record.id) == queue.RUNNING  # its work was dropped
    current = _job(session, record.id)
    assert (current.status, current.attempts) == (queue.RUNNING, 2)  # the second run owns it
    assert queue.run_claimed(session_factory, record.id) == queue.DONE
    assert _touches(session, "takeover") == 1
    session.close()


def _with_dispatcher(factory, client):
    factory.configure(info={queue.DISPATCHER_KEY: queue.RedisDispatcher(factory, client)})
    return factory()


def test_commit_relays_to_redis_and_the_worker_runs_it_once(committed, redis_client):
    session = _with_dispatcher(committed, redis_client)
    record = queue.enqueue(session, TOUCH, {"marker": "redis"})
    session.commit()
    assert redis_client.lrange(queue.redis_key("test"), 0, -1) == [str(record.id).encode()]
    assert _job(session, record.id).status == queue.QUEUED
    ran = queue.run_worker(committed, REDIS_URL, ["test"], stop_event=threading.Event(), burst=True)
    assert ran == 1 and _job(session, record.id).status == queue.DONE
    # A stray duplicate id on the list (a relay that was cut off half-way) runs nothing again.
    redis_client.lpush(queue.redis_key("test"), record.id)
    assert queue.run_worker(committed, REDIS_URL, ["test"], stop_event=threading.Event(), burst=True) == 0
    assert _touches(session, "redis") == 1


def test_a_job_forgotten_by_a_restarted_redis_is_relayed_again(committed, redis_client):
    session = _with_dispatcher(committed, redis_client)
    record = queue.enqueue(session, TOUCH, {"marker": "forgotten"})
    session.commit()
    redis_client.flushdb()  # what a Redis restart without persistence does
    _job(session, record.id).relayed_at = utcnow() - timedelta(minutes=1)
    session.commit()
    assert queue.run_worker(committed, REDIS_URL, ["test"], stop_event=threading.Event(), burst=True) == 1
    assert _touches(session, "forgotten") == 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_redis(port: int, workdir) -> subprocess.Popen:
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    for _ in range(100):
        try:
            client.ping()
            return proc
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


def _wait_for(predicate, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_while_redis_is_down_jobs_wait_and_run_exactly_once_when_it_is_back(committed, tmp_path):
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    server = _start_redis(port, tmp_path)
    stop = threading.Event()
    worker = threading.Thread(target=queue.run_worker, args=(committed, url, ["test"]),
                              kwargs={"stop_event": stop, "poll_seconds": 0.2}, daemon=True)
    worker.start()
    try:
        server.terminate()
        server.wait(timeout=10)
        # The web app commits work that enqueues a job while Redis is down: the commit succeeds.
        session = _with_dispatcher(committed, redis.Redis.from_url(url, socket_connect_timeout=0.5))
        record = queue.enqueue(session, TOUCH, {"marker": "outage"})
        session.commit()
        time.sleep(1.5)  # the worker keeps trying meanwhile
        assert _job(session, record.id).status == queue.PENDING
        assert _touches(session, "outage") == 0

        server = _start_redis(port, tmp_path)
        assert _wait_for(lambda: _job(session, record.id).status == queue.DONE), "job did not run"
        time.sleep(1.5)  # give a double run every chance to happen
        done = _job(session, record.id)
        assert done.attempts == 1 and _touches(session, "outage") == 1
        session.close()
    finally:
        stop.set()
        worker.join(timeout=10)
        server.terminate()
        server.wait(timeout=10)
    assert not worker.is_alive()


def test_worker_command_runs_a_platform_job(committed, committed_db_url, redis_client):
    modules.load()  # registers the platform's jobs, as the app and the CLI do
    session = committed()
    record = queue.enqueue(session, "audit.verify", {"requested_by": "quantri"})
    session.commit()
    env = {"VNHIS_DATABASE_URL": committed_db_url, "VNHIS_REDIS_URL": REDIS_URL, "VNHIS_SECRET_KEY": "s" * 48,
           "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "core", "worker", "--burst", "--queues", "default"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "worker stopped after 1 job(s)" in result.stdout
    done = _job(session, record.id)
    assert done.status == queue.DONE and done.result["ok"] is True

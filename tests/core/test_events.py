"""Domain events: inline subscribers share the producer's transaction; queued ones run as jobs."""

import pytest
from sqlalchemy import func, select

from core import audit, events, queue
from core.audit import Actor
from core.models import AuditEvent, Job

SEEN = []


@events.subscribe("test.thing.happened", inline=True)
def _inline(session, payload):
    if payload.get("refuse"):
        raise ValueError("inline subscriber refuses")
    audit.record(session, Actor.system("billing"), "test.inline_seen", ("thing", payload["id"]))


@events.subscribe("test.thing.happened", queue_name="test-events")
def _later(session, payload):
    SEEN.append(payload["id"])
    audit.record(session, Actor.system("lis"), "test.queued_seen", ("thing", payload["id"]))


def _count(session, action, ident):
    session.commit()
    return session.scalar(select(func.count()).select_from(AuditEvent)
                          .where(AuditEvent.action == action, AuditEvent.target_id == str(ident)))


def test_inline_now_and_queued_after_commit(session_factory):
    session = session_factory()
    events.emit(session, "test.thing.happened", {"id": 41})
    job = session.scalar(select(Job).where(Job.name == events.DELIVER_JOB).order_by(Job.id.desc()).limit(1))
    assert job.queue == "test-events" and job.payload["subscriber"].endswith("._later")
    assert "test-events" in queue.known_queues()
    assert _count(session, "test.inline_seen", 41) == 1 and _count(session, "test.queued_seen", 41) == 0
    assert queue.run_due(session_factory, ["test-events"]) == 1
    assert SEEN[-1] == 41 and _count(session, "test.queued_seen", 41) == 1


def test_an_inline_failure_aborts_the_producer(db_session):
    with pytest.raises(ValueError, match="refuses"):
        events.emit(db_session, "test.thing.happened", {"id": 42, "refuse": True})


def test_an_event_without_subscribers_is_fine(db_session):
    events.emit(db_session, "test.nobody.listens", {"id": 1})

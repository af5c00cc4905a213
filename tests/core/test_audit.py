"""The audit trail: chained in the caller's transaction, append-only, and verifiable."""

import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from core import audit
from core.audit import Actor
from core.db import make_engine, make_session_factory
from core.models import AuditChainHead, AuditEvent

DOCTOR = Actor(id=7, name="bacsi", ip="10.0.0.5")


def _count(session):
    return session.scalar(select(func.count()).select_from(AuditEvent))


def test_events_are_chained_at_commit(db_session):
    before = _count(db_session)
    audit.record(db_session, DOCTOR, "patient.read", ("patient", 42), {"fields": ["name", "Nguyễn Văn Ân"]})
    audit.record(db_session, DOCTOR, "patient.update", ("patient", 42), {"phone": "0912345678"})
    assert _count(db_session) == before  # nothing written until the transaction commits
    db_session.commit()
    first, second = db_session.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(2)).all()[::-1]
    assert (first.action, second.action) == ("patient.read", "patient.update")
    assert second.prev_hash == first.hash and second.seq == first.seq + 1
    assert first.detail == {"fields": ["name", "Nguyễn Văn Ân"]}
    assert first.actor_name == "bacsi" and first.ip == "10.0.0.5" and first.target_id == "42"
    head = db_session.get(AuditChainHead, 1)
    assert (head.last_seq, head.last_hash) == (second.seq, second.hash)
    assert audit.verify(db_session).ok


def test_rollback_discards_pending_events(db_session):
    before = _count(db_session)
    audit.record(db_session, DOCTOR, "patient.read", ("patient", 1))
    db_session.rollback()
    db_session.commit()
    assert _count(db_session) == before


def test_append_only_in_postgresql(db_session):
    audit.record(db_session, DOCTOR, "patient.read", ("patient", 1))
    db_session.commit()
    event_id = db_session.scalar(select(func.max(AuditEvent.id)))
    for statement in ("UPDATE audit_events SET action = 'x' WHERE id = :id",
                      "DELETE FROM audit_events WHERE id = :id"):
        nested = db_session.begin_nested()
        with pytest.raises(DBAPIError, match="audit_events is append-only"):
            db_session.execute(text(statement), {"id": event_id})
        nested.rollback()
    nested = db_session.begin_nested()
    with pytest.raises(DBAPIError, match="append-only"):
        db_session.execute(text("TRUNCATE audit_events"))
    nested.rollback()


@pytest.fixture
def chain(committed_db_url):
    """A committed database with five audit events; yields (session, url, event ids)."""
    engine = make_engine(committed_db_url)
    session = make_session_factory(engine)()
    for n in range(5):
        audit.record(session, DOCTOR, "patient.read", ("patient", n), {"n": n})
        session.commit()
    ids = session.scalars(select(AuditEvent.id).order_by(AuditEvent.seq)).all()
    yield session, committed_db_url, ids
    session.close()
    engine.dispose()


def _tamper(session, sql: str, **params):
    # What an attacker with superuser rights could do: bypass the triggers.
    session.execute(text("SET session_replication_role = replica"))
    session.execute(text(sql), params)
    session.execute(text("SET session_replication_role = DEFAULT"))
    session.commit()


def _cli_verify(url: str):
    env = {"VNHIS_DATABASE_URL": url, "VNHIS_SECRET_KEY": "s" * 48, "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "core", "audit", "verify"], env=env, capture_output=True,
                          text=True, timeout=60)


def test_untouched_chain_verifies_on_the_command_line(chain):
    _session, url, ids = chain
    result = _cli_verify(url)
    assert result.returncode == 0, result.stderr
    assert f"audit chain intact: {len(ids)} events verified" in result.stdout


def test_altered_event_is_named(chain):
    session, url, ids = chain
    _tamper(session, "UPDATE audit_events SET detail = '{\"n\": 99}' WHERE id = :id", id=ids[2])
    result = audit.verify(session)
    assert not result.ok and result.event_id == ids[2]
    cli = _cli_verify(url)
    assert cli.returncode == 1
    assert f"event id {ids[2]} (seq 3) was altered" in cli.stderr


def test_rehashed_event_is_named_by_the_broken_link(chain):
    session, _url, ids = chain
    # Alter the content and recompute its own hash: the next event's link gives it away.
    ev = session.get(AuditEvent, ids[1])
    fields = {"occurred_at": ev.occurred_at, "actor_id": ev.actor_id, "actor_name": "someone-else",
              "action": ev.action, "target_type": ev.target_type, "target_id": ev.target_id,
              "detail": ev.detail, "ip": ev.ip}
    new_hash = audit.content_hash(ev.seq, ev.prev_hash, fields)
    _tamper(session, "UPDATE audit_events SET actor_name = 'someone-else', hash = :h WHERE id = :id",
            h=new_hash, id=ids[1])
    result = audit.verify(session)
    assert result.event_id == ids[1] and "was altered" in result.problem


def test_removed_event_is_named(chain):
    session, _url, ids = chain
    _tamper(session, "DELETE FROM audit_events WHERE id = :id", id=ids[3])
    result = audit.verify(session)
    assert not result.ok and result.seq == 4 and "missing" in result.problem


def test_removed_tail_is_found_through_the_head(chain):
    session, _url, ids = chain
    _tamper(session, "DELETE FROM audit_events WHERE id = :id", id=ids[-1])
    result = audit.verify(session)
    assert not result.ok and "newest events were removed" in result.problem


def test_empty_chain_verifies(db_session):
    assert audit.verify(db_session).ok


def test_a_rolled_back_savepoint_drops_only_its_own_events(db_session):
    before = _count(db_session)
    audit.record(db_session, DOCTOR, "patient.read", ("patient", 1))
    savepoint = db_session.begin_nested()
    audit.record(db_session, DOCTOR, "patient.update", ("patient", 1))
    savepoint.rollback()
    db_session.commit()
    actions = db_session.scalars(select(AuditEvent.action).where(AuditEvent.seq > 0)
                                 .order_by(AuditEvent.seq.desc()).limit(_count(db_session) - before)).all()
    assert actions == ["patient.read"]


def test_releasing_a_savepoint_does_not_seal_the_chain_early(db_session):
    before = _count(db_session)
    audit.record(db_session, DOCTOR, "patient.read", ("patient", 2))
    with db_session.begin_nested():
        audit.record(db_session, DOCTOR, "patient.update", ("patient", 2))
    assert _count(db_session) == before  # the chain head is locked only at the real commit
    db_session.commit()
    assert _count(db_session) == before + 2


def test_details_read_back_as_they_were_hashed(db_session):
    # JSONB rewrites numbers (1e16 -> integer, -0.0 -> 0) and rejects NUL; neither may break the chain.
    audit.record(db_session, Actor(id=None, name="odd\x00name"), "lab.result", ("specimen", "S1"),
                 {"value": -0.0, "big": 1e16, "ratio": 0.1, "note": "a\x00b", "when": datetime(2026, 1, 1, tzinfo=UTC),
                  "amount": Decimal("150000.00"), 3: [1, 2.5, None, True]})
    db_session.commit()
    event = db_session.scalar(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1))
    assert event.detail["big"] == "1e+16" and event.detail["amount"] == "150000.00" and event.detail["3"][1] == "2.5"
    assert event.actor_name == "odd\\u0000name"
    assert audit.verify(db_session).ok


def test_an_unsealed_event_cannot_be_changed_either(committed_db_url):
    engine = make_engine(committed_db_url)
    session = make_session_factory(engine)()
    session.execute(text("INSERT INTO audit_events (occurred_at, actor_name, action, detail) "
                         "VALUES (now(), 'x', 'patient.read', '{}')"))  # as committed, before the sealer runs
    session.commit()
    with pytest.raises(DBAPIError, match="append-only"):
        session.execute(text("UPDATE audit_events SET action = 'forged' WHERE seq IS NULL"))
    session.rollback()
    with pytest.raises(DBAPIError, match="append-only"):
        session.execute(text("DELETE FROM audit_events WHERE seq IS NULL"))
    session.rollback()
    assert audit.seal(engine) == 1  # the one update allowed: chaining it
    assert audit.verify(session).ok
    session.close()
    engine.dispose()


def test_concurrent_commits_are_all_sealed_into_one_chain(committed_db_url):
    import threading

    engine = make_engine(committed_db_url, pool_size=12)
    factory = make_session_factory(engine)
    sealer = audit.Sealer(engine, idle_seconds=0.05)
    sealer._thread.start()
    previous, audit._sealer = audit._sealer, sealer
    try:
        def writer(n):
            with factory() as session:
                for i in range(25):
                    audit.record(session, Actor(id=n, name=f"u{n}"), "patient.read", ("patient", i))
                    session.commit()

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        audit._sealer = previous
        sealer.stop()
    audit.seal(engine)
    with factory() as session:
        result = audit.verify(session)
        assert result.ok and result.checked == 200 and result.unsealed == 0
    engine.dispose()

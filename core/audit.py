"""The hash-chained, append-only audit trail.

`record(session, actor, action, target, detail)` is the one call every module uses for every read
and write of medical data and every security failure. Events join the caller's transaction: they
are inserted just before it commits and vanish with it on rollback.

Each event stores the hash of the previous event and SHA-256 of its own canonical content; the
single `audit_chain_head` row carries the last sequence number and hash, so an edited, removed or
re-ordered event — including the newest ones — is found by `verify`.

Chaining ("sealing") needs one lock for the whole trail. On PostgreSQL it is done just after the
commit, in batches, by one sealer at a time (an advisory lock): a request commits its unsealed
events without waiting for every other request's commit, and the sealer chains them a moment later
(a thread per process, woken by each commit; synchronously where no thread runs, e.g. the CLI).
Until sealed, an event can still not be changed or deleted (database triggers) — only an attacker
with superuser rights acting in that moment could. SQLite (one writer at a time anyway) chains
inside the committing transaction.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import bindparam, event, func, select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from core.db import insert_rows, utcnow
from core.models import AuditChainHead, AuditEvent

GENESIS_HASH = "0" * 64
_PENDING = "vnhis.audit.pending"
_SAVEPOINTS = "vnhis.audit.savepoints"  # nested transaction -> how many events were pending at its start
_UNSEALED = "vnhis.audit.unsealed"
SEALER_LOCK = 0x76_6E_68_69  # pg_advisory_xact_lock key: one sealer at a time, across processes
SEAL_BATCH = 5000
log = logging.getLogger("vnhis.audit")
_EVENTS, _HEAD = AuditEvent.__table__, AuditChainHead.__table__
_CHAIN = (update(_EVENTS).where(_EVENTS.c.id == bindparam("event_id"))
          .values(seq=bindparam("new_seq"), prev_hash=bindparam("new_prev"), hash=bindparam("new_hash")))


@dataclass(frozen=True)
class Actor:
    """Who does something: a user, a machine account, or the system itself."""

    id: int | None
    name: str
    ip: str | None = None

    @classmethod
    def system(cls, name: str = "system") -> Actor:
        return cls(id=None, name=name)

    @classmethod
    def of(cls, user, ip: str | None = None) -> Actor:
        return cls(id=user.id, name=user.username, ip=ip)


def _target(target) -> tuple[str | None, str | None]:
    if target is None:
        return None, None
    if isinstance(target, tuple):
        kind, ident = target
        return kind, None if ident is None else str(ident)
    table = getattr(target, "__tablename__", type(target).__name__)
    ident = getattr(target, "id", None)
    return table, None if ident is None else str(ident)


def record(session: Session, actor: Actor, action: str, target=None, detail: dict | None = None) -> None:
    """Add an audit event to the session's transaction.

    target: a mapped object (its table name and id are kept), a (type, id) tuple, or None.
    detail: JSON-able facts; never passwords or tokens.
    """
    target_type, target_id = _target(target)
    session.info.setdefault(_PENDING, []).append({
        "occurred_at": utcnow(),
        "actor_id": actor.id,
        "actor_name": _clean_text(actor.name),
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "detail": _normalise(detail or {}),
        "ip": actor.ip,
    })


def _clean_text(value: str) -> str:
    # PostgreSQL text and JSONB cannot hold NUL; keep it visible instead of failing the request.
    return value.replace("\x00", "\\u0000")


def _normalise(value):
    """The detail as it will read back from the database, so the hash made now still matches later.

    JSONB rewrites numbers (1e16 comes back as an integer, -0.0 as 0), so floats are kept as their
    decimal text; anything that is not JSON (dates, Decimal, UUID) becomes its string.
    """
    if isinstance(value, dict):
        return {_clean_text(str(k)): _normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_normalise(v) for v in value]
    if isinstance(value, bool | int) or value is None:
        return value
    if isinstance(value, float):
        return repr(value)
    return _clean_text(str(value))


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def content_hash(seq: int, prev_hash: str, fields: dict) -> str:
    canonical = json.dumps(
        {
            "seq": seq,
            "prev_hash": prev_hash,
            "occurred_at": _iso(fields["occurred_at"]),
            "actor_id": fields["actor_id"],
            "actor_name": fields["actor_name"],
            "action": fields["action"],
            "target_type": fields["target_type"],
            "target_id": fields["target_id"],
            "detail": fields["detail"],
            "ip": fields["ip"],
        },
        sort_keys=True, ensure_ascii=False, separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@event.listens_for(Session, "after_transaction_create")
def _mark_savepoint(session: Session, transaction) -> None:
    if transaction.nested:
        session.info.setdefault(_SAVEPOINTS, {})[transaction] = len(session.info.get(_PENDING, ()))


@event.listens_for(Session, "after_transaction_end")
def _forget_savepoint(session: Session, transaction) -> None:
    session.info.get(_SAVEPOINTS, {}).pop(transaction, None)


@event.listens_for(Session, "before_commit")
def _seal_pending(session: Session) -> None:
    if session.in_nested_transaction():
        return  # releasing a savepoint: the events are chained at the real commit
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    if session.get_bind().dialect.name == "postgresql":
        # Rows, not ORM objects, sent through the driver: on hot paths (an HL7 message, a C-STORE) the unit of
        # work, then a Core statement, cost more than the insert itself.
        insert_rows(session, _EVENTS, pending)
        session.info[_UNSEALED] = True
        return
    head = session.execute(
        select(AuditChainHead).where(AuditChainHead.id == 1).with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()
    seq, prev = head.last_seq, head.last_hash
    for fields in pending:
        seq += 1
        digest = content_hash(seq, prev, fields)
        session.add(AuditEvent(seq=seq, prev_hash=prev, hash=digest, **fields))
        prev = digest
    head.last_seq, head.last_hash = seq, prev
    session.flush()


@event.listens_for(Session, "after_commit")
def _seal_after_commit(session: Session) -> None:
    if session.in_nested_transaction() or not session.info.pop(_UNSEALED, False):
        return
    if _sealer is not None:
        _sealer.wake()
    else:
        try:
            seal(session.get_bind())
        except SQLAlchemyError as exc:  # the commit stands; the next seal picks these events up
            log.warning("audit events committed but not sealed yet: %s", str(exc).splitlines()[0])


def seal(bind, batch: int = SEAL_BATCH, *, wait: bool = True) -> int | None:
    """Chain the committed, not yet sealed events (PostgreSQL), oldest first; returns how many.

    wait=False: return None at once if another sealer holds the lock (it will take these events too,
    or the next round will).
    """
    total = 0
    while True:
        with Session(bind=bind, join_transaction_mode="create_savepoint") as session:
            if wait:
                session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SEALER_LOCK})
            elif not session.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": SEALER_LOCK}).scalar():
                return None
            seq, prev = session.execute(select(_HEAD.c.last_seq, _HEAD.c.last_hash).where(_HEAD.c.id == 1)
                                        .with_for_update()).one()
            rows = session.execute(select(_EVENTS).where(_EVENTS.c.seq.is_(None)).order_by(_EVENTS.c.id)
                                   .limit(batch)).mappings().all()
            chained = []
            for row in rows:  # hashed as stored, so verify recomputes exactly this
                seq += 1
                digest = content_hash(seq, prev, row)
                chained.append({"event_id": row["id"], "new_seq": seq, "new_prev": prev, "new_hash": digest})
                prev = digest
            if chained:
                session.execute(_CHAIN, chained)
                session.execute(update(_HEAD).where(_HEAD.c.id == 1).values(last_seq=seq, last_hash=prev))
            session.commit()
        total += len(rows)
        if len(rows) < batch:
            return total


class Sealer:
    """A thread that seals soon after each commit, so requests never wait for it.

    After a wake-up it waits `gather_seconds` so one sealing transaction takes the events of many
    commits, and it never queues for the lock: if another process is sealing, it tries again later.
    """

    def __init__(self, bind, idle_seconds: float = 5.0, gather_seconds: float = 0.25):
        self.bind, self.idle_seconds, self.gather_seconds = bind, idle_seconds, gather_seconds
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._loop, name="vnhis-audit-sealer", daemon=True)

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.idle_seconds)
            self._stop.wait(self.gather_seconds)
            self._wake.clear()
            try:
                if seal(self.bind, wait=False) is None:
                    self._wake.set()  # someone else is sealing; look again after the next gather
            except SQLAlchemyError as exc:
                log.warning("audit sealing failed, retrying: %s", str(exc).splitlines()[0])


_sealer: Sealer | None = None


def start_sealer(bind) -> Sealer | None:
    """Seal in a background thread of this process (PostgreSQL only; once per process)."""
    global _sealer
    if _sealer is None and bind.dialect.name == "postgresql":
        _sealer = Sealer(bind)
        _sealer._thread.start()
    return _sealer


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    if session.in_nested_transaction():
        # A savepoint rolled back: drop only the events recorded since it began.
        mark = session.info.get(_SAVEPOINTS, {}).get(session.get_nested_transaction())
        pending = session.info.get(_PENDING)
        if mark is not None and pending:
            del pending[mark:]
        return
    session.info.pop(_PENDING, None)


def _fields(ev: AuditEvent) -> dict:
    return {
        "occurred_at": ev.occurred_at, "actor_id": ev.actor_id, "actor_name": ev.actor_name,
        "action": ev.action, "target_type": ev.target_type, "target_id": ev.target_id,
        "detail": ev.detail, "ip": ev.ip,
    }


@dataclass(frozen=True)
class VerifyResult:
    checked: int
    problem: str | None = None
    event_id: int | None = None
    seq: int | None = None
    unsealed: int = 0  # committed, waiting for the sealer (not a fault)

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify(session: Session) -> VerifyResult:
    """Walk the chain in order and name the first event that was altered or removed.

    The head is read first and only events up to it are walked: events committed meanwhile (the
    system keeps running) carry higher sequence numbers and are left for the next check.
    """
    head = session.get(AuditChainHead, 1, populate_existing=True)
    unsealed = session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.seq.is_(None)))
    prev_hash, prev_id, expected_seq, checked = GENESIS_HASH, None, 1, 0
    stmt = (select(AuditEvent).where(AuditEvent.seq <= head.last_seq).order_by(AuditEvent.seq)
            .execution_options(yield_per=2000, populate_existing=True))
    for ev in session.scalars(stmt):
        if ev.seq != expected_seq:
            return VerifyResult(checked, f"event seq {expected_seq} is missing (removed) before event "
                                         f"id {ev.id}", ev.id, expected_seq)
        if content_hash(ev.seq, ev.prev_hash, _fields(ev)) != ev.hash:
            return VerifyResult(checked, f"event id {ev.id} (seq {ev.seq}) was altered: its content no "
                                         "longer matches its hash", ev.id, ev.seq)
        if ev.prev_hash != prev_hash:
            return VerifyResult(checked, f"event id {prev_id} (seq {ev.seq - 1}) was altered: the next "
                                         f"event (id {ev.id}) links to a different hash", prev_id, ev.seq - 1)
        prev_hash, prev_id, expected_seq, checked = ev.hash, ev.id, expected_seq + 1, checked + 1
    if head.last_seq != expected_seq - 1 or head.last_hash != prev_hash:
        return VerifyResult(checked, f"the chain head records seq {head.last_seq} but the trail ends at "
                                     f"seq {expected_seq - 1}: the newest events were removed or altered",
                            None, expected_seq)
    return VerifyResult(checked, unsealed=unsealed)


def search(session: Session, *, action: str | None = None, actor: str | None = None,
           target_type: str | None = None, target_id: str | None = None,
           since: datetime | None = None, until: datetime | None = None,
           page: int = 1, per_page: int = 50) -> tuple[list[AuditEvent], int]:
    """Events matching the filters, newest first, with the total count for paging."""
    from sqlalchemy import func

    stmt = select(AuditEvent)
    if action:
        # "auth." lists every authentication event; "auth.login" only that action.
        stmt = stmt.where(AuditEvent.action.startswith(action) if action.endswith(".")
                          else AuditEvent.action == action)
    if actor:
        stmt = stmt.where(AuditEvent.actor_name == actor.strip().lower())
    if target_type:
        stmt = stmt.where(AuditEvent.target_type == target_type)
    if target_id:
        stmt = stmt.where(AuditEvent.target_id == target_id)
    if since:
        stmt = stmt.where(AuditEvent.occurred_at >= since)
    if until:
        stmt = stmt.where(AuditEvent.occurred_at < until)
    total = session.scalar(select(func.count()).select_from(stmt.subquery()))
    rows = session.scalars(stmt.order_by(AuditEvent.seq.desc())
                           .offset((page - 1) * per_page).limit(per_page)).all()
    return list(rows), total

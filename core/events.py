"""Domain events: how one module reacts to another without importing it.

A producer calls `emit(session, "his.order.placed", {...})` inside its transaction. Subscribers
declared with `@subscribe("his.order.placed")` run either

- in the same transaction (`inline=True`): for effects that must commit or fail with the event
  (billing adds a charge when an order is completed); an exception aborts the producer's work;
- or later, as a job through the outbox (the default): for work that may fail and be retried on
  its own (send an order to an analyser), with the event delivered exactly when it committed.

Payloads are JSON-able facts (ids, codes, times as ISO text), not ORM objects.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from core import queue

DELIVER_JOB = "core.event.deliver"


@dataclass(frozen=True)
class Subscriber:
    event: str
    key: str  # "module.function": how a queued delivery finds it again
    func: Callable[[Session, dict], None]
    inline: bool
    queue: str


_SUBSCRIBERS: dict[str, list[Subscriber]] = {}
_BY_KEY: dict[str, Subscriber] = {}


def subscribe(event: str, *, inline: bool = False, queue_name: str = queue.DEFAULT_QUEUE):
    """Declare `func(session, payload)` as a subscriber of `event`."""
    def decorator(func):
        key = f"{func.__module__}.{func.__qualname__}"
        queue.declare_queue(queue_name)
        sub = Subscriber(event, key, func, inline, queue_name)
        if _BY_KEY.get(key) not in (None, sub):
            raise ValueError(f"subscriber {key} declared twice")
        if key not in _BY_KEY:
            _SUBSCRIBERS.setdefault(event, []).append(sub)
            _BY_KEY[key] = sub
        return func

    return decorator


def subscribers(event: str) -> list[Subscriber]:
    return list(_SUBSCRIBERS.get(event, ()))


def emit(session: Session, event: str, payload: dict, *, actor=None) -> None:
    """Announce that something happened, inside the transaction that made it happen."""
    payload = json.loads(json.dumps(payload, ensure_ascii=False))  # JSON-able now, not in the worker
    for sub in subscribers(event):
        if sub.inline:
            sub.func(session, payload)
        else:
            queue.enqueue(session, DELIVER_JOB, {"event": event, "subscriber": sub.key, "payload": payload},
                          actor=actor, queue_name=sub.queue)


@queue.job(DELIVER_JOB)
def _deliver(session: Session, job_payload: dict) -> dict:
    sub = _BY_KEY.get(job_payload["subscriber"])
    if sub is None:
        raise LookupError(f"subscriber {job_payload['subscriber']} is not installed in this process")
    sub.func(session, job_payload["payload"])
    return {"event": job_payload["event"], "subscriber": sub.key}

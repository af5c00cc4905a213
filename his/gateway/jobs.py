"""The retry of a card lookup the portal did not answer at the desk (or an emergency's background check).

A failure raises, so the queue tries again with its backoff (10 s, 20 s, 40 s … at most an hour);
the exchanges themselves are kept (committed on their own on PostgreSQL). A check answered or
replaced meanwhile is left alone.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from core.audit import Actor
from core.queue import job
from his.gateway import cards
from his.gateway.client import GatewayClient
from his.models.gateway import CardCheck

ACTOR = Actor.system("bhyt-gateway")


@job(cards.RETRY_JOB, max_attempts=12)
def retry_card_check(session: Session, payload: dict) -> dict:
    check = session.get(CardCheck, payload["check_id"], with_for_update=True)
    if check is None or check.status != "pending" or check.superseded_at is not None:
        return {"skipped": True}
    cards.look_up(session, ACTOR, check, GatewayClient.from_environment())
    return {"status": check.status, "code": check.result_code}

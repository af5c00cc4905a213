"""The retry of a card lookup the portal did not answer at the desk (or an emergency's background check).

A failed try does not raise: it is recorded on the check (attempts, problem, the audit of the try)
and the job queues itself again with a growing delay (cards.retry), as a raise would roll that
record back. After cards.MAX_TRIES tries, or when this installation has no portal, the check is
left to be checked again by hand. A check answered or replaced meanwhile is left alone.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from core.audit import Actor
from core.queue import job
from his.gateway import cards
from his.gateway.client import GatewayClient, GatewayNotConfigured
from his.models.gateway import CardCheck

ACTOR = Actor.system("bhyt-gateway")


@job(cards.RETRY_JOB, max_attempts=3)
def retry_card_check(session: Session, payload: dict) -> dict:
    check = session.get(CardCheck, payload["check_id"], with_for_update=True)
    if check is None or check.status != "pending" or check.superseded_at is not None or cards.stopped(check):
        return {"skipped": True}
    try:
        client = GatewayClient.from_environment()
    except GatewayNotConfigured:
        cards.give_up(session, ACTOR, check, "not_configured")
        return {"status": cards.state(check), "problem": check.problem}
    cards.retry(session, ACTOR, check, client)
    return {"status": cards.state(check), "code": check.result_code, "problem": check.problem,
            "attempts": check.attempts}

"""Sending claims to the BHYT gateway: a date range of valid claims becomes a batch, a queued job uploads
them through his.gateway.client and later jobs ask for the verdicts. Every claim keeps its status
(queued → sent → accepted | rejected with the portal's reason; failed after MAX_TRIES unanswered sends).

The job records a failed try on the claim and queues itself again with a growing delay, rather than
raising: a raise would roll back the record of the try, and the officer must see "gateway timed out,
try 2 of 6" on the screen. Resends carry the same request id (claim id and version), so the portal
never receives one claim twice.
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing import claims, settings, signing
from billing.models import Claim, ClaimBatch
from core import audit, config, queue
from core.audit import Actor
from core.db import utcnow
from his.gateway.client import (
    GatewayAuthError,
    GatewayClient,
    GatewayNotConfigured,
    GatewayRejected,
    GatewayUnavailable,
)

SUBMIT_JOB = "billing.claims.submit"
POLL_JOB = "billing.claims.poll"
MAX_TRIES = 6
POLL_DELAY = timedelta(seconds=30)
# Not "rejected": its request id (claim id and version) would get the cached rejection; a rebuild that
# changes its tables bumps the version and makes it valid again.
SENDABLE = ("valid", "failed")
SYSTEM = Actor.system("billing.submission")


def queue_batch(session: Session, actor: Actor, start: date, end: date, fmt: str) -> ClaimBatch:
    """Queue every valid claim of the range (invalid ones stay back with their errors)."""
    rows = [c for c in claims.of_range(session, start, end, fmt) if c.status in SENDABLE and not c.errors]
    batch = ClaimBatch(format=fmt, date_from=start, date_to=end, status="queued", claim_count=len(rows),
                       created_by=actor.id, created_at=utcnow())
    session.add(batch)
    session.flush()
    for claim in rows:
        claim.status, claim.batch_id, claim.attempts, claim.gateway_message = "queued", batch.id, 0, None
    queue.enqueue(session, SUBMIT_JOB, {"batch_id": batch.id}, actor=actor)
    audit.record(session, actor, "billing.claim.queue", batch,
                 {"format": fmt, "from": start.isoformat(), "to": end.isoformat(),
                  "claims": [c.link_key for c in rows]})
    return batch


def _of_batch(session: Session, batch: ClaimBatch, status: str) -> list[Claim]:
    return list(session.scalars(select(Claim).where(Claim.batch_id == batch.id, Claim.status == status)
                                .order_by(Claim.id)))


def send_batch(session: Session, batch: ClaimBatch, client: GatewayClient, sign: signing.Signer) -> dict:
    """Upload the batch's queued claims, each signed; stop at the first unanswered one (the gateway is down)."""
    counts = {"sent": 0, "rejected": 0, "waiting": 0, "failed": 0}
    pending = _of_batch(session, batch, "queued")
    for index, claim in enumerate(pending):
        try:
            receipt = client.upload_claim(session, file_name=claims.file_name(claim),
                                          content=claims.signed(claim, sign), kind=claim.format,
                                          request_id=f"claim-{claim.id}-v{claim.version}",
                                          subject=f"claim:{claim.id}", actor=SYSTEM.name)
        except GatewayRejected as exc:
            claim.status, claim.gateway_message, claim.answered_at = "rejected", str(exc), utcnow()
            counts["rejected"] += 1
        except (GatewayUnavailable, GatewayAuthError) as exc:
            claim.attempts += 1
            claim.gateway_message = str(exc)
            batch.last_error = str(exc)
            if claim.attempts >= MAX_TRIES:
                claim.status = "failed"
                counts["failed"] += 1
            counts["waiting"] += len(pending) - index - (claim.status == "failed")
            break
        else:
            claim.attempts += 1
            claim.status, claim.gateway_ref, claim.sent_at, claim.gateway_message = (
                "sent", receipt.receipt_id, receipt.received_at, None)
            counts["sent"] += 1
    batch.status = "sending" if counts["waiting"] else "sent"
    session.flush()
    audit.record(session, SYSTEM, "billing.claim.send", batch, counts)
    return counts


def poll_batch(session: Session, batch: ClaimBatch, client: GatewayClient) -> int:
    """Ask the verdict of every sent claim; how many are still being processed."""
    waiting = 0
    for claim in _of_batch(session, batch, "sent"):
        try:
            status = client.claim_status(session, claim.gateway_ref, subject=f"claim:{claim.id}", actor=SYSTEM.name)
        except (GatewayUnavailable, GatewayAuthError) as exc:
            batch.last_error = str(exc)
            waiting += 1
            continue
        except GatewayRejected as exc:
            claim.status, claim.gateway_message, claim.answered_at = "rejected", str(exc), utcnow()
            continue
        if status.state == "processing":
            waiting += 1
            continue
        claim.status, claim.answered_at = status.state, utcnow()
        claim.gateway_message = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in status.errors) or None
    if not waiting and not _of_batch(session, batch, "queued"):
        batch.status, batch.finished_at = "done", utcnow()
    session.flush()
    audit.record(session, SYSTEM, "billing.claim.poll", batch, {"waiting": waiting})
    return waiting


def _client() -> GatewayClient:
    return GatewayClient.from_environment()


def _signer() -> signing.Signer:
    cfg = config.load()
    return claims.signer(cfg, settings.load(cfg))


@queue.job(SUBMIT_JOB, max_attempts=3)
def _submit_job(session: Session, payload: dict) -> dict:
    batch = session.get(ClaimBatch, payload["batch_id"])
    try:
        counts = send_batch(session, batch, _client(), _signer())
    except GatewayNotConfigured as exc:
        batch.status, batch.last_error = "failed", str(exc)
        for claim in _of_batch(session, batch, "queued"):
            claim.status, claim.gateway_message = "failed", str(exc)
        return {"not_configured": True}
    round_no = payload.get("round", 1)
    if counts["waiting"]:
        queue.enqueue(session, SUBMIT_JOB, {"batch_id": batch.id, "round": round_no + 1},
                      delay=timedelta(seconds=queue.backoff_seconds(round_no)))
    if counts["sent"]:
        queue.enqueue(session, POLL_JOB, {"batch_id": batch.id}, delay=POLL_DELAY)
    return counts


@queue.job(POLL_JOB, max_attempts=3)
def _poll_job(session: Session, payload: dict) -> dict:
    batch = session.get(ClaimBatch, payload["batch_id"])
    waiting = poll_batch(session, batch, _client())
    round_no = payload.get("round", 1)
    if waiting and round_no < 100:
        queue.enqueue(session, POLL_JOB, {"batch_id": batch.id, "round": round_no + 1}, delay=POLL_DELAY)
    return {"waiting": waiting}

"""The check-in record (QĐ 130 check-in table) of an insured visit, sent to the BHYT gateway when its
first cost arises — the moment the decision names. A queued job sends it through his.gateway.client;
the portal answers a resend with the same request id (the link key) with its first answer, so the
job's retries never check a patient in twice. Every exchange is recorded by the client."""

from __future__ import annotations

from sqlalchemy.orm import Session

from billing import claimdata, giamdinh, settings, xml130
from core import audit, config, queue
from core.audit import Actor
from his.gateway.client import CheckInReceipt, GatewayClient, GatewayNotConfigured, GatewayRejected

CHECKIN_JOB = "billing.checkin.send"
SYSTEM = Actor.system("billing.checkin")


def queue_checkin(session: Session, encounter_id: int) -> None:
    """Once per encounter (the job's dedupe key), in the transaction of its first charge."""
    queue.enqueue(session, CHECKIN_JOB, {"encounter_id": encounter_id}, dedupe_key=f"billing-checkin-{encounter_id}")


def record(session: Session, encounter_id: int, conf: settings.Settings) -> bytes:
    """The check-in table of the encounter as it stands now."""
    (episode,) = claimdata.gather(session, [encounter_id], conf.facility_level)
    return giamdinh.render_table(xml130.FORMAT, "CHECKIN", [xml130.checkin(episode, conf.facility_code)])


def send(session: Session, encounter_id: int, client: GatewayClient, conf: settings.Settings) -> CheckInReceipt:
    content = record(session, encounter_id, conf)
    link_key = giamdinh.parse_table("CHECKIN", content).records[0][1]["MA_LK"]
    receipt = client.check_in(session, link_key=link_key, content=content, request_id=f"checkin-{link_key}",
                              subject=f"encounter:{encounter_id}", actor=SYSTEM.name)
    audit.record(session, SYSTEM, "billing.checkin.sent", ("encounters", encounter_id),
                 {"link_key": link_key, "transaction": receipt.transaction_id})
    return receipt


@queue.job(CHECKIN_JOB, max_attempts=8)
def _checkin_job(session: Session, payload: dict) -> dict:
    """No answer (timeout, portal down) raises: the runner tries again later with a growing delay."""
    conf = settings.load(config.load())
    if not conf.facility_code:
        return {"skipped": "VNHIS_BILLING_FACILITY_CODE is not set"}
    try:
        receipt = send(session, payload["encounter_id"], GatewayClient.from_environment(), conf)
    except GatewayNotConfigured:
        return {"skipped": "no gateway configured"}
    except GatewayRejected as exc:
        audit.record(session, SYSTEM, "billing.checkin.rejected", ("encounters", payload["encounter_id"]),
                     {"portal_code": exc.portal_code, "message": str(exc)})
        return {"rejected": exc.portal_code}
    return {"transaction_id": receipt.transaction_id}

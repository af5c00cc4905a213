"""Submission of claim batches through his.gateway.client against the gateway simulator: sent once per
claim version, a timeout or a portal that is down is recorded and retried, verdicts recorded per claim."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from billing import claims, signing, submission
from billing.models import Claim
from core.db import utcnow
from core.models import Job
from his.gateway.client import GatewayClient, GatewaySettings
from his.gateway.simulator import Simulator
from tests.billing.conftest import SYSTEM, claimable_visit, settings_for_tests, today_local

USER, PASSWORD = "bv.billing", "mat-khau-cong"


@pytest.fixture
def sim():
    with Simulator(users={USER: PASSWORD}, processing_polls=1) as simulator:
        yield simulator


def _client(sim, timeout=1.0):
    return GatewayClient(GatewaySettings(url=sim.url, username=USER, password=PASSWORD, timeout=timeout, retries=0),
                         sleep=lambda _s: None)


@pytest.fixture
def ready(db_session, clinic, tmp_path):
    key, cert = signing.make_self_signed(tmp_path)
    made = claimable_visit(db_session, clinic)
    (built,) = claims.build(db_session, SYSTEM, [made["encounter"].id], "qd130", settings_for_tests())
    claims.set_supplement(db_session, SYSTEM, built.claim, weight_kg="60")
    (built,) = claims.build(db_session, SYSTEM, [made["encounter"].id], "qd130", settings_for_tests())
    assert built.claim.status == "valid"
    day = today_local()
    batch = submission.queue_batch(db_session, SYSTEM, day - timedelta(days=1), day + timedelta(days=1), "qd130")
    return batch, built.claim, signing.load(str(key), str(cert))


def test_a_batch_is_sent_then_accepted(db_session, sim, ready):
    batch, claim, sign = ready
    assert (batch.claim_count, claim.status, claim.batch_id) == (1, "queued", batch.id)
    job = db_session.scalar(select(Job).where(Job.name == submission.SUBMIT_JOB))
    assert job.payload == {"batch_id": batch.id}
    counts = submission.send_batch(db_session, batch, _client(sim), sign)
    assert counts == {"sent": 1, "rejected": 0, "waiting": 0, "failed": 0}
    assert claim.status == "sent" and claim.gateway_ref and claim.attempts == 1
    assert submission.poll_batch(db_session, batch, _client(sim)) == 1  # the portal is still processing
    assert submission.poll_batch(db_session, batch, _client(sim)) == 0
    assert (claim.status, batch.status) == ("accepted", "done")
    assert sim.request_counts().get("upload") == 1


def test_a_portal_that_is_down_is_retried_and_the_try_recorded(db_session, sim, ready):
    batch, claim, sign = ready
    sim.configure(mode="down")
    counts = submission.send_batch(db_session, batch, _client(sim), sign)
    assert counts == {"sent": 0, "rejected": 0, "waiting": 1, "failed": 0}
    assert (claim.status, claim.attempts, batch.status) == ("queued", 1, "sending")
    assert claim.gateway_message and batch.last_error == claim.gateway_message
    sim.configure(mode="slow", slow_seconds=2)
    submission.send_batch(db_session, batch, _client(sim, timeout=0.3), sign)
    assert (claim.status, claim.attempts) == ("queued", 2)
    sim.configure(mode="normal")
    submission.send_batch(db_session, batch, _client(sim), sign)
    assert (claim.status, claim.attempts, claim.gateway_message) == ("sent", 3, None)
    # The slow try may have reached the portal: the same request id never makes a second claim there.
    receipt = claim.gateway_ref
    claim.status = "queued"
    submission.send_batch(db_session, batch, _client(sim), sign)
    assert claim.gateway_ref == receipt


def test_after_max_tries_the_claim_is_failed(db_session, sim, ready):
    batch, claim, sign = ready
    sim.configure(mode="down")
    for _ in range(submission.MAX_TRIES):
        submission.send_batch(db_session, batch, _client(sim), sign)
    assert (claim.status, claim.attempts) == ("failed", submission.MAX_TRIES)


def test_the_job_queues_its_next_try_when_the_gateway_is_down(db_session, sim, ready, monkeypatch):
    batch, claim, sign = ready
    sim.configure(mode="down")
    monkeypatch.setattr(submission, "_client", lambda: _client(sim))
    monkeypatch.setattr(submission, "_signer", lambda: sign)
    result = submission._submit_job(db_session, {"batch_id": batch.id})
    assert result["waiting"] == 1
    retry = db_session.scalars(select(Job).where(Job.name == submission.SUBMIT_JOB).order_by(Job.id.desc())).first()
    assert retry.payload == {"batch_id": batch.id, "round": 2} and retry.run_after > utcnow()
    sim.configure(mode="normal")
    assert submission._submit_job(db_session, retry.payload)["sent"] == 1
    poll = db_session.scalar(select(Job).where(Job.name == submission.POLL_JOB))
    assert poll.payload == {"batch_id": batch.id}
    assert db_session.get(Claim, claim.id).status == "sent"


def test_a_claim_the_portal_refuses_is_rejected_with_its_reason(db_session, sim, ready):
    batch, claim, sign = ready
    class Unsigned:  # a facility that forgot its signature: the portal verifies and refuses
        def sign(self, envelope):
            return envelope

    submission.send_batch(db_session, batch, _client(sim), Unsigned())
    for _ in range(5):
        if not submission.poll_batch(db_session, batch, _client(sim)):
            break
    assert claim.status == "rejected"
    assert claim.gateway_message


def _rebuild(db_session, claim):
    return claims.build(db_session, SYSTEM, [claim.encounter_id], "qd130", settings_for_tests())


def test_a_claim_with_the_gateway_is_not_rebuilt(db_session, sim, ready):
    batch, claim, sign = ready
    with pytest.raises(claims.ClaimError) as err:
        claims.check_rebuildable(claim)
    assert str(err.value) == (f"Claim {claim.link_key} is queued for the insurer's gateway; it can be rebuilt "
                              "once the gateway has answered.")
    version, digest = claim.version, claim.file_sha256
    claims.set_supplement(db_session, SYSTEM, claim, weight_kg="61")  # a correction while queued
    assert _rebuild(db_session, claim) == []
    assert (claim.status, claim.version, claim.file_sha256, claim.batch_id) == ("queued", version, digest, batch.id)
    submission.send_batch(db_session, batch, _client(sim), sign)
    receipt = claim.gateway_ref
    assert (_rebuild(db_session, claim), claim.status, claim.gateway_ref, claim.version) == (
        [], "sent", receipt, version)
    with pytest.raises(claims.ClaimError) as err:
        claims.check_rebuildable(claim)
    assert str(err.value) == (f"Claim {claim.link_key} was sent to the insurer's gateway; it can be rebuilt "
                              "once the gateway has answered.")


def test_a_rejected_claim_is_sent_again_only_as_a_new_version(db_session, sim, ready):
    batch, claim, sign = ready

    class Unsigned:
        def sign(self, envelope):
            return envelope

    submission.send_batch(db_session, batch, _client(sim), Unsigned())
    for _ in range(5):
        if not submission.poll_batch(db_session, batch, _client(sim)):
            break
    assert claim.status == "rejected"
    verdict, receipt, answered = claim.gateway_message, claim.gateway_ref, claim.answered_at
    day = today_local()
    span = (day - timedelta(days=1), day + timedelta(days=1), "qd130")
    assert submission.queue_batch(db_session, SYSTEM, *span).claim_count == 0  # the same request id: refused again
    version = claim.version
    _rebuild(db_session, claim)  # nothing changed: still rejected, still not sendable
    assert (claim.status, claim.version) == ("rejected", version)
    assert submission.queue_batch(db_session, SYSTEM, *span).claim_count == 0
    claims.check_rebuildable(claim)
    claims.set_supplement(db_session, SYSTEM, claim, weight_kg="62")
    _rebuild(db_session, claim)
    assert (claim.status, claim.version, claim.attempts) == ("valid", version + 1, 0)
    assert (claim.gateway_message, claim.gateway_ref, claim.answered_at) == (verdict, receipt, answered)
    again = submission.queue_batch(db_session, SYSTEM, *span)
    assert (again.claim_count, claim.status, claim.batch_id) == (1, "queued", again.id)

"""Jobs of the platform itself."""

from __future__ import annotations

from core import audit
from core.queue import job


@job("audit.verify", queue="default", max_attempts=3)
def verify_audit_chain(session, payload: dict) -> dict:
    """Walk the audit chain in the background (an admin asks for it from the audit screen)."""
    result = audit.verify(session)
    audit.record(session, audit.Actor.system("worker"), "audit.verified", None,
                 {"ok": result.ok, "checked": result.checked, "problem": result.problem,
                  "requested_by": payload.get("requested_by")})
    return {"ok": result.ok, "checked": result.checked, "problem": result.problem,
            "event_id": result.event_id, "seq": result.seq}

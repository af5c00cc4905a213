"""Results released by other systems become documents of the record (CV 365 III.1.1 k: the record keeps
its own copy, not a link). lis and pacs are never imported: their events carry the facts.

Each arrives once: the report id is the document's source_ref, so a redelivered event adds nothing.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import Actor
from core.events import subscribe
from ehr.models import Document
from ehr.records import create_document, ensure_record
from his.models.encounters import Encounter


def _time(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def _add(session: Session, payload: dict, form_code: str, source_ref: str, content: dict, at: str | None,
         author: Actor | None) -> None:
    """The system (lis, pacs) puts the document in the record; its author is the person who released it."""
    if session.scalar(select(Document.id).where(Document.source_ref == source_ref)) is not None:
        return
    encounter = session.get(Encounter, payload["encounter_id"])
    if encounter is None:
        raise LookupError(f"encounter {payload['encounter_id']} of {source_ref} is unknown")
    actor = Actor.system(source_ref.split(":", 1)[0])
    record = ensure_record(session, actor, encounter)
    when = _time(at)
    create_document(session, actor, record, form_code, content,
                    clinical_time=when if when and when.tzinfo else None, source_ref=source_ref, author=author)


def _person(user_id: int | None, name: str | None) -> Actor | None:
    """Who released the result, from the event (an event queued before it carried the id has the name only)."""
    if user_id is None and not name:
        return None
    return Actor(id=user_id, name=name or "")


def _results_text(results: list[dict]) -> str:
    lines = []
    for r in results:
        flag = f" [{r['flag']}]" if r.get("flag") else ""
        ref = f" ({r['reference_range']})" if r.get("reference_range") else ""
        lines.append(f"{r.get('name') or r.get('code')}: {r.get('value')} {r.get('unit') or ''}{flag}{ref}".strip())
    return "\n".join(lines)


@subscribe("lis.report.released")
def lab_report_released(session: Session, payload: dict) -> None:
    results = list(payload.get("results") or [])
    content = {"specimen_barcode": payload.get("specimen_barcode"), "released_by": payload.get("released_by"),
               "released_at": payload.get("released_at"), "order_id": payload.get("order_id"),
               "results": results, "results_text": _results_text(results)}
    _add(session, payload, "XN", f"lis:report:{payload['report_id']}", content, payload.get("released_at"),
         _person(payload.get("released_by_id"), payload.get("released_by")))


@subscribe("pacs.report.signed")
def imaging_report_signed(session: Session, payload: dict) -> None:
    keys = ("procedure", "modality", "accession_number", "study_uid", "findings", "conclusion", "signed_by",
            "signed_at", "order_id")
    content = {k: payload.get(k) for k in keys}
    _add(session, payload, "CDHA", f"pacs:report:{payload['report_id']}", content, payload.get("signed_at"),
         _person(payload.get("signed_by_id"), payload.get("signed_by")))

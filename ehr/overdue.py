"""Documents not completed in time, per author. The 12 h / 24 h rule of TT 46/2018 (repealed, but kept by
many facilities' quy chế): an entry is due 12 hours after the act, or 24 hours when the encounter lasts
more than 12 hours. "Completed" means its newest version is signed. Late entries are listed, never blocked.
Configurable as VNHIS_EHR_DEADLINE_HOURS="12,24".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from core.config import ConfigError
from core.db import utcnow
from ehr.form_defs import FORMS
from ehr.models import Document, MedicalRecord
from his.models.encounters import Encounter

LONG_ENCOUNTER = timedelta(hours=12)


def deadlines(cfg) -> tuple[int, int]:
    raw = cfg.setting("VNHIS_EHR_DEADLINE_HOURS", "12,24") if cfg is not None else "12,24"
    try:
        short, long = (int(p) for p in raw.split(","))
    except ValueError:
        raise ConfigError(f"VNHIS_EHR_DEADLINE_HOURS must be two hour counts like 12,24, got {raw!r}") from None
    if not 1 <= short <= long <= 24 * 30:
        raise ConfigError(f"VNHIS_EHR_DEADLINE_HOURS must be 1 <= short <= long <= 720, got {raw!r}")
    return short, long


@dataclass(frozen=True)
class Late:
    document: Document
    encounter: Encounter
    due: datetime


def due_at(document: Document, encounter: Encounter, now: datetime, cfg=None) -> datetime:
    short, long = deadlines(cfg)
    lasted = (encounter.ended_at or now) - encounter.started_at
    return document.clinical_time + timedelta(hours=long if lasted > LONG_ENCOUNTER else short)


def overdue(session: Session, cfg=None, now: datetime | None = None, author_id: int | None = None
            ) -> dict[str, list[Late]]:
    """Author name → their late documents, oldest due first (only `author_id`'s when given)."""
    now = now or utcnow()
    short, _long = deadlines(cfg)
    entered = [code for code, form in FORMS.items() if form.entered]
    query = (select(Document, Encounter).join(MedicalRecord, Document.record_id == MedicalRecord.id)
             .join(Encounter, MedicalRecord.encounter_id == Encounter.id)
             .where(Document.status == "active", Document.form_code.in_(entered),
                    or_(Document.signed_version.is_(None), Document.signed_version < Document.current_version),
                    Document.clinical_time < now - timedelta(hours=short))
             .order_by(Document.clinical_time))
    if author_id is not None:
        query = query.where(Document.author_id == author_id)
    rows = session.execute(query).all()
    late: dict[str, list[Late]] = {}
    for document, encounter in rows:
        due = due_at(document, encounter, now, cfg)
        if due < now:
            late.setdefault(document.author_name, []).append(Late(document, encounter, due))
    return late

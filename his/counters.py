"""Numbers that must never repeat (patient codes, encounter codes).

On PostgreSQL each counter is a sequence: no row lock, so concurrent registrations do not queue
behind each other (a rolled-back transaction leaves a gap, which codes may have). On SQLite, which
has one writer at a time anyway, a counter row does the same job.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.db import is_postgresql
from his.models.patients import Counter

SEQUENCES = {"patient_code": "his_patient_code_seq", "encounter_code": "his_encounter_code_seq"}


def next_value(session: Session, name: str) -> int:
    if is_postgresql(session):
        return session.execute(text(f"SELECT nextval('{SEQUENCES[name]}')")).scalar_one()
    row = session.get(Counter, name, with_for_update=True)
    if row is None:
        try:
            with session.begin_nested():
                session.add(Counter(name=name, value=0))
        except IntegrityError:
            pass  # created meanwhile by another transaction
        row = session.get(Counter, name, with_for_update=True, populate_existing=True)
    row.value += 1
    session.flush()
    return row.value

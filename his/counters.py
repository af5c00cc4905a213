"""Numbers that must never repeat (patient codes, encounter codes), from a locked counter row."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from his.models.patients import Counter


def next_value(session: Session, name: str) -> int:
    """The next value of counter `name` (1 for a new counter); concurrent callers queue on the row lock."""
    row = session.get(Counter, name, with_for_update=True)
    if row is None:
        try:
            with session.begin_nested():
                session.add(Counter(name=name, value=0))
        except IntegrityError:
            pass  # another transaction created it first; its row lock orders us after it
        row = session.get(Counter, name, with_for_update=True, populate_existing=True)
    row.value += 1
    session.flush()
    return row.value

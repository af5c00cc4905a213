"""core.db.insert_rows: the same rows, conflicts and RETURNING on PostgreSQL (driver path) and SQLite (Core)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, select
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session

from core.db import JSONType, UTCDateTime, insert_rows, make_engine


def _table() -> Table:
    return Table("test_insert_rows", MetaData(), Column("id", Integer, primary_key=True, autoincrement=True),
                 Column("code", String(20), unique=True, nullable=False), Column("detail", JSONType),
                 Column("at", UTCDateTime))


def _check(session: Session, table: Table) -> None:
    at = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
    first = insert_rows(session, table, [{"code": "A", "detail": {"n": 1, "tên": "Nguyễn"}, "at": at}],
                        skip_conflicts_on="code", returning=("id", "code"))
    assert [code for _pk, code in first] == ["A"]
    # A batch with a row already there: only the new ones come back.
    more = insert_rows(session, table, [{"code": code, "detail": {}, "at": at} for code in ("A", "B", "C")],
                       skip_conflicts_on="code", returning=("id", "code"))
    assert sorted(code for _pk, code in more) == ["B", "C"]
    assert insert_rows(session, table, [{"code": "D", "detail": None, "at": None}]) == []
    rows = session.execute(select(table.c.code, table.c.detail, table.c.at).order_by(table.c.code)).all()
    assert [r.code for r in rows] == ["A", "B", "C", "D"]
    assert rows[0].detail == {"n": 1, "tên": "Nguyễn"} and rows[0].at == at and rows[3].at is None
    with pytest.raises((ValueError, StatementError), match="naive"):  # the column's own bind processing applies
        insert_rows(session, table, [{"code": "E", "detail": {}, "at": datetime(2026, 12, 2)}])


def test_insert_rows_on_postgresql(db_session):
    table = _table()
    table.create(db_session.connection())  # inside the test's transaction, rolled back after
    _check(db_session, table)


def test_insert_rows_on_sqlite(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'rows.db'}")
    table = _table()
    table.metadata.create_all(engine)
    with Session(engine) as session:
        _check(session, table)
    engine.dispose()

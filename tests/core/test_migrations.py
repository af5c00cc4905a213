"""The schema comes from Alembic: one head, matching the models, on PostgreSQL and SQLite."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from core import migrate
from core.db import make_engine, metadata
from core.modules import import_models


def test_exactly_one_head():
    assert len(migrate.heads()) == 1


def test_migrated_postgresql_matches_the_models(engine):
    import_models()
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    assert migrate.current(engine) == migrate.heads()[0]


def test_migrations_run_on_sqlite_down_and_up(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'vnhis.db'}")
    migrate.upgrade(engine)
    assert {"users", "audit_events", "jobs"} <= set(inspect(engine).get_table_names())
    migrate.upgrade(engine)  # idempotent at head
    from alembic import command

    with engine.begin() as conn:
        command.downgrade(migrate.alembic_config(connection=conn), "base")
    assert "users" not in inspect(engine).get_table_names()
    migrate.upgrade(engine)
    assert migrate.current(engine) == migrate.heads()[0]
    engine.dispose()


def test_postgresql_downgrade_to_base_and_up(committed_db_url):
    from alembic import command

    engine = make_engine(committed_db_url)
    with engine.begin() as conn:
        command.downgrade(migrate.alembic_config(connection=conn), "base")
    assert "audit_events" not in inspect(engine).get_table_names()
    migrate.upgrade(engine)
    assert migrate.current(engine) == migrate.heads()[0]
    engine.dispose()

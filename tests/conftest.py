"""Test fixtures on real PostgreSQL and Redis.

The schema is built once per run by the Alembic migrations (never create_all) in a template
database. Most tests run inside a transaction of that database that is rolled back; tests that
need real commits seen by other processes or threads get a fresh copy of the template.
"""

from __future__ import annotations

import os
import uuid

import pytest
import redis
from sqlalchemy import text
from sqlalchemy.engine import make_url

from core import migrate
from core.db import make_engine, make_session_factory

PG_URL = os.environ.get("VNHIS_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/vnhis_test")
REDIS_URL = os.environ.get("VNHIS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _admin_engine():
    return make_engine(make_url(PG_URL).set(database="postgres").render_as_string(False),
                       isolation_level="AUTOCOMMIT")


def _recreate(admin, name: str, template: str | None = None) -> None:
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))


RUN_ID = f"{os.getpid()}"


@pytest.fixture(scope="session")
def pg_template():
    """Name of a database built by running every migration; nothing stays connected to it, so
    CREATE DATABASE ... TEMPLATE can copy it."""
    admin = _admin_engine()
    name = f"{make_url(PG_URL).database}_tpl_{RUN_ID}"
    _recreate(admin, name)
    engine = make_engine(make_url(PG_URL).set(database=name).render_as_string(False))
    migrate.upgrade(engine)
    engine.dispose()
    yield name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def engine(pg_template):
    """The database most tests use, each inside a rolled-back transaction."""
    admin = _admin_engine()
    name = f"{make_url(PG_URL).database}_{RUN_ID}"
    _recreate(admin, name, template=pg_template)
    engine = make_engine(make_url(PG_URL).set(database=name).render_as_string(False))
    yield engine
    engine.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def connection(engine):
    with engine.connect() as conn:
        outer = conn.begin()
        yield conn
        outer.rollback()


@pytest.fixture
def session_factory(connection):
    """Sessions whose commit only releases a savepoint of the test's rolled-back transaction."""
    factory = make_session_factory(connection)
    factory.configure(join_transaction_mode="create_savepoint")
    return factory


@pytest.fixture
def db_session(session_factory):
    session = session_factory()
    yield session
    session.close()


@pytest.fixture
def committed_db_url(pg_template):
    """A fresh database, copied from the migrated template, for tests whose commits must be real."""
    admin = _admin_engine()
    name = f"vnhis_t_{uuid.uuid4().hex[:10]}"
    _recreate(admin, name, template=pg_template)
    url = make_url(PG_URL).set(database=name).render_as_string(False)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def empty_database():
    """A new PostgreSQL database with no tables at all, as an operator creates one to restore into."""
    admin, name = _admin_engine(), f"vnhis_r_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(PG_URL).set(database=name).render_as_string(False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def redis_client():
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


# --- the web application ---------------------------------------------------------------------

def make_config(tmp_path, **overrides):
    from core.config import Config

    values = {"env": "test", "database_url": PG_URL, "redis_url": None, "storage_dir": tmp_path / "storage",
              "secret_key": "test-secret-" + "x" * 40, "timezone": "Asia/Ho_Chi_Minh"}
    values.update(overrides)
    return Config(**values)


@pytest.fixture
def app(session_factory, tmp_path):
    from core.app import create_app

    return create_app(make_config(tmp_path), session_factory=session_factory)


@pytest.fixture
def client(app):
    return app.test_client()


PASSWORD = "mat-khau-thu-nghiem"


@pytest.fixture
def make_user(db_session):
    """Create (and commit to the test's savepoint) a user with the given roles."""
    from core import auth
    from core.audit import Actor

    def _make(username: str, *roles: str, machine: bool = False):
        user = auth.create_user(db_session, Actor.system("test"), username=username, full_name=username.title(),
                                password=None if machine else PASSWORD, roles=list(roles), is_machine=machine)
        db_session.commit()
        return user

    return _make


def csrf_token(client, path: str = "/login") -> str:
    import re

    html = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def login(client, username: str, password: str = PASSWORD):
    return client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": csrf_token(client)})


@pytest.fixture
def page():
    """A headless Chromium page (Debian's chromium, driven by Playwright)."""
    from tests.browser import CHROMIUM, CHROMIUM_FLAGS

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: the test command installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield browser.new_context(locale="vi-VN").new_page()
        browser.close()

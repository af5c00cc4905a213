"""`vnhis backup` / `vnhis restore` as an operator runs them: a round trip into an empty database and file
store is proved by the manifest (rows, audit chain head, files); a damaged backup or a non-empty target is
refused and changes nothing."""

import json

import pytest
from sqlalchemy import inspect, text

from core import auth, migrate
from core.audit import Actor
from core.backup import verify_restore
from core.config import load
from core.db import make_engine, make_session_factory
from tests.browser import server_env, vnhis


def _env(tmp_path, url: str, storage) -> dict:
    return server_env(tmp_path, VNHIS_ENV="development", VNHIS_DATABASE_URL=url, VNHIS_STORAGE_DIR=str(storage),
                      VNHIS_SECRET_KEY="b" * 48)


def _add_users(url: str) -> None:
    engine = make_engine(url)
    with make_session_factory(engine)() as session:
        for name in ("bs.an", "dd.binh"):
            auth.create_user(session, Actor.system("test"), username=name, full_name=name,
                             password="mat-khau-rat-dai-2026", roles=["doctor"])
        session.commit()
    engine.dispose()


@pytest.fixture
def saved(committed_db_url, tmp_path):
    """A database with accounts (and their audit events) and a file store with one image, backed up."""
    store = tmp_path / "store"
    (store / "dicom/2026/12").mkdir(parents=True)
    (store / "dicom/2026/12/ct.dcm").write_bytes(b"DICM" + bytes(range(256)) * 40)
    _add_users(committed_db_url)
    done = vnhis(_env(tmp_path, committed_db_url, store), "backup", "--out", str(tmp_path / "bk"))
    assert done.returncode == 0, done.stderr
    return tmp_path / "bk", json.loads((tmp_path / "bk/manifest.json").read_text())


def test_backup_then_restore_into_an_empty_database_is_verified(saved, empty_database, tmp_path):
    backup_dir, manifest = saved
    assert manifest["rows"]["users"] == 2 and manifest["storage_files"] == 1
    assert manifest["audit_head"]["seq"] >= 2 and set(manifest["sha256"]) == {"database.dump", "storage.tar"}
    new_store = tmp_path / "new-store"
    done = vnhis(_env(tmp_path, empty_database, new_store), "restore", str(backup_dir))
    assert done.returncode == 0, done.stderr
    assert f"ok    audit chain intact ({manifest['audit_head']['seq']} events)" in done.stdout
    assert "ok    1 stored files" in done.stdout and done.stdout.rstrip().endswith("and verified")
    assert (new_store / "dicom/2026/12/ct.dcm").read_bytes() == b"DICM" + bytes(range(256)) * 40
    engine = make_engine(empty_database)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users")).scalar_one() == 2
    engine.dispose()

    again = vnhis(_env(tmp_path, empty_database, new_store), "restore", str(backup_dir))
    assert again.returncode == 1
    assert "the target database is not empty: restore into a new database, or pass --replace" in again.stderr
    (new_store / "stray.tmp").write_bytes(b"x")
    replaced = vnhis(_env(tmp_path, empty_database, new_store), "restore", "--replace", str(backup_dir))
    assert replaced.returncode == 0, replaced.stderr
    assert sorted(p.name for p in new_store.rglob("*") if p.is_file()) == ["ct.dcm"]
    assert oct(backup_dir.stat().st_mode & 0o777) == "0o700"


def test_a_damaged_backup_is_refused_before_anything_is_written(saved, empty_database, tmp_path):
    backup_dir, _manifest = saved
    dump = backup_dir / "database.dump"
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    done = vnhis(_env(tmp_path, empty_database, tmp_path / "s2"), "restore", str(backup_dir))
    assert done.returncode == 1
    assert "database.dump does not match its SHA-256 in the manifest: the backup is damaged" in done.stderr
    engine = make_engine(empty_database)
    assert inspect(engine).get_table_names() == []
    engine.dispose()
    assert not (tmp_path / "s2").exists()


def test_verification_names_what_differs_from_the_backup(saved, committed_db_url, tmp_path):
    _backup_dir, manifest = saved
    manifest = {**manifest, "rows": {**manifest["rows"], "users": 3}, "storage_files": 2}
    cfg = load({"VNHIS_ENV": "development", "VNHIS_DATABASE_URL": committed_db_url,
                "VNHIS_STORAGE_DIR": str(tmp_path / "store"), "VNHIS_SECRET_KEY": "b" * 48})
    engine = make_engine(committed_db_url)
    report = verify_restore(cfg, engine, manifest, make_session_factory(engine))
    engine.dispose()
    assert not report.ok
    assert report.failures[:2] == ["users: 2 rows, the backup has 3", "1 files in the store, the backup has 2"]


def test_sqlite_round_trip(tmp_path):
    source = f"sqlite:///{tmp_path / 'clinic.db'}"
    engine = make_engine(source)
    migrate.upgrade(engine)
    engine.dispose()
    _add_users(source)
    env = _env(tmp_path, source, tmp_path / "store")
    assert vnhis(env, "backup", "--out", str(tmp_path / "bk")).returncode == 0
    target = _env(tmp_path, f"sqlite:///{tmp_path / 'restored.db'}", tmp_path / "store2")
    done = vnhis(target, "restore", str(tmp_path / "bk"))
    assert done.returncode == 0, done.stderr
    assert "ok    audit chain intact" in done.stdout

"""`vnhis backup` and `vnhis restore`: the database and the file store, with a manifest that proves a restore.

A backup is a directory:
    database.dump    PostgreSQL: `pg_dump --format=custom` taken in one snapshot
    database.sqlite  SQLite: the online backup API (one or the other)
    storage.tar      the file store (VNHIS_STORAGE_DIR), taken after the database, so every file
                     the database names is in it (a file is written before its row is committed)
    manifest.json    schema revision, row count of every table and the audit chain head, all read in
                     the dump's snapshot, and the SHA-256 of each file above

`restore` refuses a backup whose files do not match their SHA-256, and a database or file store that is
not empty unless told to replace it. Afterwards `verify_restore` counts the rows again, walks the audit
chain (its head must be the one saved), and runs each module's own check: a domain module may provide
`<module>.integrity.check(session, config) -> (summary, failures)` (the medical record re-verifies every
version's hash and every signature).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Engine, make_url

from core import audit, migrate
from core.config import Config
from core.models import AuditChainHead

MANIFEST = "manifest.json"
PG_DUMP = "database.dump"
SQLITE_COPY = "database.sqlite"
STORAGE = "storage.tar"
FORMAT = 1


class BackupError(Exception):
    """One line for the operator: what is wrong and what to do."""


@dataclass
class RestoreReport:
    checks: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _libpq(engine: Engine) -> tuple[str, dict]:
    """pg_dump/pg_restore take a libpq URL (not SQLAlchemy's `postgresql+psycopg://`); the password goes in
    the environment, never on a command line that `ps` shows."""
    url = engine.url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    env = {**os.environ, **({"PGPASSWORD": engine.url.password} if engine.url.password else {})}
    return url, env


def _run(cmd: list[str], what: str, env: dict) -> None:
    if shutil.which(cmd[0]) is None:
        raise BackupError(f"{cmd[0]} is not installed (Debian: apt-get install postgresql-client)")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        detail = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise BackupError(f"{what} failed: {detail}")


def _counts(conn) -> dict[str, int]:
    tables = sorted(t for t in inspect(conn).get_table_names() if t != "alembic_version")
    return {t: conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar_one() for t in tables}  # noqa: S608


def _chain_head(conn) -> dict | None:
    head = conn.execute(select(AuditChainHead.last_seq, AuditChainHead.last_hash)).first()
    return None if head is None else {"seq": head.last_seq, "hash": head.last_hash}


def _empty_dir(path: Path) -> bool:
    return not path.exists() or not any(path.iterdir())


def backup(cfg: Config, engine: Engine, out: Path) -> dict:
    """Write a backup of the database and the file store into the new directory `out`; returns the manifest."""
    if not _empty_dir(out):
        raise BackupError(f"{out} is not empty: give a new directory for each backup")
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o700)  # a backup holds every patient's data
    if engine.dialect.name == "postgresql":
        url, env = _libpq(engine)
        audit.seal(engine)  # so the saved head covers every committed event
        with engine.connect() as conn:
            # One snapshot for the dump and the counts: the manifest describes exactly what was dumped.
            conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
            snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
            _run(["pg_dump", "--format=custom", "--no-owner", f"--snapshot={snapshot}",
                  f"--file={out / PG_DUMP}", url], "pg_dump", env)
            counts, head, revision = _counts(conn), _chain_head(conn), migrate.current(conn)
            conn.rollback()
        database_file = PG_DUMP
    else:
        source = sqlite3.connect(make_url(engine.url).database)
        target = sqlite3.connect(out / SQLITE_COPY)
        with target:
            source.backup(target)
        source.close()
        target.close()
        copy = _sqlite_engine(out / SQLITE_COPY)
        with copy.connect() as conn:
            counts, head, revision = _counts(conn), _chain_head(conn), migrate.current(conn)
        copy.dispose()
        database_file = SQLITE_COPY
    files = 0
    with tarfile.open(out / STORAGE, "w") as tar:
        if cfg.storage_dir.exists():
            for path in sorted(cfg.storage_dir.rglob("*")):
                if path.is_file():
                    tar.add(path, arcname=str(path.relative_to(cfg.storage_dir)), recursive=False)
                    files += 1
    manifest = {
        "format": FORMAT, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": engine.dialect.name, "revision": revision, "rows": counts, "audit_head": head,
        "storage_files": files,
        "sha256": {database_file: _sha256(out / database_file), STORAGE: _sha256(out / STORAGE)},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    for path in out.iterdir():
        path.chmod(0o600)
    return manifest


def _sqlite_engine(path: Path) -> Engine:
    from core.db import make_engine

    return make_engine(f"sqlite:///{path}")


def read_manifest(source: Path) -> dict:
    """The manifest, after checking every file it lists against its SHA-256."""
    try:
        manifest = json.loads((source / MANIFEST).read_text())
    except FileNotFoundError:
        raise BackupError(f"{source} is not a vnhis backup (no {MANIFEST})") from None
    except ValueError:
        raise BackupError(f"{source / MANIFEST} is not valid JSON") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{source} has backup format {manifest.get('format')!r}; this version reads {FORMAT}")
    for name, digest in manifest["sha256"].items():
        path = source / name
        if not path.is_file():
            raise BackupError(f"{name} is missing from {source}")
        if _sha256(path) != digest:
            raise BackupError(f"{name} does not match its SHA-256 in the manifest: the backup is damaged")
    return manifest


def restore(cfg: Config, engine: Engine, source: Path, *, replace: bool = False) -> dict:
    """Put a checked backup back into the configured database and file store; returns its manifest."""
    manifest = read_manifest(source)
    if manifest["database"] != engine.dialect.name:
        raise BackupError(f"this backup is of a {manifest['database']} database; VNHIS_DATABASE_URL is "
                          f"{engine.dialect.name}")
    with engine.connect() as conn:
        has_tables = bool(inspect(conn).get_table_names())
    if has_tables and not replace:
        raise BackupError("the target database is not empty: restore into a new database, or pass --replace "
                          "to overwrite it")
    if not _empty_dir(cfg.storage_dir) and not replace:
        raise BackupError(f"the file store {cfg.storage_dir} is not empty: pass --replace to overwrite it")
    # The files are unpacked beside the store first: a failed extraction leaves the old store untouched.
    staging = cfg.storage_dir.with_name(cfg.storage_dir.name + ".restoring")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with tarfile.open(source / STORAGE) as tar:
            tar.extractall(staging, filter="data")  # "data": no absolute paths, links or devices
        if engine.dialect.name == "postgresql":
            url, env = _libpq(engine)
            _run(["pg_restore", "--no-owner", "--exit-on-error", "--single-transaction",
                  *(["--clean", "--if-exists"] if has_tables else []), f"--dbname={url}", str(source / PG_DUMP)],
                 "pg_restore", env)
        else:
            engine.dispose()
            # SQLite's backup API writes the pages through SQLite, so a stale -wal beside the file is reset too.
            backup_copy = sqlite3.connect(source / SQLITE_COPY)
            target = sqlite3.connect(make_url(engine.url).database)
            with target:
                backup_copy.backup(target)
            backup_copy.close()
            target.close()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if cfg.storage_dir.exists():
        old = cfg.storage_dir.with_name(cfg.storage_dir.name + ".replaced")
        shutil.rmtree(old, ignore_errors=True)
        cfg.storage_dir.rename(old)
        staging.rename(cfg.storage_dir)
        shutil.rmtree(old)
    else:
        cfg.storage_dir.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(cfg.storage_dir)
    os.sync()
    return manifest


def verify_restore(cfg: Config, engine: Engine, manifest: dict, session_factory) -> RestoreReport:
    """Compare the restored database with the manifest, walk the audit chain, run the modules' checks."""
    report = RestoreReport()
    with engine.connect() as conn:
        counts, head, revision = _counts(conn), _chain_head(conn), migrate.current(conn)
    if revision != manifest["revision"]:
        report.failures.append(f"schema revision {revision}, the backup has {manifest['revision']}")
    differing = [f"{t}: {counts.get(t)} rows, the backup has {n}" for t, n in manifest["rows"].items()
                 if counts.get(t) != n]
    report.failures.extend(differing)
    if not differing:
        report.checks.append(f"{len(counts)} tables, {sum(counts.values())} rows as in the backup")
    files = sum(1 for p in cfg.storage_dir.rglob("*") if p.is_file())
    if files != manifest["storage_files"]:
        report.failures.append(f"{files} files in the store, the backup has {manifest['storage_files']}")
    else:
        report.checks.append(f"{files} stored files")
    session = session_factory()
    try:
        result = audit.verify(session)
        if not result.ok:
            report.failures.append(f"audit chain: {result.problem}")
        elif head != manifest["audit_head"]:
            report.failures.append(f"audit chain head is {head}, the backup has {manifest['audit_head']}")
        else:
            report.checks.append(f"audit chain intact ({result.checked} events)")
        for name in cfg.modules:
            try:
                integrity = importlib.import_module(f"{name}.integrity")
            except ModuleNotFoundError as exc:
                if exc.name != f"{name}.integrity":
                    raise
                continue
            summary, failures = integrity.check(session, cfg)
            report.failures.extend(f"{name}: {f}" for f in failures)
            if not failures:
                report.checks.append(f"{name}: {summary}")
    finally:
        session.rollback()
        session.close()
    return report

"""The `vnhis` command. Problems are reported as one line on stderr with a non-zero exit."""

from __future__ import annotations

import getpass
import logging
import os
import signal
import sys
import threading
from pathlib import Path

import click
import redis
from sqlalchemy import select

from core import config as config_mod
from core import db as db_mod
from core import migrate, modules


def _config() -> config_mod.Config:
    return config_mod.load()


def _engine(cfg: config_mod.Config, check: bool = True):
    engine = db_mod.make_engine(cfg.database_url)
    if check:
        db_mod.check_connection(engine)
    return engine


def _require_current_schema(engine) -> None:
    current, heads = migrate.current(engine), migrate.heads()
    if current not in heads:
        raise config_mod.ConfigError(f"the database schema is at {current or 'nothing'} but this version needs "
                                     f"{', '.join(heads)}: run `vnhis db upgrade`")


def _session(cfg: config_mod.Config):
    engine = _engine(cfg)
    _require_current_schema(engine)
    modules.import_models(cfg.modules)
    return db_mod.make_session_factory(engine)()


def _cli_actor():
    from core.audit import Actor

    return Actor.system(f"cli:{getpass.getuser()}")


def _logging() -> None:
    logging.basicConfig(level=os.environ.get("VNHIS_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """vnhis — hospital information system."""


# --- database -----------------------------------------------------------------------------------

@cli.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    cfg = _config()
    engine = _engine(cfg)
    migrate.upgrade(engine, revision, modules=cfg.modules)
    click.echo(f"database at revision {migrate.current(engine)} ({config_mod.safe_url(cfg.database_url)})")


@db.command("current")
def db_current() -> None:
    """Show the revision the database is at, and whether it is the newest."""
    cfg = _config()
    current, heads = migrate.current(_engine(cfg)), migrate.heads()
    state = "up to date" if current in heads else f"behind (newest: {', '.join(heads)})"
    click.echo(f"{current or 'empty'} — {state}")
    if current not in heads:
        sys.exit(1)


# --- web and worker -----------------------------------------------------------------------------

def _serve(cfg: config_mod.Config, host: str, port: int, workers: int, threads: int) -> None:
    from gunicorn.app.base import BaseApplication

    from core.app import create_app

    class _Server(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("threads", threads)
            self.cfg.set("accesslog", "-")
            self.cfg.set("timeout", 120)

        def load(self):
            # Built in each worker process, after the fork: its engine and job thread are its own.
            return create_app(cfg)

    click.echo(f"vnhis serving on http://{host}:{port} ({config_mod.safe_url(cfg.database_url)}, "
               f"queue: {'Redis' if cfg.redis_url else 'in-process'})")
    _Server().run()


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 128))
def serve(host: str, port: int, workers: int, threads: int) -> None:
    """Serve the web UI and API with gunicorn."""
    _logging()
    cfg = _config()
    engine = _engine(cfg)
    _require_current_schema(engine)
    engine.dispose()  # no connection of the master may leak into the forked workers
    _serve(cfg, host, port, workers, threads)


@cli.command()
@click.option("--queues", default="", help="comma-separated queue names in priority order (default: all)")
@click.option("--burst", is_flag=True, help="exit when no work is left")
def worker(queues: str, burst: bool) -> None:
    """Run background jobs (from Redis, or polling the database when VNHIS_REDIS_URL is unset)."""
    from core import queue

    _logging()
    cfg = _config()
    engine = _engine(cfg)
    _require_current_schema(engine)
    modules.import_models(cfg.modules)
    from core import audit

    audit.start_sealer(engine)

    names = [q.strip() for q in queues.split(",") if q.strip()] or queue.known_queues()
    unknown = sorted(set(names) - set(queue.known_queues()))
    if unknown:
        raise click.ClickException(f"unknown queue(s) {', '.join(unknown)}; known: {', '.join(queue.known_queues())}")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    click.echo(f"vnhis worker on queues {', '.join(names)} via {'Redis' if cfg.redis_url else 'database polling'}")
    try:
        done = queue.run_worker(db_mod.make_session_factory(engine), cfg.redis_url, names, stop_event=stop,
                                burst=burst)
    except redis.RedisError as exc:  # only with --burst: a long-running worker waits Redis out
        raise click.ClickException(f"Redis at {config_mod.safe_url(cfg.redis_url)} does not answer: {exc}") from None
    click.echo(f"worker stopped after {done} job(s)")


# --- administration -----------------------------------------------------------------------------

@cli.group()
def admin() -> None:
    """Users and API tokens."""


@admin.command("create-user")
@click.argument("username")
@click.option("--full-name", required=True)
@click.option("--role", "roles", multiple=True, required=True, help="repeat for several roles")
@click.option("--machine", is_flag=True, help="machine account: API token only, no password")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
def create_user(username: str, full_name: str, roles: tuple[str, ...], machine: bool, password_stdin: bool) -> None:
    """Create a user (the password is asked for, never given on the command line)."""
    from core import auth

    password = None
    if not machine:
        if password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    session = _session(_config())
    try:
        user = auth.create_user(session, _cli_actor(), username=username, full_name=full_name,
                                password=password, roles=list(roles), is_machine=machine)
    except auth.UserError as exc:
        raise click.ClickException(_user_error_text(exc)) from None
    session.commit()
    click.echo(f"created user {user.username} (id {user.id}) with roles {', '.join(sorted(roles))}")


def _user_error_text(exc) -> str:
    return {
        "bad_username": "username must be 3-80 characters: lower-case letters, digits, '.', '_' or '-'",
        "username_taken": f"username {exc.params.get('username')} is already taken",
        "unknown_role": f"unknown role(s): {exc.params.get('roles')}",
        "password_required": "a password is required",
        "password_too_short": f"the password must have at least {exc.params.get('min')} characters",
        "full_name_required": "--full-name must not be empty",
    }[exc.code]


def _user_by_name(session, username: str):
    from core.models import User

    user = session.scalar(select(User).where(User.username == username.strip().lower()))
    if user is None:
        raise click.ClickException(f"no user named {username}")
    return user


@admin.command("create-token")
@click.argument("username")
@click.option("--name", required=True, help="what the token is for, e.g. 'XN-1000 analyser'")
def create_token(username: str, name: str) -> None:
    """Create an API token for USERNAME and print it (shown only once)."""
    from core import auth

    session = _session(_config())
    token, record = auth.create_token(session, _cli_actor(), _user_by_name(session, username), name)
    session.commit()
    click.echo(token)


@admin.command("list-users")
def list_users() -> None:
    """List users with their roles and state."""
    from core.models import User

    session = _session(_config())
    for user in session.scalars(select(User).order_by(User.username)):
        state = "active" if user.is_active else "disabled"
        if user.locked_until and user.locked_until > db_mod.utcnow():
            state = "locked"
        kind = "machine" if user.is_machine else "person"
        click.echo(f"{user.username:<20} {kind:<8} {state:<8} {','.join(sorted(user.role_codes))}")


@admin.command("unlock")
@click.argument("username")
def unlock(username: str) -> None:
    """Clear failed logins and a lock on USERNAME."""
    from core import audit

    session = _session(_config())
    user = _user_by_name(session, username)
    user.failed_logins, user.locked_until = 0, None
    audit.record(session, _cli_actor(), "user.unlock", user)
    session.commit()
    click.echo(f"unlocked {user.username}")


# --- audit --------------------------------------------------------------------------------------

@cli.group("audit")
def audit_group() -> None:
    """The tamper-evident audit trail."""


@audit_group.command("verify")
def audit_verify() -> None:
    """Seal what is waiting, walk the hash chain; exit 1 naming the first altered or removed event."""
    from core import audit

    cfg = _config()
    session = _session(cfg)
    if session.get_bind().dialect.name == "postgresql":
        audit.seal(session.get_bind())
    result = audit.verify(session)
    session.rollback()
    if result.ok:
        waiting = f" ({result.unsealed} more committed meanwhile, not yet sealed)" if result.unsealed else ""
        click.echo(f"audit chain intact: {result.checked} events verified{waiting}")
        return
    click.echo(f"audit chain BROKEN after {result.checked} good events: {result.problem}", err=True)
    sys.exit(1)


# --- backup and restore ----------------------------------------------------------------------

@cli.command("backup")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="a new directory for this backup")
def backup_cmd(out: Path) -> None:
    """Back up the database and the file store, with a manifest to verify a restore against."""
    from core import backup

    cfg = _config()
    engine = _engine(cfg)
    _require_current_schema(engine)
    modules.import_models(cfg.modules)
    try:
        manifest = backup.backup(cfg, engine, out)
    except backup.BackupError as exc:
        raise click.ClickException(str(exc)) from None
    rows = sum(manifest["rows"].values())
    click.echo(f"backup written to {out}: {len(manifest['rows'])} tables, {rows} rows, "
               f"{manifest['storage_files']} stored files, audit chain at seq "
               f"{(manifest['audit_head'] or {}).get('seq', 0)}")


@cli.command("restore")
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--replace", is_flag=True, help="overwrite a database and file store that are not empty")
def restore_cmd(source: Path, replace: bool) -> None:
    """Restore a backup into the configured database and file store, then prove it: row counts, the audit
    chain, and each module's own check (the medical records' hashes and signatures). Exit 1 if one fails."""
    from core import backup

    cfg = _config()
    engine = _engine(cfg)
    modules.import_models(cfg.modules)
    try:
        manifest = backup.restore(cfg, engine, source, replace=replace)
    except backup.BackupError as exc:
        raise click.ClickException(str(exc)) from None
    engine.dispose()
    engine = _engine(cfg)
    report = backup.verify_restore(cfg, engine, manifest, db_mod.make_session_factory(engine))
    for line in report.checks:
        click.echo(f"ok    {line}")
    for line in report.failures:
        click.echo(f"FAIL  {line}", err=True)
    if not report.ok:
        sys.exit(1)
    click.echo(f"restored {source} (taken {manifest['created_at']}) and verified")


# --- demo ---------------------------------------------------------------------------------------

@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--no-serve", is_flag=True, help="prepare and seed only")
def demo(host: str, port: int, no_serve: bool) -> None:
    """Prepare the embedded demo (SQLite under ./var, in-process queue), seed it, and serve it."""
    from core import demo as demo_mod

    if os.environ.get("VNHIS_ENV") == "production":
        raise click.ClickException("refusing to seed demo accounts with VNHIS_ENV=production")
    os.environ["VNHIS_ENV"] = "development"
    _logging()
    cfg = _config()
    engine = _engine(cfg)
    migrate.upgrade(engine, modules=cfg.modules)
    session = db_mod.make_session_factory(engine)()
    created = demo_mod.seed(session, cfg.modules)
    session.commit()
    session.close()
    engine.dispose()
    click.echo(f"demo ready ({config_mod.safe_url(cfg.database_url)}); {created} demo account(s) created")
    click.echo(f"log in at http://{host}:{port}/login as {demo_mod.ADMIN_USER} / {demo_mod.DEMO_PASSWORD}")
    if not no_serve:
        _serve(cfg, host, port, workers=1, threads=8)


def main() -> None:
    for module in modules.load(_module_names()):
        register = getattr(module, "register_cli", None)
        if register is not None:
            register(cli)
    try:
        cli.main(prog_name="vnhis", standalone_mode=True)
    except config_mod.ConfigError as exc:
        click.echo(f"vnhis: {exc}", err=True)
        sys.exit(2)


def _module_names() -> list[str]:
    raw = os.environ.get("VNHIS_MODULES")
    names = [m.strip() for m in raw.split(",") if m.strip()] if raw else config_mod.DEFAULT_MODULES
    return [m for m in names if m in config_mod.DEFAULT_MODULES]  # config.load() reports the rest

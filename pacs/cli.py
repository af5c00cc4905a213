"""`vnhis pacs`: run the DICOM node; `vnhis pacs remote …` manages known nodes; `vnhis pacs export`."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from pathlib import Path

import click


def _serve_one(cfg, settings, host: str, port: int, ae_title: str) -> None:
    from core import audit, modules
    from core import db as db_mod
    from core.cli import _require_current_schema
    from pacs.scp import MAX_ASSOCIATIONS, Node

    # A connection per concurrent association, and no ping before each message's transaction (a dropped
    # connection fails that one message with 0xA700 and is replaced).
    engine = db_mod.make_engine(cfg.database_url, pool_pre_ping=False, pool_size=8,
                                max_overflow=MAX_ASSOCIATIONS)
    db_mod.check_connection(engine)
    _require_current_schema(engine)
    modules.import_models(cfg.modules)
    if engine.dialect.name == "postgresql":
        audit.start_sealer(engine)
    node = Node(db_mod.make_session_factory(engine), settings.storage_root, ae_title, tz=cfg.tz,
                check_calling_ae=settings.check_calling_ae, min_free_bytes=settings.min_free_bytes)
    server = node.make_server(host, port)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, name="vnhis-pacs-accept", daemon=True)
    thread.start()
    click.echo(f"vnhis pacs: AE {ae_title} listening on {host}:{server.server_address[1]} (pid {os.getpid()}, "
               f"storage {settings.storage_root})", err=True)
    stop.wait()
    server.shutdown()
    engine.dispose()


def _serve(cfg, settings, host: str, port: int, ae_title: str, workers: int) -> None:
    if workers == 1:
        _serve_one(cfg, settings, host, port, ae_title)
        return
    # Several processes accept on the same port (SO_REUSEPORT): the GIL no longer caps the node.
    children = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            try:
                _serve_one(cfg, settings, host, port, ae_title)
            finally:
                os._exit(0)
        children.append(pid)

    def _forward(signum, _frame):
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _forward)
    for child in children:
        os.waitpid(child, 0)


def register(group) -> None:
    @group.group("pacs", invoke_without_command=True)
    @click.option("--ae-title", default=None, help="our AE title (default VNHIS_PACS_AE_TITLE or VNHIS)")
    @click.option("--port", default=None, type=click.IntRange(1, 65535), help="default VNHIS_PACS_PORT or 11112")
    @click.option("--host", default="0.0.0.0", show_default=True)  # noqa: S104 (a PACS listens on the network)
    @click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 32),
                  help="processes accepting associations on the port")
    @click.pass_context
    def pacs(ctx, ae_title, port, host, workers) -> None:
        """Run the DICOM node (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET, worklist, MPPS)."""
        if ctx.invoked_subcommand is not None:
            return
        from core.cli import _config, _logging
        from pacs import settings as settings_mod
        from pacs import worklist

        _logging()
        cfg = _config()
        settings = settings_mod.load(cfg)
        worklist.station_aes(cfg.setting("VNHIS_PACS_STATION_AES"))  # a bad mapping stops the node now, not a query
        title = settings_mod.check_ae_title(ae_title, "--ae-title") if ae_title else settings.ae_title
        _serve(cfg, settings, host, port or settings.port, title, workers)

    @pacs.group("remote")
    def remote() -> None:
        """Known remote DICOM nodes (C-MOVE destinations; allowed callers with AE checking on)."""

    @remote.command("add")
    @click.argument("title")
    @click.argument("host")
    @click.argument("port")
    @click.option("--description", default="")
    def remote_add(title, host, port, description) -> None:
        """Add the remote node TITLE at HOST:PORT."""
        from core.cli import _cli_actor, _config, _session
        from pacs import remotes

        session = _session(_config())
        try:
            node = remotes.add(session, _cli_actor(), title, host, port, description)
        except remotes.RemoteError as exc:
            raise click.ClickException(exc.message) from None
        session.commit()
        click.echo(f"added {node.ae_title} at {node.host}:{node.port}")

    @remote.command("list")
    def remote_list() -> None:
        """List the known remote nodes."""
        from core.cli import _config, _session
        from pacs import remotes

        session = _session(_config())
        for node in remotes.all_remotes(session):
            click.echo(f"{node.ae_title:<16} {node.host}:{node.port}  {node.description}".rstrip())

    @remote.command("remove")
    @click.argument("title")
    def remote_remove(title) -> None:
        """Forget the remote node TITLE."""
        from sqlalchemy import select

        from core.cli import _cli_actor, _config, _session
        from pacs import remotes
        from pacs.models import RemoteAE

        session = _session(_config())
        node = session.scalar(select(RemoteAE).where(RemoteAE.ae_title == title.strip()))
        if node is None:
            raise click.ClickException(f"no remote node {title}")
        remotes.remove(session, _cli_actor(), node)
        session.commit()
        click.echo(f"removed {title}")

    @pacs.command("export")
    @click.argument("study_uid")
    @click.argument("destination", type=click.Path(file_okay=False, path_type=Path))
    def export_cmd(study_uid, destination) -> None:
        """Write the study STUDY_UID with a DICOMDIR into the empty folder DESTINATION (CD/USB media)."""
        from core.cli import _cli_actor, _config, _session
        from pacs import export
        from pacs import settings as settings_mod

        cfg = _config()
        session = _session(cfg)
        try:
            count = export.export_study(session, _cli_actor(), settings_mod.load(cfg).storage_root, study_uid,
                                        destination)
        except export.ExportError as exc:
            raise click.ClickException(str(exc)) from None
        session.commit()
        click.echo(f"exported {count} instance(s) with DICOMDIR to {destination}")
        sys.stdout.flush()

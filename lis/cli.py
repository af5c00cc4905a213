"""`vnhis hl7`: the analyser listener (HL7 v2 over MLLP, and ASTM E1394 over TCP with --astm-port)."""

from __future__ import annotations

import click

from lis.mllp import DEFAULT_BATCH, DEFAULT_MAX_BYTES, DEFAULT_WRITERS


def register(group) -> None:
    @group.command("hl7")
    @click.option("--host", default="0.0.0.0", show_default=True)  # noqa: S104 (analysers are on the lab LAN)
    @click.option("--port", default=2575, show_default=True, type=click.IntRange(0, 65535))
    @click.option("--astm-port", default=None, type=click.IntRange(0, 65535),
                  help="also listen for ASTM E1394 / LIS2-A2 analysers on this port")
    @click.option("--max-bytes", default=DEFAULT_MAX_BYTES, show_default=True, type=click.IntRange(1024),
                  help="longest message accepted")
    @click.option("--max-batch", default=DEFAULT_BATCH, show_default=True, type=click.IntRange(1, 1000),
                  help="most messages (of all connections) committed in one transaction; 1: each alone")
    @click.option("--writers", default=DEFAULT_WRITERS, show_default=True, type=click.IntRange(1, 32),
                  help="batches applied at once, each on a database connection of its own")
    def hl7_command(host: str, port: int, astm_port: int | None, max_bytes: int, max_batch: int,
                    writers: int) -> None:
        """Receive results from analysers and answer their queries."""
        from core import audit
        from core.cli import _config, _engine, _logging, _require_current_schema
        from core.db import make_session_factory
        from core.modules import import_models
        from lis import listener

        _logging()
        cfg = _config()
        engine = _engine(cfg)
        _require_current_schema(engine)
        import_models(cfg.modules)
        audit.start_sealer(engine)

        def ready(ports):
            extra = f", ASTM on port {ports[1]}" if len(ports) > 1 else ""
            click.echo(f"vnhis hl7 listening on {host}:{ports[0]} (MLLP){extra}")

        listener.run(make_session_factory(engine), host, port, astm_port=astm_port, max_bytes=max_bytes,
                     max_batch=max_batch, writers=writers, ready=ready)

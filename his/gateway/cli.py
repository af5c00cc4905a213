"""`vnhis gateway-sim`: the local stand-in for the insurer's portal (tests, demo, training)."""

from __future__ import annotations

import os
import signal
import sys

import click

from his.gateway.simulator import MODES, Simulator

DEMO_USER = "demo.bhyt"
DEMO_PASSWORD = "demo-cong-bhyt"  # noqa: S105 (a simulator account; the real one comes from BHXH)


@click.command("gateway-sim")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8090, show_default=True, type=click.IntRange(0, 65535))
@click.option("--mode", type=click.Choice(MODES), default="normal", show_default=True,
              help="slow: answers wait --slow-seconds; down: 503; error: 500 with an HTML page")
@click.option("--latency", type=click.FloatRange(0, 600), default=0.0, show_default=True,
              help="seconds added to every answer")
@click.option("--failure-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="share of requests answered 503 at random")
@click.option("--slow-seconds", type=click.FloatRange(0, 600), default=30.0, show_default=True)
@click.option("--token-ttl", type=click.IntRange(1, 86400), default=3600, show_default=True,
              help="seconds a token lives")
@click.option("--processing-polls", type=click.IntRange(0, 100), default=1, show_default=True,
              help="status queries answered 'processing' before the verdict")
def gateway_sim(host: str, port: int, mode: str, latency: float, failure_rate: float, slow_seconds: float,
                token_ttl: int, processing_polls: int) -> None:
    """Run the BHYT gateway simulator (accepts the VNHIS_BHYT_GATEWAY_USER/_PASSWORD account)."""
    user = os.environ.get("VNHIS_BHYT_GATEWAY_USER") or DEMO_USER
    password = os.environ.get("VNHIS_BHYT_GATEWAY_PASSWORD") or DEMO_PASSWORD
    try:
        sim = Simulator(host=host, port=port, users={user: password}, mode=mode, latency=latency,
                        failure_rate=failure_rate, slow_seconds=slow_seconds, token_ttl=token_ttl,
                        processing_polls=processing_polls)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    click.echo(f"BHYT gateway simulator on {sim.url} (account {user}, mode {mode}); "
               f"switch it with POST {sim.url}/admin/settings", err=True)
    try:
        sim.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        sim.server.server_close()

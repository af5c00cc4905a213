"""`vnhis claims export|validate|submit`: claim files on the command line; `vnhis bank-sim`: a local bank.

export: exit 0 when every claim passed the checks, 1 when some did not (their files are written too,
and each problem is printed: claim, table, line, field, message). validate: 0 valid, 1 problems,
2 unreadable file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

DATE = click.DateTime(formats=["%Y-%m-%d", "%d/%m/%Y"])


def _vietnamese(cfg):
    """An application context in which the messages render in Vietnamese, as on screen."""
    from flask import Flask
    from flask_babel import Babel

    from core import i18n

    app = Flask("vnhis.claims")
    app.extensions["vnhis.config"] = cfg
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = i18n.translation_dirs(app)
    Babel(app, default_locale=i18n.DEFAULT_LOCALE)
    return app.app_context()


def register(group) -> None:
    @group.group("claims")
    def claims_group() -> None:
        """BHYT claim files (QĐ 130, XML 4210): export, validate, submit."""

    @claims_group.command("export")
    @click.option("--from", "start", type=DATE, required=True, help="First day (encounters ended on it).")
    @click.option("--to", "end", type=DATE, required=True, help="Last day, inclusive.")
    @click.option("--format", "fmt", type=click.Choice(["qd130", "4210"]), default="qd130", show_default=True)
    @click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
    @click.option("--per-file", type=click.IntRange(1, 1000), default=1, show_default=True,
                  help="Claims per signed file (SOLUONGHOSO); 1 writes one file per claim.")
    @click.option("--jobs", type=click.IntRange(1, 32), default=1, show_default=True,
                  help="Processes building claims in parallel (each with its own database connection).")
    def export(start, end, fmt: str, out_dir: Path, per_file: int, jobs: int) -> None:
        """Build, check and sign the claims of the insured encounters that ended in the range."""
        from billing import claims, settings
        from core.cli import _cli_actor, _config, _session

        cfg = _config()
        conf = settings.load(cfg)
        sign = claims.signer(cfg, conf)
        with _vietnamese(cfg):
            session = _session(cfg)
            ids = claims.encounters_ended(session, start.date(), end.date())
            session.close()
            session.get_bind().dispose()  # the worker processes open their own connections
            report = claims.export_range(cfg.database_url, conf, sign, ids, fmt, out_dir, per_file=per_file,
                                         jobs=jobs, actor=_cli_actor())
            for line in report.problems:
                click.echo(line, err=True)
        click.echo(f"{report.written} claim(s) written to {out_dir} in {report.files} file(s), "
                   f"{report.invalid} with problems")
        sys.exit(1 if report.invalid else 0)

    @claims_group.command("validate")
    @click.argument("path", type=click.Path(exists=True, path_type=Path))
    def validate_path(path: Path) -> None:
        """Check a claim file (or every .xml file of a folder) against the insurer's rules."""
        from billing import claims
        from core.cli import _config

        files = sorted(path.glob("*.xml")) if path.is_dir() else [path]
        worst = 0
        with _vietnamese(_config()):
            for file in files:
                fmt, problems = claims.check_file(file.read_bytes())
                if any(p.code == "unreadable" for p in problems):
                    worst = 2
                elif problems:
                    worst = max(worst, 1)
                for problem in problems:
                    click.echo(f"{file.name}: {problem}", err=True)
                click.echo(f"{file.name}: {fmt}, {len(problems)} problem(s)")
        sys.exit(worst)

    @claims_group.command("submit")
    @click.option("--from", "start", type=DATE, required=True)
    @click.option("--to", "end", type=DATE, required=True)
    @click.option("--format", "fmt", type=click.Choice(["qd130", "4210"]), default="qd130", show_default=True)
    def submit(start, end, fmt: str) -> None:
        """Queue the valid claims of the range for the gateway (a worker sends them)."""
        from billing import submission
        from core.cli import _cli_actor, _config, _session

        session = _session(_config())
        batch = submission.queue_batch(session, _cli_actor(), start.date(), end.date(), fmt)
        session.commit()
        click.echo(f"batch {batch.id}: {batch.claim_count} claim(s) queued")

    @group.command("bank-sim")
    @click.option("--port", type=int, default=8091, show_default=True)
    @click.option("--webhook", required=True, help="The hospital's URL, e.g. http://127.0.0.1:8000/billing/bank/notify")
    @click.option("--secret", envvar="VNHIS_BILLING_WEBHOOK_SECRET", required=True,
                  help="The shared HMAC secret (default: $VNHIS_BILLING_WEBHOOK_SECRET).")
    def bank_sim(port: int, webhook: str, secret: str) -> None:
        """A local bank on 127.0.0.1 that turns VietQR transfers into signed notifications (tests, demo)."""
        from billing.banksim import BankSimulator

        sim = BankSimulator(webhook, secret, port=port)
        click.echo(f"bank simulator on {sim.url}: POST /pay {{\"qr\": …}}, POST /resend {{\"transaction_id\": …}}")
        sim.serve_forever()


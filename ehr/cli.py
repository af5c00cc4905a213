"""`vnhis ehr …`: export a record, verify every signature of an exported bundle, import a transferred one.

Exit status: 0 when everything verifies / was written, 1 when a signature fails, 2 for unusable input.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from cryptography import x509

from ehr.integrity import app_context as _app


def _ca_file(path: Path) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())
    except ValueError:
        _fail(f"{path} holds no PEM certificate")


def _fail(message: str, code: int = 2):
    click.echo(f"vnhis: {message}", err=True)
    sys.exit(code)


def register(group) -> None:
    @group.group("ehr")
    def ehr_group() -> None:
        """Medical records: export, verify signatures, import a transferred record."""

    @ehr_group.command("export")
    @click.option("--record", "record_id", type=int, required=True, help="record id")
    @click.option("--format", "fmt", type=click.Choice(["fhir", "xml", "json", "pdf", "cms"]), required=True,
                  help="cms: a directory with each signed version's bytes (.json), its signature (.p7s) and ca.pem")
    @click.option("--out", "out", type=click.Path(path_type=Path), required=True)
    def export_cmd(record_id: int, fmt: str, out: Path) -> None:
        """Export one record (FHIR R4 Bundle, HoSoBenhAn XML/JSON, PDF, or CMS files for openssl)."""
        from core.cli import _cli_actor, _config, _session
        from ehr import exchange
        from ehr.models import MedicalRecord
        from ehr.records import RecordError

        cfg = _config()
        session = _session(cfg)
        with _app(cfg):
            record = session.get(MedicalRecord, record_id)
            if record is None:
                _fail(f"no medical record {record_id}")
            actor = _cli_actor()
            try:
                if fmt == "cms":
                    out.mkdir(parents=True, exist_ok=True)
                    files, ca_pem = exchange.export_signatures(session, actor, record, cfg)
                    for name, content, der in files:
                        (out / f"{name}.json").write_bytes(content)
                        (out / f"{name}.p7s").write_bytes(der)
                    (out / "ca.pem").write_text(ca_pem)
                else:
                    out.write_bytes(exchange.export(session, actor, record, fmt, cfg))
            except RecordError as exc:
                _fail(str(exc))
            session.commit()
        click.echo(f"exported record {record_id} as {fmt} to {out}")

    @ehr_group.command("verify")
    @click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--ca", "ca_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                  help="trust these CA certificates (PEM) instead of this facility's")
    def verify_cmd(path: Path, ca_file: Path | None) -> None:
        """Check every signature of an exported FHIR bundle; say which fail."""
        from ehr import exchange

        try:
            data = json.loads(path.read_bytes())
        except ValueError as exc:
            _fail(f"{path} is not a JSON FHIR bundle: {exc}")
        if ca_file is not None:
            cas = _ca_file(ca_file)
        else:
            from core.cli import _config, _session
            from ehr import pki

            cas = pki.trusted_cas(_session(_config()))
        try:
            checked = exchange.verify_bundle(data, cas)
        except (KeyError, ValueError) as exc:
            _fail(f"{path} is not a bundle exported by vnhis: {exc}")
        failed = 0
        for c in checked:
            mark = "OK  " if c.verdict.ok else "FAIL"
            failed += not c.verdict.ok
            why = f" — {c.verdict.status}: {c.verdict.detail}" if not c.verdict.ok else ""
            click.echo(f"{mark} document {c.document} version {c.version} signed by {c.signer} "
                       f"at {c.verdict.signing_time}{why}")
        click.echo(f"{len(checked)} signature(s), {failed} failed")
        sys.exit(1 if failed else 0)

    @ehr_group.command("import")
    @click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--encounter", "encounter_id", type=int, required=True,
                  help="the encounter that received the patient here")
    @click.option("--ca", "ca_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
                  help="the CA certificates (PEM) of the sending facility")
    def import_cmd(path: Path, encounter_id: int, ca_file: Path) -> None:
        """Import a record exported as FHIR by another vnhis; refused if any signature fails."""
        from core.cli import _cli_actor, _config, _session
        from ehr import exchange
        from ehr.records import RecordError
        from his.models.encounters import Encounter

        cfg = _config()
        session = _session(cfg)
        with _app(cfg):
            encounter = session.get(Encounter, encounter_id)
            if encounter is None:
                _fail(f"no encounter {encounter_id}")
            try:
                record = exchange.import_record(session, _cli_actor(), json.loads(path.read_bytes()), encounter,
                                                _ca_file(ca_file))
            except RecordError as exc:
                _fail(str(exc), 1)
            session.commit()
        click.echo(f"imported as record {record.id}")

    @ehr_group.command("check")
    def check_cmd() -> None:
        """Re-check every stored version and signature of this database (e.g. after a restore)."""
        from core.cli import _config, _session
        from ehr import exchange

        cfg = _config()
        session = _session(cfg)
        with _app(cfg):
            result = exchange.check_all(session)
        for failure in result.failures:
            click.echo(f"FAIL {failure}")
        click.echo(f"{result.versions} version(s), {result.signatures} signature(s), {len(result.failures)} failed")
        sys.exit(1 if result.failures else 0)

"""Claims: each finished insured encounter turned into its tables (QĐ 130, or QĐ 4210 for old data),
checked, wrapped in a GIAMDINHHS envelope kept on its claim row, signed into files by `export` and for
the gateway by the submission jobs (billing.submission), with a status per claim.

A claim is rebuilt in place when the encounter is corrected (its version goes up when its tables
change); a claim already accepted by the insurer, or queued or sent to the gateway, is not rebuilt.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing import claimdata, giamdinh, signing, validate, xml130, xml4210
from billing.models import Claim
from billing.settings import Settings
from billing.validate import Problem
from core import audit
from core.audit import Actor
from core.config import ConfigError
from core.db import make_engine, make_session_factory, utcnow
from his.admission import DEFAULT_TZ
from his.models.encounters import Encounter

ADAPTERS = {"qd130": xml130, "4210": xml4210}
CLOSED = ("finished", "discharged")
FINAL = ("accepted",)
IN_FLIGHT = ("queued", "sent")  # with the gateway: a rebuild would lose the submission being answered
BATCH = 500
_SIGNERS: dict[tuple[str, str], signing.Signer] = {}


class ClaimError(ValueError):
    def __init__(self, code: str, message):
        super().__init__(code)
        self.code, self.message = code, message

    def __str__(self) -> str:
        return str(self.message)


def signer(config, settings: Settings) -> signing.Signer:
    """The facility's signer, loaded once per process; outside production a development key is made
    under the storage directory when none is configured."""
    key, cert = settings.signing_key, settings.signing_cert
    if not (key and cert):
        if config.is_production:
            raise ConfigError("set VNHIS_BILLING_SIGNING_KEY and VNHIS_BILLING_SIGNING_CERT (PEM files) to sign claims")
        folder = Path(config.storage_dir) / "billing"
        key, cert = str(folder / "signing-key.pem"), str(folder / "signing-cert.pem")
        if not Path(key).exists():
            signing.make_self_signed(folder)
    if (key, cert) not in _SIGNERS:
        _SIGNERS[(key, cert)] = signing.load(key, cert, settings.signing_key_passphrase)
    return _SIGNERS[(key, cert)]


def local_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """[start 00:00, the day after end 00:00) in the hospital's time, as UTC."""
    return (datetime.combine(start, time.min, tzinfo=DEFAULT_TZ).astimezone(UTC),
            datetime.combine(end + timedelta(days=1), time.min, tzinfo=DEFAULT_TZ).astimezone(UTC))


def encounters_ended(session: Session, start: date, end: date) -> list[int]:
    """Insured encounters that ended between the two local days (inclusive)."""
    low, high = local_bounds(start, end)
    return list(session.scalars(select(Encounter.id).where(Encounter.insured, Encounter.status.in_(CLOSED),
                                                           Encounter.ended_at >= low, Encounter.ended_at < high)
                                .order_by(Encounter.ended_at, Encounter.id)))


def _encounter_problems(episode: claimdata.Episode, status: str) -> list[Problem]:
    problems = []
    if status not in CLOSED:
        problems.append(Problem(episode.link_key, "XML1", None, "NGAY_RA", "not_finished",
                                validate.M["not_finished"], {}))
    return problems


@dataclass
class Built:
    claim: Claim
    problems: list[Problem]
    documents: list[tuple[str, bytes]]  # (LOAIHOSO, inner document) of the claim's HOSO


def build(session: Session, actor: Actor, encounter_ids: list[int], fmt: str, settings: Settings, *,
          made_on: date | None = None) -> list[Built]:
    """Build (or rebuild) and check the claims of these encounters; one audit event for the batch.

    The claim keeps its unsigned envelope: a signature is made for each file written or sent
    (`export`, `signed`), so that many claims can share one signed file."""
    if fmt not in ADAPTERS:
        raise ClaimError("bad_format", _l("Unknown claim format %(fmt)s.", fmt=fmt))
    if not settings.facility_code:
        raise ConfigError("set VNHIS_BILLING_FACILITY_CODE (MA_CSKCB, 5 characters) to build claims")
    made_on = made_on or utcnow().astimezone(DEFAULT_TZ).date()
    adapter = ADAPTERS[fmt]
    existing = {c.encounter_id: c for c in session.scalars(select(Claim).where(Claim.encounter_id.in_(encounter_ids),
                                                                               Claim.format == fmt))}
    statuses = dict(session.execute(select(Encounter.id, Encounter.status)
                                    .where(Encounter.id.in_(encounter_ids))).all())
    built = []
    for episode in claimdata.gather(session, encounter_ids, settings.facility_level):
        claim = existing.get(episode.encounter_id)
        if claim is not None and (claim.status in FINAL or claim.status in IN_FLIGHT):
            continue
        rows = adapter.tables(episode, settings.facility_code, settings.head_id, made_on)
        problems = _encounter_problems(episode, statuses[episode.encounter_id])
        problems += validate.check_claim(fmt, validate.tables_from_rows(fmt, rows))
        documents = [(kind, giamdinh.render_table(fmt, kind, records)) for kind, records in rows.items()]
        envelope = giamdinh.envelope(settings.facility_code, made_on.strftime("%Y%m%d"), [documents])
        claim = _store(session, claim, episode, fmt, envelope, documents, problems)
        built.append(Built(claim, problems, documents))
    session.flush()
    audit.record(session, actor, "billing.claim.build", None,
                 {"format": fmt, "claims": [b.claim.link_key for b in built],
                  "invalid": [b.claim.link_key for b in built if b.problems]})
    return built


def _store(session: Session, claim: Claim | None, episode, fmt: str, envelope: bytes, documents, problems) -> Claim:
    digest = hashlib.sha256(b"".join(document for _kind, document in documents)).hexdigest()
    changed = claim is None or claim.file_sha256 != digest
    if claim is None:
        claim = Claim(encounter_id=episode.encounter_id, format=fmt, link_key=episode.link_key, version=1,
                      attempts=0)
        session.add(claim)
    elif changed:
        # A new version is a new submission (a new request id); the last one's record (gateway reference,
        # verdict, times) stays until that is sent.
        claim.version += 1
        claim.attempts = 0
    claim.ended_at = episode.ended_at
    claim.total, claim.insurer_pays = episode.total("cost"), episode.total("insurer")
    # zlib: a month of claims is gigabytes of base64 text otherwise (6–8 × smaller, ~0.2 ms a claim).
    claim.content, claim.file_sha256, claim.built_at = zlib.compress(envelope, 1), digest, utcnow()
    claim.errors = [p.to_dict() for p in problems]
    if changed or claim.status != "rejected":  # unchanged, a rejected claim would be rejected again
        claim.status = "invalid" if problems else "valid"
    return claim


def check_rebuildable(claim: Claim) -> None:
    """Refuse to touch a claim the insurer has accepted or the gateway is handling."""
    if claim.status in FINAL:
        raise ClaimError("final", _l("Claim %(key)s was accepted by the insurer; it cannot be rebuilt.",
                                     key=claim.link_key))
    if claim.status == "queued":
        raise ClaimError("in_flight", _l("Claim %(key)s is queued for the insurer's gateway; it can be rebuilt "
                                         "once the gateway has answered.", key=claim.link_key))
    if claim.status == "sent":
        raise ClaimError("in_flight", _l("Claim %(key)s was sent to the insurer's gateway; it can be rebuilt "
                                         "once the gateway has answered.", key=claim.link_key))


def file_name(claim: Claim) -> str:
    return f"{claim.link_key}_{claim.format}_v{claim.version}.xml"


def envelope_of(claim: Claim) -> bytes:
    """The claim's unsigned envelope as last built."""
    return zlib.decompress(claim.content)


def signed(claim: Claim, sign: signing.Signer) -> bytes:
    """The claim's own file: its envelope (one HOSO) signed now."""
    return sign.sign(envelope_of(claim))


def export(built: list[Built], out_dir: Path, sign: signing.Signer, settings: Settings, *, per_file: int = 1,
           made_on: date | None = None) -> list[Path]:
    """Write signed files: one per claim (as most hospitals send them), or envelopes of up to `per_file`
    claims (SOLUONGHOSO of them), which the gateway accepts too and which is signed once."""
    out_dir.mkdir(parents=True, exist_ok=True)
    made = (made_on or utcnow().astimezone(DEFAULT_TZ).date()).strftime("%Y%m%d")
    paths = []
    for start in range(0, len(built), per_file):
        group = built[start:start + per_file]
        first = group[0].claim
        path = out_dir / (file_name(first) if per_file == 1 else f"{first.format}_{first.link_key}_{len(group)}.xml")
        content = sign.sign(giamdinh.envelope(settings.facility_code, made, [b.documents for b in group]))
        path.write_bytes(content)
        paths.append(path)
    return paths


@dataclass
class ExportReport:
    written: int = 0
    files: int = 0
    problems: list[str] = field(default_factory=list)  # one line per problem
    invalid: int = 0


def _export_part(url: str, settings: Settings, sign: signing.Signer, ids: list[int], fmt: str, out_dir: Path,
                 per_file: int, actor: Actor, made_on: date | None) -> ExportReport:
    """Build, check, sign and write the claims of `ids`, committing per batch (one process's share)."""
    engine = make_engine(url)
    report = ExportReport()
    with make_session_factory(engine)() as session:
        for start in range(0, len(ids), BATCH):
            built = build(session, actor, ids[start:start + BATCH], fmt, settings, made_on=made_on)
            report.files += len(export(built, out_dir, sign, settings, per_file=per_file, made_on=made_on))
            session.commit()
            report.written += len(built)
            report.invalid += sum(bool(b.problems) for b in built)
            report.problems += [str(p) for b in built for p in b.problems]
    engine.dispose()
    return report


def export_range(url: str, settings: Settings, sign: signing.Signer, ids: list[int], fmt: str, out_dir: Path, *,
                 per_file: int = 1, jobs: int = 1, actor: Actor, made_on: date | None = None) -> ExportReport:
    """Export the claims of `ids` with `jobs` processes (each its own connection and commits)."""
    if jobs <= 1 or len(ids) < 2 * BATCH:
        return _export_part(url, settings, sign, ids, fmt, out_dir, per_file, actor, made_on)
    size = -(-len(ids) // jobs)
    parts = [ids[n:n + size] for n in range(0, len(ids), size)]
    total = ExportReport()
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        for part in pool.map(_export_part, *zip(*[(url, settings, sign, p, fmt, out_dir, per_file, actor, made_on)
                                                   for p in parts], strict=True)):
            total.written += part.written
            total.files += part.files
            total.invalid += part.invalid
            total.problems += part.problems
    return total


def check_file(content: bytes) -> tuple[str, list[Problem]]:
    """Validate an envelope read back from a file: (its format, the problems)."""
    try:
        envelope = giamdinh.parse(content)
    except giamdinh.EnvelopeError as exc:
        return "qd130", [Problem(None, "GIAMDINHHS", None, None, "unreadable", validate.M["unreadable"],
                                 {"reason": str(exc)})]
    fmt = validate.detect_format(envelope)
    return fmt, validate.check_envelope(fmt, envelope)


def set_supplement(session: Session, actor: Actor, claim: Claim, weight_kg=None, blood_group: str | None = None):
    """What the claim needs and his does not record; the claim must be rebuilt afterwards."""
    data = dict(claim.supplement or {})
    if weight_kg not in (None, ""):
        try:
            value = Decimal(str(weight_kg).strip().replace(",", ".")).quantize(Decimal("0.01"))
        except ArithmeticError:
            raise ClaimError("bad_weight", _l("Enter the weight in kg, e.g. 56.5.")) from None
        if not Decimal("0.2") <= value <= 400:
            raise ClaimError("bad_weight", _l("Enter the weight in kg, e.g. 56.5."))
        data["weight_kg"] = f"{value:.2f}"
    if blood_group:
        data["blood_group"] = blood_group.strip()[:5]
    claim.supplement = data
    session.flush()
    audit.record(session, actor, "billing.claim.supplement", claim, {"encounter_id": claim.encounter_id, **data})
    return claim


def of_range(session: Session, start: date, end: date, fmt: str) -> list[Claim]:
    low, high = local_bounds(start, end)
    return list(session.scalars(select(Claim).where(Claim.format == fmt, Claim.ended_at >= low, Claim.ended_at < high)
                                .order_by(Claim.ended_at, Claim.id)))

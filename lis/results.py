"""Recording results against specimens, whatever the protocol that carried them (HL7, ASTM): find
the specimen, map the analyser's codes, judge each value against our ranges, make a new version of
each test's result and keep the previous one.

All or nothing: every check runs before the first row is written, so a refused message leaves no
result behind. This is the hot path of the analyser listener, so it works on plain rows and a
catalogue snapshot and writes each kind of row with one statement.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from core import audit
from core.audit import Actor
from core.db import is_postgresql, utcnow
from his import orders as his_orders
from his.models.orders import Order
from his.models.patients import Patient
from his.patients import register_reference
from lis import catalog
from lis.catalog import AnalyserInfo, TestInfo
from lis.models import Result, Specimen
from lis.observations import Observation, SpecimenResults

SPECIMEN_FIELDS = ("SAC-3", "SPM-2", "OBR-3", "OBR-2", "O-3", "O-4")  # HL7 fields, then ASTM
FIRST_RESULT = ("ordered", "collected", "received")


class ResultError(ValueError):
    """Why results cannot be applied. kind: unknown_specimen (the message waits in the unmatched inbox),
    rejected_specimen, unknown_test, no_results."""

    def __init__(self, kind: str, text: str, location: str = "", barcode: str | None = None):
        super().__init__(text)
        self.kind, self.text, self.location, self.barcode = kind, text, location, barcode


@dataclass
class _Planned:
    specimen: object  # a row: id, barcode, status, patient_id, order_id, sex, birth_date, birth_year
    rows: list[tuple[Observation, TestInfo]] = field(default_factory=list)


@dataclass(frozen=True)
class Recorded:
    count: int
    barcodes: tuple[str, ...]


def _candidate_ids(group: SpecimenResults, analyser: AnalyserInfo | None) -> list[str]:
    if analyser is not None and analyser.specimen_field:
        value = group.candidates.get(analyser.specimen_field)
        return [value] if value else []
    return [group.candidates[f] for f in SPECIMEN_FIELDS if group.candidates.get(f)]


# Built once: building a statement costs more than executing a cached one.
_LOCK = (select(Specimen.id, Specimen.barcode, Specimen.status, Specimen.patient_id, Specimen.order_id,
                Patient.sex, Patient.birth_date, Patient.birth_year)
         .join(Patient, Patient.id == Specimen.patient_id)
         .where(Specimen.barcode.in_(bindparam("barcodes", expanding=True)))
         .order_by(Specimen.id).with_for_update(of=Specimen))


# On PostgreSQL the hot path's statements go to the driver as written: a statement through the ORM
# costs several times its round trip in Python. Callers flush first (inbox.apply_groups does).
_PG_LOCK = ("SELECT s.id, s.barcode, s.status, s.patient_id, s.order_id, p.sex, p.birth_date, p.birth_year"
            " FROM lis_specimens s JOIN patients p ON p.id = s.patient_id WHERE s.barcode = ANY(%(barcodes)s)"
            " ORDER BY s.id FOR UPDATE OF s")


def _lock_specimens(session: Session, barcodes: set[str]) -> dict:
    # Row locks: two messages for one specimen take their version numbers one after the other.
    if is_postgresql(session):
        found = session.connection().exec_driver_sql(_PG_LOCK, {"barcodes": sorted(barcodes)})
    else:
        found = session.execute(_LOCK, {"barcodes": sorted(barcodes)})
    return {row.barcode: row for row in found}


def plan(session: Session, analyser: AnalyserInfo | None, groups: list[SpecimenResults],
         barcode: str | None = None) -> list[_Planned]:
    """Check everything and lock the specimens; raises ResultError. Nothing is written."""
    groups = [g for g in groups if g.observations]
    if not groups:
        raise ResultError("no_results", "the message carries no result (OBX)", "OBX")
    wanted = {barcode} if barcode else {c for g in groups for c in _candidate_ids(g, analyser)}
    known = _lock_specimens(session, wanted) if wanted else {}
    codes = catalog.snapshot(session).codes_for(analyser)
    ignore_unknown = bool(analyser is not None and analyser.quirks.get("ignore_unknown_codes"))
    planned: dict[int, _Planned] = {}
    for n, group in enumerate(groups, start=1):
        ids = [barcode] if barcode else _candidate_ids(group, analyser)
        specimen = next((known[i] for i in ids if i in known), None)
        if specimen is None:
            shown = ", ".join(ids) or "(none)"
            raise ResultError("unknown_specimen", f"specimen id {shown} is not registered", f"OBR^{n}^3",
                              ids[0] if ids else None)
        if specimen.status == "rejected":
            raise ResultError("rejected_specimen", f"specimen {specimen.barcode} was rejected", f"OBR^{n}^3",
                              specimen.barcode)
        rows = planned.setdefault(specimen.id, _Planned(specimen)).rows
        for obs in group.observations:
            test = codes.get(obs.code) or next((codes[c] for c in obs.alt_codes if c in codes), None)
            if test is None:
                if ignore_unknown:
                    continue
                raise ResultError("unknown_test", f"test code {obs.code} is not mapped for this analyser",
                                  f"{obs.location}^3")
            rows.append((obs, test))
    return list(planned.values())


_CURRENT = select(Result.id, Result.specimen_id, Result.test_id, Result.version, Result.value,
                  Result.numeric_value).where(Result.superseded_at.is_(None))
_MINE = _CURRENT.where(Result.specimen_id == bindparam("specimen")).order_by(Result.created_at.desc())
_MINE_AND_PREVIOUS = _CURRENT.where(
    Result.patient_id == bindparam("patient"),
    (Result.specimen_id == bindparam("specimen"))
    | (Result.test_id.in_(bindparam("delta", expanding=True)) & (Result.stage == "released"))
).order_by(Result.created_at.desc())


_PG_HISTORY = ("SELECT id, specimen_id, test_id, version, value, numeric_value FROM lis_results"
               " WHERE superseded_at IS NULL AND patient_id = %(patient)s AND (specimen_id = %(specimen)s"
               " OR (test_id = ANY(%(delta)s) AND stage = 'released')) ORDER BY created_at DESC")


def _history(session: Session, specimen, tests: list[TestInfo]) -> tuple[dict[int, tuple], dict[int, tuple]]:
    """In one query: the specimen's current version of each test, and the patient's last released value
    of each delta-checked test from another specimen."""
    delta_ids = sorted({t.id for t in tests if t.delta_percent is not None})
    if is_postgresql(session):
        found = session.connection().exec_driver_sql(_PG_HISTORY, {"patient": specimen.patient_id,
                                                                   "specimen": specimen.id, "delta": delta_ids})
    elif delta_ids:
        found = session.execute(_MINE_AND_PREVIOUS, {"patient": specimen.patient_id, "specimen": specimen.id,
                                                     "delta": delta_ids})
    else:
        found = session.execute(_MINE, {"specimen": specimen.id})
    current: dict[int, tuple] = {}
    previous: dict[int, tuple] = {}
    for ident, specimen_id, test_id, version, value, number in found:
        if specimen_id == specimen.id:
            current[test_id] = (ident, version)
        else:
            previous.setdefault(test_id, (value, number))
    return current, previous


def _value_of(obs: Observation) -> str | None:
    if obs.status in ("X", "D"):
        return None
    return obs.value.strip()[:500] or None


def _row(obs: Observation, test: TestInfo, specimen, prior: tuple | None, version: int, months: int) -> dict:
    value = _value_of(obs)
    number = catalog.to_decimal(value) if test.value_type == "NM" or obs.value_type == "NM" else None
    rng = catalog.range_for(test, specimen.sex, months)
    judged = catalog.judge(number, rng)
    flag = judged.flag if judged else (obs.flags[0] if obs.flags else None)
    if flag == "N":
        flag = None
    delta = bool(prior is not None and prior[1] not in (None, 0) and number is not None
                 and abs(number - prior[1]) / abs(prior[1]) * 100 > test.delta_percent)
    return {"specimen_id": specimen.id, "test_id": test.id, "patient_id": specimen.patient_id,
            "version": version, "value": value, "numeric_value": number, "unit": (obs.unit or test.unit or None),
            "reference_range": ((rng.display if rng else None) or obs.reference_range or None),
            "flag": (flag or None) and flag[:4], "analyser_flags": "~".join(obs.flags)[:30] or None,
            "critical": bool(judged.critical) if judged else flag in ("LL", "HH"), "delta_flag": delta,
            "previous_value": prior[0] if prior else None, "result_status": obs.status[:1] or "F",
            "note": "\n".join(obs.notes) or None, "observed_at": obs.observed_at,
            "superseded_at": None}


# What differs per row travels as JSON; what a message's rows share, as parameters of their own.
_ROW_TYPES = {"specimen_id": "bigint", "test_id": "bigint", "patient_id": "bigint", "version": "integer",
              "value": "text", "numeric_value": "numeric", "unit": "text", "reference_range": "text", "flag": "text",
              "analyser_flags": "text", "critical": "boolean", "delta_flag": "boolean", "previous_value": "text",
              "result_status": "text", "note": "text", "observed_at": "timestamptz", "superseded_at": "timestamptz"}
_COMMON_TYPES = {"stage": "text", "message_id": "bigint", "analyser_id": "bigint", "created_at": "timestamptz",
                 "entered_by": "text"}
_ROW_COLUMNS = ", ".join(_ROW_TYPES)
_COMMON = ", ".join(f"CAST(%({name})s AS {kind})" for name, kind in _COMMON_TYPES.items())
_RECORD = ", ".join(f"{name} {kind}" for name, kind in _ROW_TYPES.items())
# Built from the constant column lists above only; the data travels as parameters. The previous versions
# are superseded by the same statement (their version numbers differ from the new rows').
_PG_INSERT = (
    "WITH superseded AS (UPDATE lis_results SET superseded_at = CAST(%(created_at)s AS timestamptz)"  # noqa: S608
    " WHERE id = ANY(CAST(%(superseded)s AS bigint[])))"
    f" INSERT INTO lis_results ({_ROW_COLUMNS}, {', '.join(_COMMON_TYPES)}) SELECT {_ROW_COLUMNS}, {_COMMON}"
    f" FROM jsonb_to_recordset(CAST(%(rows)s AS jsonb)) AS r({_RECORD})")


def _json_value(value):
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def _insert(session: Session, rows: list[dict], common: dict, superseded: list[int]) -> None:
    """All the rows in one statement, the previous versions superseded by it. On PostgreSQL as one JSON
    parameter: a 25-row VALUES list with 550 parameters costs more to build and parse, in the driver and
    the server, than the work it carries."""
    if is_postgresql(session):
        payload = json.dumps(rows, ensure_ascii=False, default=_json_value)
        session.connection().exec_driver_sql(_PG_INSERT, {**common, "rows": payload, "superseded": superseded})
        for ident in superseded:  # what an ORM update would do: versions loaded in this session see it
            loaded = session.identity_map.get(identity_key(Result, ident))
            if loaded is not None:
                set_committed_value(loaded, "superseded_at", common["created_at"])
        return
    if superseded:
        session.execute(update(Result).where(Result.id.in_(superseded)).values(superseded_at=common["created_at"]))
    session.execute(insert(Result.__table__), [{**common, **row} for row in rows])


def record(session: Session, actor: Actor, analyser: AnalyserInfo | None, groups: list[SpecimenResults], *,
           message_id: int | None = None, barcode: str | None = None, today: date | None = None) -> Recorded:
    """Apply the results of a message. barcode: the specimen chosen by lab staff for an unmatched message."""
    return write(session, actor, analyser, plan(session, analyser, groups, barcode), message_id=message_id,
                 today=today)


def counted(planned: list[_Planned]) -> Recorded:
    return Recorded(sum(len(item.rows) for item in planned), tuple(sorted(i.specimen.barcode for i in planned)))


def write(session: Session, actor: Actor, analyser: AnalyserInfo | None, plan: list[_Planned], *,
          message_id: int | None = None, today: date | None = None) -> Recorded:
    """Write what `plan` checked: new versions, the previous ones superseded, the specimens' status."""
    now = utcnow()
    common = {"stage": "preliminary", "message_id": message_id, "analyser_id": analyser.id if analyser else None,
              "created_at": now, "entered_by": actor.name}
    rows, superseded = [], []
    for item in plan:
        specimen = item.specimen
        months = catalog.age_months(specimen.birth_date, specimen.birth_year, today or date.today())
        current, previous = _history(session, specimen, [t for _o, t in item.rows])
        latest: dict[int, int] = {}  # test id -> index in rows of its newest version
        for obs, test in item.rows:
            old = current.get(test.id)
            if test.id in latest:  # the same test twice in one message: the last one is current
                rows[latest[test.id]]["superseded_at"] = now
                version = rows[latest[test.id]]["version"] + 1
            else:
                if old is not None:
                    superseded.append(old[0])
                version = (old[1] if old else 0) + 1
            latest[test.id] = len(rows)
            rows.append(_row(obs, test, specimen, previous.get(test.id), version, months))
    if rows:
        _insert(session, rows, common, superseded)
    first = [item.specimen for item in plan if item.specimen.status in FIRST_RESULT + ("released",)]
    if first:
        session.execute(update(Specimen).where(Specimen.id.in_([s.id for s in first])).values(status="resulted"))
    for item in plan:
        if item.specimen.status in FIRST_RESULT:
            order = session.get(Order, item.specimen.order_id)
            if order.status == "placed":
                his_orders.start(session, actor, order)
        audit.record(session, actor, "lis.result.record", ("lis_specimens", item.specimen.id),
                     {"barcode": item.specimen.barcode, "patient_id": item.specimen.patient_id,
                      "message_id": message_id, "tests": [t.code for _o, t in item.rows]})
    return counted(plan)


def current_of(session: Session, specimen: Specimen) -> list[Result]:
    rows = session.scalars(select(Result).where(Result.specimen_id == specimen.id, Result.superseded_at.is_(None))
                           .execution_options(populate_existing=True))
    order = {r.test_id: r.position for r in specimen.requests}
    return sorted(rows, key=lambda r: (order.get(r.test_id, 999), r.test.position, r.test.code))


def history_of(session: Session, specimen: Specimen, test_id: int) -> list[Result]:
    return list(session.scalars(select(Result).where(Result.specimen_id == specimen.id, Result.test_id == test_id)
                                .order_by(Result.version.desc())))


register_reference(Result.patient_id)

"""Recording results against specimens, whatever the protocol that carried them (HL7, ASTM): find
the specimen, map the analyser's codes, judge each value against our ranges, make a new version of
each test's result and keep the previous one.

All or nothing: every check runs before the first row is written, so a refused message leaves no
result behind. This is the hot path of the analyser listener, so it works on plain rows and a
catalogue snapshot and writes each kind of row with one statement.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import DBAPIError
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
from lis.models import Result, Specimen, SpecimenTest
from lis.observations import Observation, SpecimenResults

SPECIMEN_FIELDS = ("SAC-3", "SPM-2", "OBR-3", "OBR-2", "O-3", "O-4")  # HL7 fields, then ASTM
FIRST_RESULT = ("received",)  # the only status before results: ordered and collected tubes are refused
NOT_RECEIVED = ("ordered", "collected")


class ResultError(ValueError):
    """Why results cannot be applied. kind: unknown_specimen (the message waits in the unmatched inbox),
    rejected_specimen, unreceived_specimen, unknown_test, unrequested_test, no_results."""

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
                Patient.sex, Patient.birth_date, Patient.birth_year,
                select(func.group_concat(SpecimenTest.test_id)).where(SpecimenTest.specimen_id == Specimen.id)
                .scalar_subquery().label("requested"))
         .join(Patient, Patient.id == Specimen.patient_id)
         .where(Specimen.barcode.in_(bindparam("barcodes", expanding=True)))
         .order_by(Specimen.id).with_for_update(of=Specimen))


# On PostgreSQL the hot path's statements go to the driver as written: a statement through the ORM
# costs several times its round trip in Python. Callers flush first (inbox.apply_groups does).
_PG_LOCK = ("SELECT s.id, s.barcode, s.status, s.patient_id, s.order_id, p.sex, p.birth_date, p.birth_year,"
            " ARRAY(SELECT t.test_id FROM lis_specimen_tests t WHERE t.specimen_id = s.id) AS requested"
            " FROM lis_specimens s JOIN patients p ON p.id = s.patient_id WHERE s.barcode = ANY(%(barcodes)s)"
            " ORDER BY s.id FOR UPDATE OF s")


def lock_statement(barcodes) -> tuple[str, dict]:
    return _PG_LOCK, {"barcodes": sorted(barcodes)}


def lock_specimens(session: Session, barcodes: set[str]) -> dict:
    """Row locks: two messages for one specimen take their version numbers one after the other."""
    if is_postgresql(session):
        found = session.connection().exec_driver_sql(_PG_LOCK, {"barcodes": sorted(barcodes)})
    else:
        found = session.execute(_LOCK, {"barcodes": sorted(barcodes)})
    return {row.barcode: row for row in found}


def wanted(analyser: AnalyserInfo | None, groups: list[SpecimenResults], barcode: str | None = None) -> set[str]:
    """The specimen ids a message may name (the one chosen by lab staff, if any): what to lock."""
    return {barcode} if barcode else {c for g in groups if g.observations for c in _candidate_ids(g, analyser)}


def plan(session: Session, analyser: AnalyserInfo | None, groups: list[SpecimenResults],
         barcode: str | None = None) -> list[_Planned]:
    """Check everything and lock the specimens; raises ResultError. Nothing is written."""
    if not any(g.observations for g in groups):
        raise ResultError("no_results", "the message carries no result (OBX)", "OBX")
    barcodes = wanted(analyser, groups, barcode)
    return check(lock_specimens(session, barcodes) if barcodes else {}, catalog.snapshot(session), analyser,
                 groups, barcode)


def _codes(snapshot: catalog.Snapshot, analyser: AnalyserInfo | None) -> dict[str, TestInfo]:
    """snapshot.codes_for, built once per snapshot and analyser instead of once per message."""
    key = (id(snapshot), id(analyser))
    held = _code_maps.get(key)
    if held is None or held[0] is not snapshot or held[1] is not analyser:
        if len(_code_maps) > 64:  # old snapshots
            _code_maps.clear()
        held = _code_maps[key] = (snapshot, analyser, snapshot.codes_for(analyser))
    return held[2]


_code_maps: dict[tuple, tuple] = {}


def _requested(specimen) -> set[int]:
    """The tests asked of a locked specimen (PostgreSQL gives an array, SQLite a comma-separated list)."""
    value = specimen.requested
    if isinstance(value, str):
        return {int(part) for part in value.split(",") if part}
    return set(value or ())


def _where(group: SpecimenResults, analyser: AnalyserInfo | None, n: int) -> str:
    """The field (as an ERR location, e.g. OBR^1^2) that carried the group's specimen id."""
    fields = [analyser.specimen_field] if analyser is not None and analyser.specimen_field else SPECIMEN_FIELDS
    used = next((f for f in fields if group.candidates.get(f)), fields[0])
    segment, _, number = used.partition("-")
    return f"{segment}^{n}^{number}"


def check(known: dict, snapshot: catalog.Snapshot, analyser: AnalyserInfo | None, groups: list[SpecimenResults],
          barcode: str | None = None) -> list[_Planned]:
    """The rules, on specimens already locked (known: barcode -> row); raises ResultError.

    A result is taken only for a tube the lab has received and for a test asked of it: a result for
    a tube never collected or received, or for a test nobody ordered on it, is a mislabelled or
    misloaded sample until lab staff have looked (an analyser profile may choose to skip the
    results of tests not asked, with the quirk ignore_unrequested)."""
    groups = [g for g in groups if g.observations]
    if not groups:
        raise ResultError("no_results", "the message carries no result (OBX)", "OBX")
    codes = _codes(snapshot, analyser)
    quirks = analyser.quirks if analyser is not None else {}
    ignore_unknown = bool(quirks.get("ignore_unknown_codes"))
    ignore_unrequested = bool(quirks.get("ignore_unrequested"))
    planned: dict[int, _Planned] = {}
    for n, group in enumerate(groups, start=1):
        ids = [barcode] if barcode else _candidate_ids(group, analyser)
        specimen = next((known[i] for i in ids if i in known), None)
        where = _where(group, analyser, n)
        if specimen is None:
            shown = ", ".join(ids) or "(none)"
            raise ResultError("unknown_specimen", f"specimen id {shown} is not registered", where,
                              ids[0] if ids else None)
        if specimen.status == "rejected":
            raise ResultError("rejected_specimen", f"specimen {specimen.barcode} was rejected", where,
                              specimen.barcode)
        if specimen.status in NOT_RECEIVED:
            raise ResultError("unreceived_specimen", f"specimen {specimen.barcode} has not been received at the "
                              "laboratory", where, specimen.barcode)
        asked = _requested(specimen)
        rows = planned.setdefault(specimen.id, _Planned(specimen)).rows
        for obs in group.observations:
            test = codes.get(obs.code) or next((codes[c] for c in obs.alt_codes if c in codes), None)
            if test is None:
                if ignore_unknown:
                    continue
                raise ResultError("unknown_test", f"test code {obs.code} is not mapped for this analyser",
                                  f"{obs.location}^3")
            if test.id not in asked:
                if ignore_unrequested:
                    continue
                raise ResultError("unrequested_test", f"test {test.code} was not ordered on specimen "
                                  f"{specimen.barcode}", f"{obs.location}^3", specimen.barcode)
            rows.append((obs, test))
    return list(planned.values())


# The specimens' past, in one query: each one's current version of each test, and its patient's last
# released value of each delta-checked test from another specimen. By barcode, so that on PostgreSQL it
# goes in the same round trip as the lock, behind it (its snapshot is taken once the lock is held).
_PRIOR = (select(Specimen.id, Result.id, Result.specimen_id, Result.test_id, Result.version, Result.value,
                 Result.numeric_value)
          .join(Result, Result.patient_id == Specimen.patient_id)
          .where(Specimen.barcode.in_(bindparam("barcodes", expanding=True)), Result.superseded_at.is_(None),
                 (Result.specimen_id == Specimen.id)
                 | (Result.test_id.in_(bindparam("delta", expanding=True)) & (Result.stage == "released")))
          .order_by(Result.created_at.desc()))
# Per specimen (LATERAL, fenced by OFFSET 0), so that the plan PostgreSQL keeps for the prepared statement is
# an index scan by patient whatever the table statistics say: joined plainly, its generic plan became a
# scan of the whole table once lis_results had been analysed (8 ms a message instead of 0.2).
PG_PRIOR = ("SELECT s.id AS for_specimen, r.id, r.specimen_id, r.test_id, r.version, r.value, r.numeric_value"
            " FROM lis_specimens s CROSS JOIN LATERAL (SELECT r.id, r.specimen_id, r.test_id, r.version, r.value,"
            " r.numeric_value, r.created_at FROM lis_results r WHERE r.patient_id = s.patient_id"
            " AND r.superseded_at IS NULL AND (r.specimen_id = s.id OR (r.test_id = ANY(%(delta)s)"
            " AND r.stage = 'released')) OFFSET 0) r"
            " WHERE s.barcode = ANY(%(barcodes)s) ORDER BY r.created_at DESC")
Prior = dict[int, tuple[dict[int, tuple], dict[int, tuple]]]  # specimen id -> (current, previous) by test id


def delta_tests(snapshot: catalog.Snapshot) -> list[int]:
    """The delta-checked tests of the catalogue: whose previous released values the history query reads."""
    held = _delta_tests.get(id(snapshot))
    if held is None or held[0] is not snapshot:
        if len(_delta_tests) > 8:  # old snapshots
            _delta_tests.clear()
        held = _delta_tests[id(snapshot)] = (snapshot, sorted(t.id for t in snapshot.tests.values()
                                                                if t.delta_percent is not None))
    return held[1]


_delta_tests: dict[int, tuple[catalog.Snapshot, list[int]]] = {}


def prior_params(barcodes, snapshot: catalog.Snapshot) -> dict:
    return {"barcodes": sorted(barcodes), "delta": delta_tests(snapshot)}


def prior_of(found) -> Prior:
    """The rows of the prior query, by specimen: current version (id, version) and previous value per test."""
    out: Prior = {}
    for for_specimen, ident, specimen_id, test_id, version, value, number in found:
        current, previous = out.setdefault(for_specimen, ({}, {}))
        if specimen_id == for_specimen:
            current[test_id] = (ident, version)
        else:
            previous.setdefault(test_id, (value, number))  # newest first
    return out


def read_prior(session: Session, barcodes) -> Prior:
    params = prior_params(barcodes, catalog.snapshot(session))
    if is_postgresql(session):
        return prior_of(session.connection().exec_driver_sql(PG_PRIOR, params))
    return prior_of(session.execute(_PRIOR, params))


@functools.lru_cache(maxsize=256)  # a message's results share their time
def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _value_of(obs: Observation) -> str | None:
    if obs.status in ("X", "D"):
        return None
    return obs.value.strip()[:500] or None


def _row(obs: Observation, test: TestInfo, specimen, prior: tuple | None, version: int, months: int,
         message_id: int | None, analyser_id: int | None) -> dict:
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
            "version": version, "value": value, "numeric_value": None if number is None else str(number),
            "unit": (obs.unit or test.unit or None),
            "reference_range": ((rng.display if rng else None) or obs.reference_range or None),
            "flag": (flag or None) and flag[:4], "analyser_flags": "~".join(obs.flags)[:30] or None,
            "critical": bool(judged.critical) if judged else flag in ("LL", "HH"), "delta_flag": delta,
            "previous_value": prior[0] if prior else None, "result_status": obs.status[:1] or "F",
            "note": "\n".join(obs.notes) or None, "observed_at": _iso(obs.observed_at),
            "superseded_at": None, "message_id": message_id, "analyser_id": analyser_id}


# What differs per row travels as JSON; what a batch's rows share, as parameters of their own.
_ROW_TYPES = {"specimen_id": "bigint", "test_id": "bigint", "patient_id": "bigint", "version": "integer",
              "value": "text", "numeric_value": "numeric", "unit": "text", "reference_range": "text", "flag": "text",
              "analyser_flags": "text", "critical": "boolean", "delta_flag": "boolean", "previous_value": "text",
              "result_status": "text", "note": "text", "observed_at": "timestamptz", "superseded_at": "timestamptz",
              "message_id": "bigint", "analyser_id": "bigint"}
_COMMON_TYPES = {"stage": "text", "created_at": "timestamptz", "entered_by": "text"}
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


def send(session: Session, statements: list[tuple[str, object]]) -> list[list[tuple]]:
    """PostgreSQL: run statements written for the driver in one round trip (psycopg pipeline mode), in
    order, inside the session's transaction; returns each one's rows ([] when it returns none). A list of
    parameter sets runs the statement once per set. Database errors come out as SQLAlchemy's."""
    import psycopg
    from psycopg.rows import namedtuple_row

    driver = session.connection().connection.driver_connection
    cursors = []
    try:
        with driver.pipeline():
            for sql, params in statements:
                cursor = driver.cursor(row_factory=namedtuple_row)
                if isinstance(params, list):
                    cursor.executemany(sql, params)
                else:
                    cursor.execute(sql, params)
                cursors.append(cursor)
        return [cursor.fetchall() if cursor.description is not None else [] for cursor in cursors]
    except psycopg.Error as exc:
        raise DBAPIError.instance(statements[0][0], None, exc, psycopg.Error) from exc
    finally:
        for cursor in cursors:
            cursor.close()


def insert_statement(rows: list[dict], common: dict, superseded: list[int]) -> tuple[str, dict]:
    """All the rows in one statement, the previous versions superseded by it: as one JSON parameter, as a
    VALUES list of 25 rows with 550 parameters costs more to build and parse than the work it carries.
    The rows hold JSON values already (numbers and times as text), so the encoder never calls back."""
    return _PG_INSERT, {**common, "rows": json.dumps(rows, ensure_ascii=False, default=_json_value),
                        "superseded": superseded}


def _insert(session: Session, rows: list[dict], common: dict, superseded: list[int], before: list) -> None:
    if is_postgresql(session):
        send(session, [*before, insert_statement(rows, common, superseded)])
        # what an ORM update would do: versions loaded in this session see it
        for ident in superseded if session.identity_map else ():
            loaded = session.identity_map.get(identity_key(Result, ident))
            if loaded is not None:
                set_committed_value(loaded, "superseded_at", common["created_at"])
        return
    if superseded:
        session.execute(update(Result).where(Result.id.in_(superseded)).values(superseded_at=common["created_at"]))
    session.execute(insert(Result.__table__), [{**common, **_native(row)} for row in rows])


def _native(row: dict) -> dict:
    """A row's JSON text values back as Python values, for a Core insert."""
    out = dict(row)
    if out["numeric_value"] is not None:
        out["numeric_value"] = Decimal(out["numeric_value"])
    for name in ("observed_at", "superseded_at"):
        if out[name] is not None:
            out[name] = datetime.fromisoformat(out[name])
    return out


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
    return write_many(session, actor, [(analyser, plan, message_id)], today=today)[0]


def write_many(session: Session, actor: Actor, items: list[tuple[AnalyserInfo | None, list[_Planned], int | None]],
               *, today: date | None = None, prior: Prior | None = None, before: list | None = None) -> list[Recorded]:
    """Write the checked plans of several messages (analyser, plan, message id), in their order, with one
    insert: a later message's version supersedes an earlier one's of the same test, as if each had been
    written alone. prior: read_prior of their specimens, if already read (under their locks). before:
    statements for the driver (PostgreSQL) to send in the same round trip ahead of the results."""
    now = utcnow()
    now_text = now.isoformat()
    if prior is None:
        prior = read_prior(session, {i.specimen.barcode for _a, plan, _m in items for i in plan})
    day = today or date.today()
    rows, superseded = [], []
    newest: dict[tuple[int, int], int] = {}  # (specimen id, test id) -> index in rows of its newest version
    for analyser, plan, message_id in items:
        analyser_id = analyser.id if analyser else None
        for item in plan:
            specimen = item.specimen
            months = catalog.age_months(specimen.birth_date, specimen.birth_year, day)
            current, previous = prior.get(specimen.id, ({}, {}))
            for obs, test in item.rows:
                key = (specimen.id, test.id)
                if key in newest:  # written earlier in this batch (or twice in one message): the last is current
                    rows[newest[key]]["superseded_at"] = now_text
                    version = rows[newest[key]]["version"] + 1
                else:
                    old = current.get(test.id)
                    if old is not None:
                        superseded.append(old[0])
                    version = (old[1] if old else 0) + 1
                newest[key] = len(rows)
                rows.append(_row(obs, test, specimen, previous.get(test.id), version, months, message_id,
                                 analyser_id))
    if rows:
        _insert(session, rows, {"stage": "preliminary", "created_at": now, "entered_by": actor.name}, superseded,
                before or [])
    elif before:
        send(session, before)
    first = {i.specimen.id: i.specimen for _a, plan, _m in items for i in plan
             if i.specimen.status in FIRST_RESULT + ("released",)}
    if first:
        session.execute(update(Specimen).where(Specimen.id.in_(sorted(first))).values(status="resulted"))
        for specimen in first.values():
            if specimen.status in FIRST_RESULT:
                order = session.get(Order, specimen.order_id)
                if order.status == "placed":
                    his_orders.start(session, actor, order)
    for _analyser, plan, message_id in items:
        for item in plan:
            audit.record(session, actor, "lis.result.record", ("lis_specimens", item.specimen.id),
                         {"barcode": item.specimen.barcode, "patient_id": item.specimen.patient_id,
                          "message_id": message_id, "tests": [t.code for _o, t in item.rows]})
    return [counted(plan) for _a, plan, _m in items]


def current_of(session: Session, specimen: Specimen) -> list[Result]:
    rows = session.scalars(select(Result).where(Result.specimen_id == specimen.id, Result.superseded_at.is_(None))
                           .execution_options(populate_existing=True))
    order = {r.test_id: r.position for r in specimen.requests}
    return sorted(rows, key=lambda r: (order.get(r.test_id, 999), r.test.position, r.test.code))


def history_of(session: Session, specimen: Specimen, test_id: int) -> list[Result]:
    return list(session.scalars(select(Result).where(Result.specimen_id == specimen.id, Result.test_id == test_id)
                                .order_by(Result.version.desc())))


register_reference(Result.patient_id)

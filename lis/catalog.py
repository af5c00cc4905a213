"""The lab catalogue in use: which tests an order line asks for, the analyser's code of a test,
the reference range for a patient, and the flags a value earns against it."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from core.db import is_postgresql
from lis.models import Analyser, LabTest, PanelMember


def tests_for_service(session: Session, service_code: str) -> list[LabTest]:
    """The analytes an ordered service stands for: a panel's members, or the test itself."""
    test = session.scalar(select(LabTest).where(LabTest.service_code == service_code, LabTest.active.is_(True))
                          .order_by(LabTest.is_panel.desc(), LabTest.id).limit(1))
    if test is None:
        return []
    if not test.is_panel:
        return [test]
    members = session.scalars(select(PanelMember).where(PanelMember.panel_id == test.id)
                              .order_by(PanelMember.position, PanelMember.id)).all()
    return [m.test for m in members if m.test.active]


@dataclass(frozen=True)
class RangeInfo:
    sex: str | None
    age_from_months: int | None
    age_to_months: int | None
    low: Decimal | None
    high: Decimal | None
    critical_low: Decimal | None
    critical_high: Decimal | None
    text: str | None
    display: str | None  # as printed: "3.5-5.0", "<37", "Âm tính"


@dataclass(frozen=True)
class TestInfo:
    id: int
    code: str
    name: str
    unit: str | None
    value_type: str
    delta_percent: Decimal | None
    ranges: tuple[RangeInfo, ...]


@dataclass(frozen=True)
class AnalyserInfo:
    id: int
    code: str
    specimen_field: str | None
    quirks: dict
    codes: dict[str, int]  # its code -> our test id


@dataclass
class Snapshot:
    """What recording a result needs from the catalogue, as plain values read in one go."""

    key: tuple
    loaded_at: float
    tests: dict[int, TestInfo]
    by_code: dict[str, int]  # our code and the LOINC code -> test id
    analysers: dict[str, AnalyserInfo]  # by sender
    checked_at: float

    def codes_for(self, analyser: AnalyserInfo | None) -> dict[str, TestInfo]:
        """Codes an analyser may send: its own map first, then our code and the LOINC code."""
        mapping = {code: self.tests[ident] for code, ident in self.by_code.items()}
        if analyser is not None:
            mapping.update({code: self.tests[ident] for code, ident in analyser.codes.items() if ident in self.tests})
        return mapping


# Reading the catalogue costs several queries; a message needs it at once. The snapshot is kept per
# process and re-read when the catalogue changes or after SNAPSHOT_SECONDS at the latest. Ranges and
# analyser codes are replaced, not edited in place (ids only grow), the analyser screen touches
# updated_at, and a test edited in place (name, unit, value type, delta %) changes the digest of the
# fields the snapshot holds.
SNAPSHOT_SECONDS = 30.0
_FINGERPRINT = (
    "SELECT (SELECT max(id) FROM lis_tests), (SELECT count(*) FROM lis_tests WHERE active),"
    " (SELECT max(id) FROM lis_reference_ranges), (SELECT count(*) FROM lis_reference_ranges),"
    " (SELECT max(id) FROM lis_analyser_codes), (SELECT count(*) FROM lis_analyser_codes),"
    " (SELECT max(updated_at) FROM lis_analysers), (SELECT count(*) FROM lis_analysers WHERE active), ")
# Constant SQL only, joined (no data in it).
_FINGERPRINT_PG = text(
    _FINGERPRINT + "(SELECT md5(string_agg(format('%L|%L|%L|%L|%L|%L|%L|%L', id, code, loinc, name, unit,"  # noqa: S608
    " value_type, delta_percent, active), ',' ORDER BY id)) FROM lis_tests WHERE NOT is_panel)")
_FINGERPRINT_PORTABLE = text(  # SQLite: the fields themselves (a small clinic's catalogue)
    _FINGERPRINT + "(SELECT group_concat(quote(id) || quote(code) || quote(loinc) || quote(name) || quote(unit)"  # noqa: S608
    " || quote(value_type) || quote(delta_percent) || quote(active), ',')"
    " FROM (SELECT * FROM lis_tests WHERE NOT is_panel ORDER BY id))")
_snapshots: dict[str, Snapshot] = {}
_lock = threading.Lock()


# How long a snapshot is used without even asking whether the catalogue changed: 0 (always ask)
# except in the long-running listener, where `vnhis hl7` sets it (one query less per message).
trust_seconds = 0.0


def snapshot(session: Session) -> Snapshot:
    url = str(session.get_bind().engine.url)
    held = _snapshots.get(url)
    now = time.monotonic()
    if held is not None and now - held.checked_at < trust_seconds and now - held.loaded_at < SNAPSHOT_SECONDS:
        return held
    key = tuple(session.execute(_FINGERPRINT_PG if is_postgresql(session) else _FINGERPRINT_PORTABLE).one())
    if held is not None and held.key == key and now - held.loaded_at < SNAPSHOT_SECONDS:
        held.checked_at = now
        return held
    tests = {}
    for test in session.scalars(select(LabTest).where(LabTest.is_panel.is_(False))):
        ranges = tuple(RangeInfo(r.sex, r.age_from_months, r.age_to_months, r.low, r.high, r.critical_low,
                                 r.critical_high, r.text, range_text(r)) for r in test.ranges)
        tests[test.id] = TestInfo(test.id, test.code, test.name, test.unit, test.value_type, test.delta_percent,
                                  ranges)
    by_code: dict[str, int] = {}
    for test in session.scalars(select(LabTest).where(LabTest.is_panel.is_(False), LabTest.active.is_(True))):
        if test.loinc:
            by_code[test.loinc] = test.id
        by_code[test.code] = test.id
    analysers = {}
    for row in session.scalars(select(Analyser).where(Analyser.active.is_(True))):
        analysers[row.sender] = AnalyserInfo(row.id, row.code, row.specimen_field, dict(row.quirks or {}),
                                             {c.code: c.test_id for c in row.codes})
    made = Snapshot(key, now, tests, by_code, analysers, now)
    with _lock:
        _snapshots[url] = made
    return made


def analyser_code(analyser: Analyser, test) -> str:
    """What the analyser calls our test in an order download."""
    return next((c.code for c in analyser.codes if c.test_id == test.id), test.code)


def age_months(birth_date: date | None, birth_year: int, on: date) -> int:
    born = birth_date if birth_date is not None else date(birth_year, 7, 1)  # only the year known: mid-year
    return max(0, (on.year - born.year) * 12 + on.month - born.month - (on.day < born.day))


def range_for(test, sex: str | None, months: int):
    """The most specific range that fits: one for the sex before one for both."""
    fitting = [r for r in test.ranges
               if (r.sex is None or r.sex == sex)
               and (r.age_from_months is None or months >= r.age_from_months)
               and (r.age_to_months is None or months < r.age_to_months)]
    fitting.sort(key=lambda r: (r.sex is None, r.age_from_months is None and r.age_to_months is None))
    return fitting[0] if fitting else None


def _places(number: Decimal | None) -> int:
    return max(0, -number.normalize().as_tuple().exponent) if number is not None else 0


def _plain(number: Decimal, places: int) -> str:
    return format(number.quantize(Decimal(1).scaleb(-places)), "f")


def range_text(rng) -> str | None:
    """3.5-5.0, <37, >60: both bounds with the same number of decimals."""
    if rng is None:
        return None
    if rng.text:
        return rng.text
    places = max(_places(rng.low), _places(rng.high))
    if rng.low is not None and rng.high is not None:
        return f"{_plain(rng.low, places)}-{_plain(rng.high, places)}"
    if rng.high is not None:
        return f"<{_plain(rng.high, places)}"
    if rng.low is not None:
        return f">{_plain(rng.low, places)}"
    return None


@dataclass(frozen=True)
class Judgement:
    flag: str | None
    critical: bool


def judge(number: Decimal | None, rng) -> Judgement | None:
    """Our flag (L/H, LL/HH when critical) for a numeric value; None when we have no limits."""
    if number is None or rng is None or (rng.low is None and rng.high is None and rng.critical_low is None
                                         and rng.critical_high is None):
        return None
    if rng.critical_low is not None and number < rng.critical_low:
        return Judgement("LL", True)
    if rng.critical_high is not None and number > rng.critical_high:
        return Judgement("HH", True)
    if rng.low is not None and number < rng.low:
        return Judgement("L", False)
    if rng.high is not None and number > rng.high:
        return Judgement("H", False)
    return Judgement("N", False)


def to_decimal(value: str | None) -> Decimal | None:
    if not value:
        return None
    try:
        number = Decimal(value.strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None

"""Editing the lab catalogue: a test or a panel with its members, its reference ranges by sex and
age band, and each analyser's codes for it.

The screen and the Excel import build the same drafts and go through the same checks and the one
way of applying them: all the drafts are checked before anything is written, and a test whose
draft equals what is stored is left alone (no write, no audit event), so saving or importing the
same again changes nothing. Ranges, members and codes that change are replaced as rows: the
listener's catalogue snapshot (lis.catalog) sees new ids, and a test's own fields are in its digest.
A test that has results or was asked of a specimen is never deleted, only deactivated.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from decimal import Decimal, InvalidOperation

from flask_babel import lazy_gettext as _l
from sqlalchemy import delete, exists, or_, select
from sqlalchemy.orm import Session

from core import audit
from core.audit import Actor
from his.catalog_import import cell_text
from lis.models import VALUE_TYPES, Analyser, AnalyserCode, LabTest, PanelMember, ReferenceRange, Result, SpecimenTest

SEXES = ("male", "female")
SPECIMEN_TYPES = ("WB", "SER", "PLAS", "UR")  # the ones the lab screens name; HL7 table 0487
MAX_NUMBER = Decimal("1e12")  # lis_reference_ranges keeps Numeric(18, 6)
CODE = re.compile(r"^[A-Z0-9][A-Z0-9#%._/+-]*$")


class Invalid(ValueError):
    def __init__(self, problem):
        super().__init__(str(problem))
        self.problem = problem


@dataclass(frozen=True)
class Problem:
    """What is wrong and where: part is test, members, ranges or codes; index the position in that
    part of the draft (None for the test itself); field the field at fault; code the draft's test."""

    part: str
    index: int | None
    field: str
    message: object  # lazy string
    code: str | None = None


@dataclass(frozen=True)
class TestFields:
    code: str
    name: str
    loinc: str | None
    unit: str | None
    value_type: str
    specimen_type: str
    service_code: str | None
    delta_percent: Decimal | None
    position: int
    active: bool
    is_panel: bool


@dataclass(frozen=True)
class RangeFields:
    sex: str | None
    age_from_months: int | None
    age_to_months: int | None
    low: Decimal | None
    high: Decimal | None
    critical_low: Decimal | None
    critical_high: Decimal | None
    text: str | None


@dataclass
class Draft:
    """A test as it should be. test None: a new one."""

    test: LabTest | None
    fields: TestFields
    members: list[str] = field(default_factory=list)  # member test codes, in order (panels)
    ranges: list[RangeFields] = field(default_factory=list)
    codes: list[tuple[int, str]] = field(default_factory=list)  # (analyser id, the analyser's code)


class CatalogueError(ValueError):
    def __init__(self, problems: list[Problem]):
        super().__init__(f"{len(problems)} problems")
        self.problems = problems


# --- reading single values ----------------------------------------------------------------------

def parse_number(value) -> Decimal | None:
    """'3.5', '3,5' (Vietnamese decimal comma), an Excel number → Decimal; '' → None."""
    if isinstance(value, bool):
        raise Invalid(_l("«%(value)s» is not a number", value=value))
    if isinstance(value, int | float | Decimal):
        number = Decimal(str(value))
    else:
        raw = cell_text(value).replace(" ", "")
        if not raw:
            return None
        if raw.count(",") == 1 and "." not in raw:
            raw = raw.replace(",", ".")
        try:
            number = Decimal(raw)
        except InvalidOperation:
            raise Invalid(_l("«%(value)s» is not a number (write e.g. 3.5)", value=cell_text(value))) from None
    if not number.is_finite() or abs(number) >= MAX_NUMBER:
        raise Invalid(_l("«%(value)s» is not a number (write e.g. 3.5)", value=cell_text(value)))
    if number != number.quantize(Decimal("0.000001")):
        raise Invalid(_l("at most 6 decimals"))
    return number


def _months(value) -> int | None:
    number = parse_number(value)
    if number is None:
        return None
    if number != number.to_integral_value() or number < 0 or number > 1800:
        raise Invalid(_l("an age in whole months, from 0 to 1800"))
    return int(number)


def _optional(value, limit: int) -> str | None:
    text = cell_text(value)
    if len(text) > limit:
        raise Invalid(_l("longer than %(max)d characters", max=limit))
    return text or None


def _code(value) -> str:
    code = cell_text(value).upper()
    if not code:
        raise Invalid(_l("required value missing"))
    if len(code) > 30 or not CODE.match(code):
        raise Invalid(_l("a code of at most 30 characters: letters, digits and %(signs)s", signs="# % . _ / + -"))
    return code


def member_codes(value) -> list[str]:
    """Codes typed one a line or separated by commas."""
    return [c.upper() for c in re.split(r"[\s,;]+", str(value or "")) if c]


def _read(readers: dict, raw: Mapping, part: str, index: int | None) -> tuple[dict, list[Problem]]:
    values, problems = {}, []
    for name, reader in readers.items():
        try:
            values[name] = reader(raw.get(name))
        except Invalid as exc:
            problems.append(Problem(part, index, name, exc.problem))
    return values, problems


def _value_type(value) -> str:
    kind = cell_text(value).upper() or "NM"
    if kind not in VALUE_TYPES:
        raise Invalid(_l("one of %(choices)s", choices=", ".join(VALUE_TYPES)))
    return kind


def _specimen_type(value) -> str:
    kind = cell_text(value).upper() or "SER"
    if len(kind) > 10 or not CODE.match(kind):
        raise Invalid(_l("a specimen type code such as %(choices)s", choices=", ".join(SPECIMEN_TYPES)))
    return kind


def _delta(value) -> Decimal | None:
    number = parse_number(value)
    if number is not None and not Decimal(0) < number <= Decimal(1000):
        raise Invalid(_l("a percentage above 0 and at most 1000"))
    return number


def _position(value) -> int:
    number = parse_number(value)
    if number is None:
        return 0
    if number != number.to_integral_value() or not 0 <= number <= 100000:
        raise Invalid(_l("a whole number from 0 to 100000"))
    return int(number)


def _name(value) -> str:
    name = _optional(value, 200)
    if not name:
        raise Invalid(_l("required value missing"))
    return name


TEST_READERS = {"code": _code, "name": _name, "loinc": lambda v: _optional(v, 20), "unit": lambda v: _optional(v, 30),
                "value_type": _value_type, "specimen_type": _specimen_type,
                "service_code": lambda v: _optional(v, 50), "delta_percent": _delta, "position": _position}


def read_test(raw: Mapping, *, active: bool, is_panel: bool) -> tuple[TestFields | None, list[Problem]]:
    values, problems = _read(TEST_READERS, raw, "test", None)
    return (None if problems else TestFields(**values, active=active, is_panel=is_panel)), problems


def _sex(value) -> str | None:
    text = cell_text(value).lower()
    sex = {"": None, "nam": "male", "nữ": "female", "nu": "female"}.get(text, text)
    if sex is not None and sex not in SEXES:
        raise Invalid(_l("male, female or empty for both"))
    return sex


RANGE_READERS = {"sex": _sex, "age_from_months": _months, "age_to_months": _months, "low": parse_number,
                 "high": parse_number, "critical_low": parse_number, "critical_high": parse_number,
                 "text": lambda v: _optional(v, 100)}


def is_blank(raw: Mapping) -> bool:
    return all(not cell_text(raw.get(name)) for name in RANGE_READERS)


def read_range(raw: Mapping, index: int) -> tuple[RangeFields | None, list[Problem]]:
    """One range row, with its own consistency: low ≤ high, critical limits outside the normal range."""
    values, problems = _read(RANGE_READERS, raw, "ranges", index)
    if problems:
        return None, problems
    rng = RangeFields(**values)

    def wrong(name: str, message) -> tuple[None, list[Problem]]:
        return None, [Problem("ranges", index, name, message)]

    if all(v is None for v in (rng.low, rng.high, rng.critical_low, rng.critical_high, rng.text)):
        return wrong("low", _l("give the limits or a text such as «Âm tính»"))
    if rng.age_from_months is not None and rng.age_to_months is not None \
            and rng.age_from_months >= rng.age_to_months:
        return wrong("age_to_months", _l("the age band must end after it starts"))
    if rng.low is not None and rng.high is not None and rng.low > rng.high:
        return wrong("high", _l("the high limit is below the low limit"))
    if rng.critical_low is not None and rng.critical_high is not None and rng.critical_low >= rng.critical_high:
        return wrong("critical_high", _l("the critical high limit must be above the critical low limit"))
    normal_bottom = rng.low if rng.low is not None else rng.high
    normal_top = rng.high if rng.high is not None else rng.low
    if rng.critical_low is not None and normal_bottom is not None and rng.critical_low > normal_bottom:
        return wrong("critical_low", _l("the critical low limit must not lie inside the normal range"))
    if rng.critical_high is not None and normal_top is not None and rng.critical_high < normal_top:
        return wrong("critical_high", _l("the critical high limit must not lie inside the normal range"))
    return rng, []


def band_overlaps(ranges: list[RangeFields]) -> list[Problem]:
    """Age bands of one sex (or of both) must not overlap: [from, to) in months, open ends unbounded."""
    problems = []
    for i, rng in enumerate(ranges):
        start, end = rng.age_from_months or 0, rng.age_to_months
        for other in ranges[:i]:
            if other.sex != rng.sex:
                continue
            other_start, other_end = other.age_from_months or 0, other.age_to_months
            if (end is None or other_start < end) and (other_end is None or start < other_end):
                band = f"{other_start}–{'…' if other_end is None else other_end}"
                problems.append(Problem("ranges", i, "age_from_months",
                                        _l("the age band overlaps the band %(band)s months of the same sex",
                                           band=band)))
                break
    return problems


# --- what is stored, as drafts compare it ---------------------------------------------------------

def fields_of(test: LabTest) -> TestFields:
    return TestFields(test.code, test.name, test.loinc or None, test.unit or None, test.value_type,
                      test.specimen_type, test.service_code or None, test.delta_percent, test.position,
                      bool(test.active), bool(test.is_panel))


def ranges_of(test: LabTest) -> list[RangeFields]:
    return [RangeFields(r.sex, r.age_from_months, r.age_to_months, r.low, r.high, r.critical_low, r.critical_high,
                        r.text or None) for r in test.ranges]


def members_of(session: Session, test: LabTest) -> list[str]:
    return [m.test.code for m in session.scalars(select(PanelMember).where(PanelMember.panel_id == test.id)
                                                 .order_by(PanelMember.position, PanelMember.id))]


def codes_of(session: Session, test: LabTest) -> list[tuple[int, str]]:
    return sorted((c.analyser_id, c.code) for c in
                  session.scalars(select(AnalyserCode).where(AnalyserCode.test_id == test.id)))


def draft_of(session: Session, test: LabTest) -> Draft:
    return Draft(test, fields_of(test), members_of(session, test), ranges_of(test), codes_of(session, test))


def plain(value):
    """A Decimal as it is written, without trailing zeros (4.000000 is 4); anything else as it is."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return value


def describe(draft: Draft, analyser_codes: Mapping[int, str]) -> dict:
    """The draft as JSON for the audit trail (analysers by their code)."""
    return {"fields": {k: plain(v) for k, v in asdict(draft.fields).items()}, "members": list(draft.members),
            "ranges": [{k: plain(v) for k, v in asdict(r).items()} for r in draft.ranges],
            "codes": [[analyser_codes.get(a, str(a)), c] for a, c in draft.codes]}


def has_results(session: Session, test: LabTest) -> bool:
    """Results of the test, or the test asked of a specimen."""
    return bool(session.scalar(select(or_(exists().where(Result.test_id == test.id),
                                          exists().where(SpecimenTest.test_id == test.id)))))


def in_use(session: Session, test: LabTest) -> bool:
    """What keeps a test from being deleted: its results, a panel holding it, or for a panel the results
    of its members (the panel is what was ordered)."""
    if has_results(session, test) or session.scalar(select(exists().where(PanelMember.test_id == test.id))):
        return True
    members = select(PanelMember.test_id).where(PanelMember.panel_id == test.id)
    return bool(session.scalar(select(or_(exists().where(Result.test_id.in_(members)),
                                          exists().where(SpecimenTest.test_id.in_(members))))))


# --- checks across drafts and the stored catalogue ------------------------------------------------

def check(session: Session, drafts: list[Draft]) -> list[Problem]:
    """Problems that need the catalogue: codes taken, members, a panel flag that can no longer change,
    and analyser codes given to two tests. Each draft's ranges were read with read_range."""
    problems: list[Problem] = []
    analysers = {a.id: a.code for a in session.scalars(select(Analyser))}
    taken = _codes_kept(session, drafts)
    stored = {t.code: t for t in session.scalars(select(LabTest))}
    drafted = {d.fields.code: d for d in drafts}
    editing = {d.test.id for d in drafts if d.test is not None}
    for d in drafts:
        found: list[Problem] = []
        owner = stored.get(d.fields.code)
        if owner is not None and owner is not d.test and owner.id not in editing:
            found.append(Problem("test", None, "code", _l("another test already has the code %(code)s",
                                                        code=d.fields.code)))
        if d.test is not None and d.test.is_panel != d.fields.is_panel and has_results(session, d.test):
            found.append(Problem("test", None, "is_panel",
                                 _l("a test with results cannot be turned into a panel or back")))
        found += _member_problems(d, stored, drafted) + band_overlaps(d.ranges) + _code_problems(d, analysers, taken)
        problems += [replace(p, code=d.fields.code) for p in found]
    return problems


def _member_problems(d: Draft, stored: dict, drafted: dict) -> list[Problem]:
    if not d.fields.is_panel:
        return [Problem("members", None, "members", _l("only a panel has member tests"))] if d.members else []
    problems, seen = [], set()
    for i, code in enumerate(d.members):
        member = drafted[code].fields if code in drafted else stored.get(code)
        if member is None:
            problems.append(Problem("members", i, "members", _l("no test has the code %(code)s", code=code)))
        elif member.is_panel:
            problems.append(Problem("members", i, "members", _l("%(code)s is a panel: a panel holds tests only",
                                                              code=code)))
        elif code in seen:
            problems.append(Problem("members", i, "members", _l("%(code)s is listed twice", code=code)))
        seen.add(code)
    return problems


def _codes_kept(session: Session, drafts: list[Draft]) -> dict[tuple[int, str], str]:
    """(analyser id, its code) -> our test code, for the tests no draft touches."""
    drafted_ids = {d.test.id for d in drafts if d.test is not None}
    return {(row.analyser_id, row.code): row.test.code for row in session.scalars(select(AnalyserCode))
            if row.test_id not in drafted_ids}


def _code_problems(d: Draft, analysers: dict[int, str], taken: dict[tuple[int, str], str]) -> list[Problem]:
    """Checked draft after draft, each one's codes joining `taken`: a code given twice is refused the second time."""
    if d.fields.is_panel and d.codes:
        return [Problem("codes", 0, "code", _l("a panel has no analyser code: its members do"))]
    problems = []
    for i, (analyser_id, code) in enumerate(d.codes):
        if analyser_id not in analysers:
            problems.append(Problem("codes", i, "analyser", _l("no such analyser")))
        elif not code or len(code) > 50:
            problems.append(Problem("codes", i, "code", _l("an analyser code of 1 to 50 characters")))
        elif (analyser_id, code) in taken:
            problems.append(Problem("codes", i, "code", _l(
                "the analyser %(analyser)s already uses %(code)s for %(test)s", analyser=analysers[analyser_id],
                code=code, test=taken[(analyser_id, code)])))
        else:
            taken[(analyser_id, code)] = d.fields.code
    return problems


# --- applying ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Applied:
    created: int
    updated: int
    unchanged: int
    tests: tuple[LabTest, ...]


def save(session: Session, actor: Actor, drafts: list[Draft], *, source: str = "screen") -> Applied:
    """Check every draft, then apply those that differ from what is stored; raises CatalogueError."""
    problems = check(session, drafts)
    if problems:
        raise CatalogueError(problems)
    analyser_codes = {a.id: a.code for a in session.scalars(select(Analyser))}
    before = {id(d): draft_of(session, d.test) if d.test is not None else None for d in drafts}
    changed = [d for d in drafts if before[id(d)] is None or _differs(before[id(d)], d)]
    tests: dict[str, LabTest] = {t.code: t for t in session.scalars(select(LabTest))}
    for d in changed:
        test = d.test if d.test is not None else LabTest()
        if d.test is None:
            session.add(test)
        for name, value in asdict(d.fields).items():
            setattr(test, name, value)
        d.test = test
    session.flush()
    tests.update({d.test.code: d.test for d in changed})
    for d in changed:
        old = before[id(d)]
        if old is None or old.members != d.members:
            session.execute(delete(PanelMember).where(PanelMember.panel_id == d.test.id))
            session.add_all(PanelMember(panel_id=d.test.id, test_id=tests[c].id, position=i)
                            for i, c in enumerate(d.members))
        if old is None or old.ranges != d.ranges:
            for row in list(d.test.ranges):
                session.delete(row)
            d.test.ranges = [ReferenceRange(test_id=d.test.id, **asdict(r)) for r in d.ranges]
    # codes last, all removals before any insert: one import may move a code from one test to another
    moved = [d for d in changed if before[id(d)] is None or before[id(d)].codes != sorted(d.codes)]
    for d in moved:
        session.execute(delete(AnalyserCode).where(AnalyserCode.test_id == d.test.id))
    session.flush()
    for d in moved:
        session.add_all(AnalyserCode(analyser_id=a, code=c, test_id=d.test.id) for a, c in sorted(d.codes))
    session.flush()
    for d in changed:
        old = before[id(d)]
        after = describe(Draft(d.test, d.fields, d.members, d.ranges, sorted(d.codes)), analyser_codes)
        if old is None:
            detail = {"code": d.test.code, "source": source, "after": after}
        else:
            was = describe(old, analyser_codes)
            changes = _changes(was, after)
            detail = {"code": d.test.code, "source": source, "before": _pick(was, changes),
                      "after": _pick(after, changes)}
        audit.record(session, actor, "lis.catalogue.test.create" if old is None else "lis.catalogue.test.update",
                     d.test, detail)
    created = sum(1 for d in changed if before[id(d)] is None)
    return Applied(created, len(changed) - created, len(drafts) - len(changed), tuple(d.test for d in drafts
                                                                                        if d.test is not None))


def _differs(old: Draft, new: Draft) -> bool:
    return (old.fields, old.members, old.ranges, old.codes) != (new.fields, new.members, new.ranges, sorted(new.codes))


def _changes(was: dict, after: dict) -> dict:
    """Which parts changed; for the fields, which of them."""
    changed: dict = {}
    fields = [f for f in after["fields"] if was["fields"].get(f) != after["fields"][f]]
    if fields:
        changed["fields"] = fields
    for part in ("members", "ranges", "codes"):
        if was[part] != after[part]:
            changed[part] = True
    return changed


def _pick(described: dict, changes: dict) -> dict:
    return {part: {f: described["fields"][f] for f in names} if part == "fields" else described[part]
            for part, names in changes.items()}


def remove(session: Session, actor: Actor, test: LabTest) -> str:
    """Delete a test nothing refers to; one in use (see in_use) is deactivated instead.
    Returns 'deleted' or 'deactivated'."""
    if in_use(session, test):
        if not test.active:
            raise CatalogueError([Problem("test", None, "active", _l("this test is already out of use"))])
        test.active = False
        session.flush()
        audit.record(session, actor, "lis.catalogue.test.deactivate", test,
                     {"code": test.code, "before": {"active": True}, "after": {"active": False}})
        return "deactivated"
    analyser_codes = {a.id: a.code for a in session.scalars(select(Analyser))}
    was, ident = describe(draft_of(session, test), analyser_codes), test.id
    session.execute(delete(PanelMember).where(PanelMember.panel_id == test.id))
    session.execute(delete(AnalyserCode).where(AnalyserCode.test_id == test.id))
    for row in list(test.ranges):
        session.delete(row)
    session.flush()
    session.delete(test)
    session.flush()
    audit.record(session, actor, "lis.catalogue.test.delete", ("lis_tests", ident),
                 {"code": was["fields"]["code"], "before": was})
    return "deleted"

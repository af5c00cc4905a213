"""The form engine: forms are data (sections of typed fields with required rules and code lists);
the same definition checks what is entered, draws the web form and prints the PDF.

`check(session, form, raw, on)` turns submitted text into the stored content (dates ISO, numbers as
decimal text, ICD-10 codes checked against the his catalogue in force and kept with their name, so the
record stays readable without his) or raises FormErrors naming each wrong field in Vietnamese.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Session

import his.models  # noqa: F401  (first: `from his import catalog` alone is a circular import, see shared notes)
from his import catalog
from his.catalog import CatalogError

FIELD_TYPES = ("text", "textarea", "int", "decimal", "date", "datetime", "choice", "icd10", "bool")


@dataclass(frozen=True)
class Field:
    name: str
    label: object
    type: str = "text"
    required: bool = False
    max_length: int = 2000
    options: tuple = ()  # (value, label) for "choice"
    low: Decimal | None = None
    high: Decimal | None = None
    required_if: tuple | None = None  # (other field, value): required when that field has that value
    position: str = "principal"  # for icd10: the diagnosis position the catalogue rules apply to

    def __post_init__(self):
        if self.type not in FIELD_TYPES:
            raise ValueError(f"unknown field type {self.type!r}")


@dataclass(frozen=True)
class Section:
    key: str
    title: object
    fields: tuple[Field, ...]


@dataclass(frozen=True)
class Form:
    code: str  # the Ministry's code (01/BV1, 36/BV2…) or ours for papers outside TT 32 (GRV, GCT)
    title: object
    kind: str  # "record" (the bệnh án itself), "sheet", "paper", "result"
    sections: tuple[Section, ...]
    signers: tuple[str, ...] = ("doctor",)
    entered: bool = True  # False: arrives from another system (lab, imaging), never typed here
    for_kinds: tuple[str, ...] = field(default=("outpatient", "emergency", "inpatient", "day_treatment"))

    def fields(self):
        for section in self.sections:
            yield from section.fields

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields() if f.name == name), None)


class FormErrors(ValueError):
    """Every wrong field of one submission: [(field name, message)]."""

    def __init__(self, errors: list[tuple[str, object]]):
        super().__init__("; ".join(str(m) for _f, m in errors))
        self.errors = errors

    def by_field(self) -> dict[str, str]:
        return {name: str(message) for name, message in self.errors}


_DMY = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")


def _parse_date(text: str) -> date:
    match = _DMY.match(text)
    if match:
        day, month, year = (int(g) for g in match.groups())
        return date(year, month, day)
    return date.fromisoformat(text)


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _required(f: Field, raw: dict) -> bool:
    if f.required:
        return True
    if f.required_if:
        other, wanted = f.required_if
        return str(raw.get(other) or "").strip() == wanted
    return False


def _one(session: Session, f: Field, value, on: date, content: dict):
    text = value.strip() if isinstance(value, str) else value
    if f.type == "bool":
        return str(text).lower() in ("1", "true", "on", "yes")
    if isinstance(text, str) and len(text) > f.max_length:
        raise ValueError(_l("«%(field)s» is longer than %(max)d characters.", field=f.label, max=f.max_length))
    if f.type in ("text", "textarea"):
        return str(text)
    if f.type in ("int", "decimal"):
        try:
            number = Decimal(str(text).replace(",", "."))
            if not number.is_finite() or (f.type == "int" and number != number.to_integral_value()):
                raise InvalidOperation
        except InvalidOperation:
            raise ValueError(_l("«%(field)s» must be a whole number.", field=f.label) if f.type == "int"
                             else _l("«%(field)s» must be a number.", field=f.label)) from None
        if (f.low is not None and number < f.low) or (f.high is not None and number > f.high):
            raise ValueError(_l("«%(field)s» must be between %(low)s and %(high)s.", field=f.label,
                                low=f.low, high=f.high))
        return int(number) if f.type == "int" else str(number.normalize() if number % 1 else number.quantize(1))
    if f.type == "date":
        try:
            return _parse_date(str(text)).isoformat()
        except ValueError:
            raise ValueError(_l("«%(field)s» must be a date (dd/mm/yyyy).", field=f.label)) from None
    if f.type == "datetime":
        try:
            return datetime.fromisoformat(str(text)).isoformat(timespec="minutes")
        except ValueError:
            raise ValueError(_l("«%(field)s» must be a date and time.", field=f.label)) from None
    if f.type == "choice":
        allowed = [v for v, _label in f.options]
        if text not in allowed:
            raise ValueError(_l("«%(field)s»: «%(value)s» is not one of the allowed values.", field=f.label,
                                value=str(text)[:40]))
        return text
    # icd10: the catalogue in force on the day decides (unknown, not for use, not as principal…)
    try:
        entry = catalog.resolve_icd10(session, str(text), on=on, position=f.position)
    except CatalogError as exc:
        raise ValueError(_l("«%(field)s»: %(error)s", field=f.label, error=exc)) from None
    content[f"{f.name}_name"] = entry.name_vi
    return entry.code


def check(session: Session, form: Form, raw: dict, on: date) -> dict:
    """The content to store for `raw` (field name → submitted value), or FormErrors."""
    content: dict = {}
    errors: list[tuple[str, object]] = []
    for f in form.fields():
        value = raw.get(f.name)
        if _blank(value) or (f.type == "bool" and value in (None, "")):
            if _required(f, raw):
                errors.append((f.name, _l("«%(field)s» is required.", field=f.label)))
            continue
        try:
            content[f.name] = _one(session, f, value, on, content)
        except ValueError as exc:
            errors.append((f.name, exc.args[0]))
    if errors:
        raise FormErrors(errors)
    return content


def as_text(f: Field, content: dict) -> str:
    """A stored value as printed (choice labels, ICD-10 code with its name, dates dd/mm/yyyy)."""
    value = content.get(f.name)
    if value is None or value == "":
        return ""
    if f.type == "choice":
        return str(dict(f.options).get(value, value))
    if f.type == "icd10":
        name = content.get(f"{f.name}_name")
        return f"{value} – {name}" if name else str(value)
    if f.type == "bool":
        return str(_l("Yes")) if value else str(_l("No"))
    if f.type == "date":
        return date.fromisoformat(value).strftime("%d/%m/%Y")
    if f.type == "datetime":
        return datetime.fromisoformat(value).strftime("%H:%M %d/%m/%Y")
    return str(value)


def as_input(f: Field, content: dict) -> str:
    """A stored value as it goes back into the web form's input."""
    value = content.get(f.name)
    if value is None:
        return ""
    if f.type == "bool":
        return "1" if value else ""
    return str(value)

"""Identity documents read at reception: the CCCD number and its chip-card QR, the BHYT card number.

Pure functions, no database. Problems are raised as IdentityError with a code, the field it
concerns and a Vietnamese message; facts that should be looked at but must not block a patient
(the CCCD digits disagree with a typed birth date, a card about to expire) are returned as warnings.

Sources (../shared/reference/his.md §1, bhyt-xml.md §7). Uncertain points are kept in the tables
below so they can be corrected in one place:
- CCCD: 3-digit province + 1 century/sex digit + 2 birth-year digits + 6 digits; no check digit.
- QR: `id|old id|name|ddmmyyyy|Nam/Nữ|address|issue ddmmyyyy`; variants with the old id absent,
  a label before the fields, more trailing fields.
- BHYT: legacy 15 characters (group, benefit digit 1–5, province, 10-digit BHXH number) or the
  bare 10-digit BHXH number printed on cards since 2021.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

from flask_babel import lazy_gettext as _l

CCCD_RE = re.compile(r"^\d{12}$")
# The 4th digit of a CCCD: (sex, first year of the century). UNCERTAIN beyond 1900–2099.
CENTURY_SEX_DIGIT = {
    "0": ("male", 1900), "1": ("female", 1900),
    "2": ("male", 2000), "3": ("female", 2000),
    "4": ("male", 2100), "5": ("female", 2100),
}
SEX_WORDS = {"nam": "male", "nu": "female", "nữ": "female", "male": "male", "female": "female", "m": "male",
             "f": "female"}

BHYT_LEGACY_RE = re.compile(r"^([A-Z]{2})([1-5])(\d{2})(\d{10})$")
BHYT_SHAPE_RE = re.compile(r"^([A-Z]{2})(\d)(\d{2})(\d{10})$")
BHXH_RE = re.compile(r"^\d{10}$")
# Beneficiary group codes of the 15-character card (QĐ 1351/QĐ-BHXH as reported; UNCERTAIN: the
# list is from secondary sources, correct it here when the official table is at hand).
_GROUPS = ("DN HX CH NN TK HC XK CA HT TB NO CT XB TN CS XN MS HD TQ TA TY HG LS PV CC CK CB KC HN DT DK XD "
           "BT TS TC CN HS SV GD TE QN CY NK TL XV ND HK TV")
BHYT_GROUPS = frozenset(_GROUPS.split())
# Groups whose benefit digit is known (bhyt-xml.md §6); another digit is worth a second look.
BHYT_EXPECTED_LEVEL = {"CC": "1", "TE": "1", "QN": "5", "CA": "5", "CY": "5"}
EXPIRY_WARNING_DAYS = 30


@dataclass
class IdentityError(ValueError):
    code: str
    field: str
    message: object  # a lazy Vietnamese string

    def __str__(self) -> str:
        return str(self.message)


@dataclass
class CccdCard:
    """What the QR on a chip ID card says (printed data, never proof of identity)."""

    national_id: str
    old_id: str | None
    full_name: str
    birth_date: date
    sex: str
    address: str
    issued_on: date | None
    raw: str
    warnings: list = field(default_factory=list)


def check_national_id(value: str) -> str:
    value = (value or "").strip()
    if not CCCD_RE.match(value):
        raise IdentityError("cccd_format", "national_id",
                            _l("The CCCD number must have exactly 12 digits (got %(n)d characters).", n=len(value)))
    return value


def cccd_disagreements(national_id: str, birth: date | int | None, sex: str | None) -> list:
    """What the CCCD's century/sex and year digits contradict (empty when consistent or unknown)."""
    problems = []
    century = CENTURY_SEX_DIGIT.get(national_id[3])
    year = birth.year if isinstance(birth, date) else birth
    if century is None:
        problems.append(_l("The 4th digit of the CCCD (%(d)s) is not a known century/sex code.", d=national_id[3]))
        return problems
    digit_sex, century_start = century
    if sex in ("male", "female") and sex != digit_sex:
        problems.append(_l("The CCCD digits say %(sex)s, but the sex given is different.",
                           sex=_l("male") if digit_sex == "male" else _l("female")))
    if year is not None and century_start + int(national_id[4:6]) != year:
        problems.append(_l("The CCCD digits say born in %(year)d, but the birth year given is %(given)d.",
                           year=century_start + int(national_id[4:6]), given=year))
    return problems


def _date(text: str, field_name: str) -> date:
    digits = re.sub(r"\D", "", text)
    if len(digits) != 8:
        raise IdentityError("qr_date", field_name, _l("The date «%(text)s» in the QR code is not ddmmyyyy.", text=text))
    try:
        return date(int(digits[4:]), int(digits[2:4]), int(digits[:2]))
    except ValueError:
        raise IdentityError("qr_date", field_name,
                            _l("The date «%(text)s» in the QR code does not exist.", text=text)) from None


def parse_cccd_qr(raw: str) -> CccdCard:
    """Read the QR text a desk scanner types in; raise IdentityError naming what is wrong.

    Accepts 7 fields (old id present or empty), 6 fields (old id absent), a label before the
    first field (`CCCD:0010…`), a trailing separator or extra trailing fields, CR/LF around it.
    The CCCD's own digits must agree with the QR's sex and birth year: a QR that contradicts
    itself did not come from a genuine card.
    """
    text = (raw or "").strip().strip("\r\n")
    if not text:
        raise IdentityError("qr_empty", "qr", _l("The QR code is empty: scan the card again."))
    parts = [p.strip() for p in text.split("|")]
    parts[0] = re.sub(r"^[^\d]*", "", parts[0])  # a scanner's label such as "CCCD:"
    while parts and parts[-1] == "":
        parts.pop()
    if len(parts) < 6:
        raise IdentityError("qr_fields", "qr", _l("The QR code has %(n)d fields; a CCCD QR code has 6 or 7 separated "
                                                 "by «|». Scan the card again.", n=len(parts)))
    national_id = parts[0]
    if not CCCD_RE.match(national_id):
        raise IdentityError("cccd_format", "national_id",
                            _l("The CCCD number must have exactly 12 digits (got %(n)d characters).",
                               n=len(national_id)))
    # Find the birth date rather than trusting the field count: it follows the name, which follows
    # the old 9-digit CMND when that field is there (empty or not).
    at = next((i for i in (2, 3) if i + 2 < len(parts) and re.fullmatch(r"\d{8}", parts[i])), None)
    if at is None:
        raise IdentityError("qr_fields", "qr", _l("The QR code has no birth date (ddmmyyyy) after the name. Scan the "
                                                 "card again."))
    old_id = (parts[1] or None) if at == 3 else None
    name, dob, sex_word, address = parts[at - 1], parts[at], parts[at + 1], parts[at + 2] if at + 2 < len(parts) else ""
    issued = parts[at + 3] if at + 3 < len(parts) and re.fullmatch(r"\d{8}", parts[at + 3]) else ""
    if not name:
        raise IdentityError("qr_name", "full_name", _l("The QR code has no name."))
    sex = SEX_WORDS.get(sex_word.lower())
    if sex is None:
        raise IdentityError("qr_sex", "sex", _l("The sex «%(text)s» in the QR code is not «Nam» or «Nữ».",
                                                text=sex_word))
    birth = _date(dob, "birth_date")
    card = CccdCard(national_id=national_id, old_id=old_id, full_name=" ".join(name.split()), birth_date=birth,
                    sex=sex, address=address, issued_on=_date(issued, "issued_on") if issued else None, raw=raw)
    problems = cccd_disagreements(national_id, birth, sex)
    if problems:
        raise IdentityError("cccd_mismatch", "national_id", problems[0])
    return card


@dataclass(frozen=True)
class BhytNumber:
    number: str
    layout: str  # "legacy15" or "bhxh10"
    bhxh_number: str
    group_code: str | None = None
    benefit_level: str | None = None
    province_code: str | None = None
    warnings: tuple = ()


def parse_bhyt_number(value: str) -> BhytNumber:
    """Check a BHYT card number in either layout; raise IdentityError naming the wrong part.

    The benefit digit is checked for shape only: the benefit actually applied comes from the
    card lookup on the insurer's portal, never from this digit alone.
    """
    number = re.sub(r"\s", "", value or "").upper()
    if BHXH_RE.match(number):
        return BhytNumber(number, "bhxh10", number)
    shape = BHYT_SHAPE_RE.match(number)
    if shape is None:
        raise IdentityError("bhyt_format", "bhyt_number",
                            _l("A BHYT card number has 15 characters (2 letters, 13 digits) or 10 digits; "
                               "«%(value)s» has neither form.", value=number[:20]))
    group, level, province, bhxh = shape.groups()
    if group not in BHYT_GROUPS:
        raise IdentityError("bhyt_group", "bhyt_number",
                            _l("«%(group)s» is not a known BHYT beneficiary group code.", group=group))
    if not BHYT_LEGACY_RE.match(number):
        raise IdentityError("bhyt_level", "bhyt_number",
                            _l("The benefit digit of a BHYT card is 1 to 5, not %(level)s.", level=level))
    warnings = ()
    expected = BHYT_EXPECTED_LEVEL.get(group)
    if expected and expected != level:
        warnings = (_l("Group %(group)s cards usually have benefit level %(expected)s, this one has %(level)s: "
                       "check the card on the portal.", group=group, expected=expected, level=level),)
    return BhytNumber(number, "legacy15", bhxh, group, level, province, warnings)


def card_validity_warnings(valid_from: date | None, valid_to: date | None, on: date) -> list:
    """Expired, not yet valid, or expiring soon: shown at the desk, never blocking the visit."""
    if valid_to is not None and valid_to < on:
        return [_l("The BHYT card expired on %(day)s: the visit is not covered unless a new card is shown.",
                   day=valid_to.strftime("%d/%m/%Y"))]
    if valid_from is not None and valid_from > on:
        return [_l("The BHYT card is valid only from %(day)s.", day=valid_from.strftime("%d/%m/%Y"))]
    if valid_to is not None and (valid_to - on).days <= EXPIRY_WARNING_DAYS:
        return [_l("The BHYT card expires on %(day)s.", day=valid_to.strftime("%d/%m/%Y"))]
    return []

"""Vietnam's administrative units in the two schemes that patients' addresses use.

- ``post2025``: 34 provinces → wards/communes, two tiers, in force from 1 July 2025.
- ``pre2025``: 63 provinces → 696 districts → wards, three tiers. BHYT cards, old records and the
  CV 365 export (``quanhuyen_ma``) still carry these codes, so they stay valid input.

Both lists use the same code shapes (2-digit province, 5-digit ward) and a new ward usually keeps
the code of one of the old wards merged into it, so a code means nothing without its scheme.
The old→new mapping is many-to-many: 471 old wards were split across several new ones; for those
`new_ward_for` returns every candidate and only *suggests* one (see the data README).

Data: his/data/admin_units/ (source, licence and refresh in its README), read once on first use.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from flask_babel import lazy_gettext as _l

from his.text import fold

SCHEMES = ("post2025", "pre2025")
DATA_PACKAGE, DATA_DIR = "his", ("data", "admin_units")
_SCHEME_LABELS = {
    "post2025": _l("the list in force from 1 July 2025 (34 provinces)"),
    "pre2025": _l("the list before 1 July 2025 (63 provinces)"),
}


@dataclass(frozen=True)
class Unit:
    scheme: str
    level: str  # "province", "district" (pre2025 only) or "ward"
    code: str
    name: str  # full official name: "Phường Ba Đình", "Thành phố Hà Nội"
    type: str  # Tỉnh, Thành phố, Quận, Huyện, Thị xã, Phường, Xã, Thị trấn, Đặc khu
    province_code: str | None = None
    district_code: str | None = None
    folded: str = field(default="", compare=False, repr=False)

    @property
    def short_name(self) -> str:
        return self.name.removeprefix(self.type).strip() or self.name


@dataclass(frozen=True)
class Conversion:
    """Where a pre-2025 ward (or ward-less island district) went on 1 July 2025."""

    old: Unit
    new: tuple[Unit, ...]  # every post-2025 ward that took over part of `old`
    suggested: Unit  # the only one, or for a split ward the data set's geometric guess

    @property
    def is_split(self) -> bool:
        return len(self.new) > 1


class AddressError(ValueError):
    """A precise, translatable reason an address is not valid; `field` names the offending input."""

    def __init__(self, field: str, message):
        super().__init__(str(message))
        self.field, self.message = field, message


@dataclass
class _Scheme:
    provinces: dict[str, Unit]
    districts: dict[str, Unit]
    wards: dict[str, Unit]
    children: dict[str, list[Unit]]  # province or district code -> its units one level down


def _rows(name: str):
    path = resources.files(DATA_PACKAGE).joinpath(*DATA_DIR, name)
    with path.open(encoding="utf-8", newline="") as f:
        yield from csv.DictReader(f)


def _unit(scheme: str, level: str, row: dict) -> Unit:
    return Unit(scheme, level, row["code"], row["name"], row["type"], row.get("province_code") or None,
                row.get("district_code") or None, fold(row["name"]))


@cache
def _scheme(scheme: str) -> _Scheme:
    provinces = {r["code"]: _unit(scheme, "province", r) for r in _rows(f"{scheme}/provinces.csv")}
    districts = ({r["code"]: _unit(scheme, "district", r) for r in _rows(f"{scheme}/districts.csv")}
                 if scheme == "pre2025" else {})
    wards = {r["code"]: _unit(scheme, "ward", r) for r in _rows(f"{scheme}/wards.csv")}
    children: dict[str, list[Unit]] = {}
    for unit in (*districts.values(), *wards.values()):
        children.setdefault(unit.district_code or unit.province_code, []).append(unit)
    return _Scheme(provinces, districts, wards, children)


@cache
def _mapping() -> dict[str, list[tuple[str, bool]]]:
    """old ward code (or island district code) -> [(new ward code, suggested)]."""
    out: dict[str, list[tuple[str, bool]]] = {}
    for r in _rows("mapping_2025.csv"):
        out.setdefault(r["old_ward_code"] or r["old_district_code"], []).append(
            (r["new_ward_code"], r["suggested"] == "1"))
    return out


def _check_scheme(scheme: str) -> _Scheme:
    if scheme not in SCHEMES:
        raise AddressError("scheme", _l("Unknown address scheme %(scheme)s: use post2025 or pre2025.",
                                        scheme=scheme))
    return _scheme(scheme)


def _province(scheme: str, code: str | None) -> Unit:
    data = _check_scheme(scheme)
    unit = data.provinces.get(code or "")
    if unit is None:
        raise AddressError("province_code", _l("Province/city code %(code)s does not exist in %(list)s.",
                                               code=code or "", list=_SCHEME_LABELS[scheme]))
    return unit


def provinces(scheme: str = "post2025") -> list[Unit]:
    return list(_check_scheme(scheme).provinces.values())


def province(code: str, scheme: str = "post2025") -> Unit | None:
    return _check_scheme(scheme).provinces.get(code)


def districts(province_code: str) -> list[Unit]:
    """Districts existed only before 1 July 2025."""
    return list(_scheme("pre2025").children.get(_province("pre2025", province_code).code, []))


def wards(province_code: str, scheme: str = "post2025", district_code: str | None = None) -> list[Unit]:
    data, prov = _check_scheme(scheme), _province(scheme, province_code)
    if scheme == "post2025":
        return list(data.children.get(prov.code, []))
    if district_code:
        return list(data.children.get(_district(prov, district_code).code, []))
    return [w for d in data.children.get(prov.code, []) for w in data.children.get(d.code, [])]


def lookup_ward(code: str, scheme: str = "post2025") -> Unit | None:
    return _check_scheme(scheme).wards.get(code)


def lookup_district(code: str) -> Unit | None:
    return _scheme("pre2025").districts.get(code)


def search(query: str, scheme: str = "post2025", level: str = "ward", province_code: str | None = None,
           limit: int = 20) -> list[Unit]:
    """Units whose folded name contains the folded query; names starting with it come first."""
    data, needle = _check_scheme(scheme), fold(query)
    if not needle:
        return []
    pool = {"province": data.provinces, "district": data.districts, "ward": data.wards}[level].values()
    if province_code:
        pool = [u for u in pool if (u.code if level == "province" else u.province_code) == province_code]
    hits = [u for u in pool if needle in u.folded]
    hits.sort(key=lambda u: (not fold(u.short_name).startswith(needle), u.folded, u.code))
    return hits[:limit]


def _mismatch(unit: Unit, actual: Unit, expected: Unit) -> AddressError:
    return AddressError(f"{unit.level}_code", _l("%(unit)s (%(code)s) is in %(actual)s, not in %(expected)s.",
                                                 unit=unit.name, code=unit.code, actual=actual.name,
                                                 expected=expected.name))


def _district(prov: Unit, code: str) -> Unit:
    data = _scheme("pre2025")
    unit = data.districts.get(code)
    if unit is None:
        raise AddressError("district_code", _l("District code %(code)s does not exist in %(list)s.",
                                               code=code, list=_SCHEME_LABELS["pre2025"]))
    if unit.province_code != prov.code:
        raise _mismatch(unit, data.provinces[unit.province_code], prov)
    return unit


def validate_address(scheme: str, province_code: str | None, ward_code: str | None,
                     district_code: str | None = None) -> Unit:
    """The lowest unit of a valid address (normally the ward), or AddressError saying what is wrong."""
    data = _check_scheme(scheme)
    prov = _province(scheme, province_code)
    parent = prov
    if scheme == "post2025" and district_code:
        raise AddressError("district_code", _l("Addresses from 1 July 2025 have no district: leave it empty."))
    if scheme == "pre2025":
        if not district_code:
            raise AddressError("district_code", _l("A district is required for an address before 1 July 2025."))
        parent = _district(prov, district_code)
    if not ward_code:
        if parent.level == "district" and not data.children.get(parent.code):
            return parent  # the island districts (Côn Đảo, Lý Sơn…) had no wards
        raise AddressError("ward_code", _l("A ward/commune is required."))
    ward = data.wards.get(ward_code)
    if ward is None:
        raise AddressError("ward_code", _l("Ward/commune code %(code)s does not exist in %(list)s.",
                                           code=ward_code, list=_SCHEME_LABELS[scheme]))
    if (ward.district_code or ward.province_code) != parent.code:
        actual = data.districts[ward.district_code] if ward.district_code else data.provinces[ward.province_code]
        raise _mismatch(ward, actual, parent)
    return ward


def new_ward_for(old_code: str) -> Conversion:
    """Where a pre-2025 ward went. `old_code` may also be one of the five island districts that had
    no wards (their area became a special zone, đặc khu)."""
    old = _scheme("pre2025").wards.get(old_code) or _scheme("pre2025").districts.get(old_code)
    targets = _mapping().get(old_code)
    if old is None or not targets:
        raise AddressError("ward_code", _l("Ward/commune code %(code)s does not exist in %(list)s.",
                                           code=old_code, list=_SCHEME_LABELS["pre2025"]))
    new_wards = _scheme("post2025").wards
    units = tuple(new_wards[code] for code, _ in targets)
    suggested = next((new_wards[code] for code, flag in targets if flag), units[0])
    return Conversion(old, units, suggested)

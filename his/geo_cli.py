"""`vnhis his geo …`: look up administrative units and rebuild the shipped data files.

The two import commands write the CSV files of his/data/admin_units/ (or --out): one from the
MIT-licensed `vietnamadminunits` data set (both schemes and the old→new mapping), one from an
official GSO export (one scheme's lists only). Review the diff and the counts before committing.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import unicodedata
from pathlib import Path

import click

from his import geo
from his.text import fold

FIELDS = {
    "provinces.csv": ["code", "name", "type"],
    "districts.csv": ["code", "name", "type", "province_code"],
    "wards.csv": ["code", "name", "type", "province_code", "district_code"],
    "mapping_2025.csv": ["old_province_code", "old_district_code", "old_ward_code", "new_province_code",
                         "new_ward_code", "suggested"],
}
_PROVINCE_TYPES = ("Thành phố", "Tỉnh")
_DISTRICT_TYPES = ("Quận", "Huyện", "Thị xã", "Thành phố")


def _clean(text: str | None) -> str:
    return " ".join(unicodedata.normalize("NFC", text or "").split())


def _type(text: str) -> str:
    """"Thành Phố", "THỊ XÃ" → "Thành phố", "Thị xã" (the lists are not consistent)."""
    return text[:1].upper() + text[1:].lower()


def _data_dir() -> Path:
    return Path(geo.__file__).parent.joinpath(*geo.DATA_DIR)


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = FIELDS[path.name]
    if path.name == "wards.csv" and path.parent.name == "post2025":
        columns = columns[:-1]
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, columns, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: tuple(r[c] for c in columns)))


def _province_row(code: str, name: str) -> dict:
    name = _clean(name)
    kind = next((t for t in _PROVINCE_TYPES if fold(name).startswith(fold(t))), "")
    return {"code": code, "name": name, "type": kind}


def build_from_vietnamadminunits(source: Path, out: Path) -> dict[str, int]:
    """`source` is the package's data folder (dataset.db, converter_2025.json). Its mapping is keyed
    by folded names; we resolve those keys to the official codes and keep codes only."""
    db = sqlite3.connect(source / "dataset.db")
    legacy = db.execute("SELECT provinceCode, province, districtCode, district, districtType, wardCode, ward, "
                        "wardType, provinceKey, districtKey, wardKey FROM admin_units_legacy").fetchall()
    current = db.execute("SELECT provinceCode, province, wardCode, ward, wardType, provinceKey, wardKey "
                         "FROM admin_units").fetchall()
    db.close()
    old = {"provinces": {}, "districts": {}, "wards": {}}
    old_keys, island = {}, {}
    for pc, pn, dc, dn, dt, wc, wn, wt, pk, dk, wk in legacy:
        old["provinces"][pc] = _province_row(pc, pn)
        old["districts"][dc] = {"code": dc, "name": _clean(dn), "type": _type(dt), "province_code": pc}
        if wc:
            old["wards"][wc] = {"code": wc, "name": _clean(wn), "type": _type(wt), "province_code": pc,
                                "district_code": dc}
            old_keys[f"{pk}_{dk}_{wk}"] = (pc, dc, wc)
        else:  # an island district without wards: its key ends with an empty ward part
            island[f"{pk}_{dk}_"] = (pc, dc, "")
    new = {"provinces": {}, "wards": {}}
    new_keys = {}
    for pc, pn, wc, wn, wt, pk, wk in current:
        new["provinces"][pc] = _province_row(pc, pn)
        new["wards"][wc] = {"code": wc, "name": _clean(wn), "type": _type(wt), "province_code": pc}
        new_keys[(pk, wk)] = (pc, wc)

    conv = json.loads((source / "converter_2025.json").read_text(encoding="utf-8"))
    pairs: dict[tuple, dict[tuple, bool]] = {}
    for pkey, by_new in conv["DICT_PROVINCE_WARD_NO_DIVIDED"].items():
        for wkey, old_list in by_new.items():
            for okey in old_list:
                pairs.setdefault(old_keys.get(okey) or island[okey], {}).setdefault(new_keys[(pkey, wkey)], False)
    for pkey, by_old in conv["DICT_PROVINCE_WARD_DIVIDED"].items():
        for okey, targets in by_old.items():
            for t in targets:
                pairs.setdefault(old_keys[okey], {})[new_keys[(pkey, t["newWardKey"])]] = bool(t["isDefaultNewWard"])
    mapping = []
    for (opc, odc, owc), targets in pairs.items():
        for (npc, nwc), default in targets.items():
            suggested = default or len(targets) == 1
            mapping.append({"old_province_code": opc, "old_district_code": odc, "old_ward_code": owc,
                            "new_province_code": npc, "new_ward_code": nwc, "suggested": "1" if suggested else "0"})

    for name, rows in old.items():
        _write(out / "pre2025" / f"{name}.csv", list(rows.values()))
    for name, rows in new.items():
        _write(out / "post2025" / f"{name}.csv", list(rows.values()))
    _write(out / "mapping_2025.csv", mapping)
    unmapped = set(old["wards"]) - {k[2] for k in pairs}
    if unmapped:
        raise click.ClickException(f"{len(unmapped)} old wards have no new ward, e.g. {sorted(unmapped)[:5]}")
    return {"pre2025 provinces": len(old["provinces"]), "pre2025 districts": len(old["districts"]),
            "pre2025 wards": len(old["wards"]), "post2025 provinces": len(new["provinces"]),
            "post2025 wards": len(new["wards"]), "mapping rows": len(mapping),
            "split old wards": sum(1 for t in pairs.values() if len(t) > 1)}


# Column headers of the GSO "Danh mục hành chính" exports (danhmuchanhchinh.gso.gov.vn), folded; the
# site has used both spellings ("Phường Xã"/"Mã PX" in 2021-2025, "Tên"/"Mã" in the July 2025 export).
_GSO_COLUMNS = {"province_name": ("tinh thanh pho",), "province_code": ("ma tp",),
                "district_name": ("quan huyen",), "district_code": ("ma qh",),
                "name": ("phuong xa", "ten"), "code": ("ma px", "ma"), "type": ("cap",)}


def _read_table(path: Path) -> list[list[str]]:
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        from openpyxl import load_workbook

        sheet = load_workbook(path, read_only=True).active
        return [["" if v is None else str(v) for v in row] for row in sheet.iter_rows(values_only=True)]
    with path.open(encoding="utf-8-sig", newline="") as f:
        return list(csv.reader(f))


def _gso_rows(path: Path):
    table = _read_table(path)
    header = [fold(h.replace("/", " ")) for h in table[0]] if table else []
    col = {k: header.index(v) for k, names in _GSO_COLUMNS.items() for v in names[::-1] if v in header}
    missing = {"province_name", "province_code", "name", "code", "type"} - set(col)
    if missing:
        raise click.ClickException(f"{path.name}: not a GSO export, missing columns {sorted(missing)}")
    for n, row in enumerate(table[1:], start=2):
        cell = {k: _clean(row[i]) if i < len(row) else "" for k, i in col.items()}
        if any(cell.values()):
            if not (cell["code"] and cell["province_code"]):
                raise click.ClickException(f"{path.name} line {n}: a code is missing")
            yield f"{path.name} line {n}", cell


def build_from_gso(paths: list[Path], out: Path) -> dict[str, int]:
    """GSO exports of one scheme → that scheme's provinces/[districts/]wards; the mapping is not touched.
    A ward export with district columns is the pre-2025 list; give the district export with it, since
    the five island districts without wards appear only there. A ward export without district
    columns is the post-2025 list. Levels are told apart by code width (district 3, ward 5 digits)."""
    provinces, districts, wards = {}, {}, {}
    seen = set()
    for path in paths:
        for where, cell in _gso_rows(path):
            pc = cell["province_code"].zfill(2)
            provinces[pc] = _province_row(pc, cell["province_name"])
            target = districts if len(cell["code"]) <= 3 else wards
            code = cell["code"].zfill(3 if target is districts else 5)
            if (target is wards, code) in seen:
                raise click.ClickException(f"{where}: code {code} appears twice")
            seen.add((target is wards, code))
            row = {"code": code, "name": cell["name"], "type": _type(cell["type"]), "province_code": pc}
            if target is wards and cell.get("district_code"):
                row["district_code"] = dc = cell["district_code"].zfill(3)
                districts.setdefault(dc, {"code": dc, "name": cell["district_name"], "type": "", "province_code": pc})
            target[code] = row
    with_district = {bool(w.get("district_code")) for w in wards.values()}
    if len(with_district) != 1 or (districts and with_district == {False}):
        raise click.ClickException("the files mix the pre-2025 and post-2025 lists: import one scheme at a time")
    scheme = "pre2025" if with_district == {True} else "post2025"
    if scheme == "pre2025":
        for row in districts.values():  # district exports give the type; ward exports only the name
            row["type"] = row["type"] or next((t for t in _DISTRICT_TYPES if fold(row["name"]).startswith(fold(t))), "")
        _write(out / scheme / "districts.csv", list(districts.values()))
    _write(out / scheme / "provinces.csv", list(provinces.values()))
    _write(out / scheme / "wards.csv", list(wards.values()))
    counts = {f"{scheme} provinces": len(provinces), f"{scheme} wards": len(wards)}
    if scheme == "pre2025":
        counts[f"{scheme} districts"] = len(districts)
    return counts


def _line(unit: geo.Unit) -> str:
    return f"{unit.code}\t{unit.name}"


def register(group) -> None:
    scheme_option = click.option("--scheme", type=click.Choice(geo.SCHEMES), default="post2025", show_default=True,
                                 help="post2025: 34 provinces, two tiers; pre2025: 63 provinces, three tiers.")

    @group.group("geo")
    def geo_group() -> None:
        """Administrative units (provinces, wards) before and after 1 July 2025."""

    def run(fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except geo.AddressError as exc:
            raise click.ClickException(str(exc)) from None

    @geo_group.command("provinces")
    @scheme_option
    def provinces_cmd(scheme: str) -> None:
        """List provinces and centrally-run cities."""
        for unit in run(geo.provinces, scheme):
            click.echo(_line(unit))

    @geo_group.command("districts")
    @click.argument("province")
    def districts_cmd(province: str) -> None:
        """List the districts of a pre-2025 province."""
        for unit in run(geo.districts, province):
            click.echo(_line(unit))

    @geo_group.command("wards")
    @click.argument("province")
    @scheme_option
    @click.option("--district", help="pre2025 only: one district's wards.")
    @click.option("--search", "query", help="Only names containing this (accents and case ignored).")
    def wards_cmd(province: str, scheme: str, district: str | None, query: str | None) -> None:
        """List the wards/communes of a province."""
        units = run(geo.wards, province, scheme, district_code=district)
        needle = fold(query)
        for unit in units:
            if needle in unit.folded:
                click.echo(_line(unit))

    @geo_group.command("convert")
    @click.argument("old_ward_code")
    def convert_cmd(old_ward_code: str) -> None:
        """Show the post-2025 ward(s) an old ward became; a split ward lists every candidate."""
        conv = run(geo.new_ward_for, old_ward_code)
        old_district = geo.lookup_district(conv.old.district_code or conv.old.code)
        old_province = geo.province(conv.old.province_code, "pre2025")
        click.echo(f"old\t{conv.old.code}\t{conv.old.name}, {old_district.name}, {old_province.name}")
        for unit in conv.new:
            mark = "new" if not conv.is_split else "suggested" if unit == conv.suggested else "candidate"
            click.echo(f"{mark}\t{unit.code}\t{unit.name}, {geo.province(unit.province_code, 'post2025').name}")
        if conv.is_split:
            click.echo(f"split across {len(conv.new)} new wards: the street decides which one", err=True)

    @geo_group.command("import-vietnamadminunits")
    @click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
    @click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Default: the shipped data folder.")
    def import_vau_cmd(source: Path, out: Path | None) -> None:
        """Rebuild all data files from the data folder of the vietnamadminunits package."""
        for name, count in build_from_vietnamadminunits(source, out or _data_dir()).items():
            click.echo(f"{name}: {count}")

    @geo_group.command("import")
    @click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Default: the shipped data folder.")
    def import_gso_cmd(files: tuple[Path, ...], out: Path | None) -> None:
        """Rebuild one scheme's lists from official GSO exports (CSV or XLSX): ward list [+ district list]."""
        for name, count in build_from_gso(list(files), out or _data_dir()).items():
            click.echo(f"{name}: {count}")

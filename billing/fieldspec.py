"""The insurer's field lists (order, name, type, length, required), read from the CSV copies in
billing/data/ of shared/reference/bhyt/ (QĐ 130 as amended by QĐ 4750, and QĐ 4210)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DATA = Path(__file__).parent / "data"
FILES = {"qd130": "qd130_fields.csv", "4210": "qd4210_fields.csv"}


@dataclass(frozen=True)
class Field:
    table: str
    order: int
    name: str
    type: str  # string | number
    max_length: int | None  # None: unbounded
    required: str  # Y | N | C


@cache
def tables(fmt: str) -> dict[str, tuple[Field, ...]]:
    """{table: fields in order} for "qd130" or "4210"."""
    result: dict[str, list[Field]] = {}
    with open(DATA / FILES[fmt], encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            size = row["max_length"].strip()
            result.setdefault(row["table"], []).append(Field(row["table"], int(row["order"]), row["name"], row["type"],
                                                             None if size == "n" else int(size), row["required"]))
    return {table: tuple(sorted(fields, key=lambda f: f.order)) for table, fields in result.items()}


@cache
def names(fmt: str, table: str) -> tuple[str, ...]:
    return tuple(f.name for f in tables(fmt)[table])

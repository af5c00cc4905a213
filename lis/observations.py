"""Results as an analyser sent them, whatever the protocol (HL7 OBX, ASTM R): what the adapters
hand to lis.results.record."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class Observation:
    """One result row as the analyser sent it (OBX, or ASTM R)."""

    index: int  # OBX-1 / position, for error locations
    code: str
    alt_codes: tuple[str, ...]
    name: str
    value_type: str
    value: str
    unit: str
    reference_range: str
    flags: list[str]
    status: str
    observed_at: datetime | None
    notes: list[str] = field(default_factory=list)
    location: str = ""


@dataclass
class SpecimenResults:
    """The results of one specimen in a message: the ids it may be known by, in preference order."""

    candidates: dict[str, str]  # field name (OBR-3, SAC-3, ...) -> id
    observations: list[Observation] = field(default_factory=list)

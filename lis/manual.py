"""Results typed in by lab staff for a received specimen: tests without an analyser interface, or
an analyser that is down.

Each value is checked against its test's value type, then goes through lis.results.record exactly
like an analyser's (no analyser, the specimen chosen by its barcode), so flags, ranges, versions,
delta checks, critical values at release and the audit are the same. A value equal to the current
one makes no new version: submitting the form twice stores nothing twice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from decimal import Decimal, InvalidOperation

from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Session

from core import audit
from core.audit import Actor
from core.db import utcnow
from lis import results
from lis.models import LabTest, Specimen
from lis.observations import Observation, SpecimenResults

ENTERABLE = ("received", "resulted", "released")
MAX_LENGTH = 500  # lis_results.value
# HL7 SN: a comparator and a number, or two numbers joined by - (range), : or / (ratio), + (titre)
_NUMBER = r"[+-]?\d+(?:[.,]\d+)?"
STRUCTURED = re.compile(rf"^(?:(?:<=|>=|<>|<|>|=)\s*{_NUMBER}|{_NUMBER}(?:\s*[-:/+]\s*{_NUMBER})?)$")
FIELD_SOURCE = "manual"  # the candidate id field of the group: the specimen is named by its barcode anyway


class EntryError(ValueError):
    """errors: test id -> why its value is refused; message: what is wrong with the entry as a whole."""

    def __init__(self, code: str, message=None, errors: dict[int, object] | None = None):
        super().__init__(code)
        self.code, self.message, self.errors = code, message, errors or {}


def read_value(test: LabTest, raw: str) -> str:
    """The value as it will be stored, or Invalid's message. NM: a number ('5,6' is read as 5.6)."""
    value = " ".join(raw.split())
    if len(value) > MAX_LENGTH:
        raise ValueError(_l("At most %(max)d characters.", max=MAX_LENGTH))
    if test.value_type == "NM":
        plain = value.replace(",", ".") if value.count(",") == 1 and "." not in value else value
        try:
            number = Decimal(plain)
        except InvalidOperation:
            number = None
        if number is None or not number.is_finite() or not re.fullmatch(r"[+-]?\d+(\.\d+)?", plain):
            raise ValueError(_l("«%(value)s» is not a number: %(test)s takes a numeric result (e.g. 5.6).",
                                value=value, test=test.name))
        if number != number.quantize(Decimal("0.000001")) or abs(number) >= Decimal("1e12"):
            raise ValueError(_l("At most 12 digits before and 6 after the decimal point."))
        return plain
    if test.value_type == "SN" and not STRUCTURED.match(value):
        raise ValueError(_l("«%(value)s» is not a structured numeric result (e.g. <0.5, >=10, 1:128).",
                            value=value))
    return value


def enter(session: Session, actor: Actor, specimen: Specimen, values: Mapping[int, str], *,
          today: date | None = None) -> results.Recorded:
    """Record the values typed for the specimen's requested tests (test id -> text); empty ones are
    skipped. Raises EntryError and writes nothing when any value is refused."""
    specimen = session.get(Specimen, specimen.id, with_for_update={"of": Specimen}, populate_existing=True)
    if specimen.status not in ENTERABLE:
        if specimen.status == "rejected":
            raise EntryError("rejected", _l("This specimen was rejected: no result can be entered."))
        raise EntryError("not_received", _l("The specimen has not been received at the lab yet."))
    requested = {r.test_id: r.test for r in specimen.requests}
    current = {r.test_id: r.value for r in results.current_of(session, specimen)}
    errors: dict[int, object] = {}
    entered: list[tuple[LabTest, str]] = []
    for test_id, raw in values.items():
        if not (raw or "").strip():
            continue
        test = requested.get(test_id)
        if test is None:
            raise EntryError("not_requested", _l("A value was given for a test not asked of this specimen."))
        try:
            value = read_value(test, raw)
        except ValueError as exc:
            errors[test_id] = exc.args[0]
            continue
        if value != current.get(test_id):
            entered.append((test, value))
    if errors:
        raise EntryError("invalid", _l("Some values were refused: nothing was saved."), errors)
    if not entered:
        raise EntryError("nothing_new", _l("No new value was entered."))
    now = utcnow()
    observations = [Observation(index=n, code=test.code, alt_codes=(), name=test.name, value_type=test.value_type,
                                value=value, unit=test.unit or "", reference_range="", flags=[], status="F",
                                observed_at=now, location=f"{FIELD_SOURCE}^{n}")
                    for n, (test, value) in enumerate(entered, start=1)]
    session.flush()  # results.record writes through the driver on PostgreSQL
    try:
        made = results.record(session, actor, None, [SpecimenResults({FIELD_SOURCE: specimen.barcode}, observations)],
                              barcode=specimen.barcode, today=today)
    except results.ResultError as exc:
        if exc.kind == "unknown_test":
            raise EntryError("inactive_test", _l("A test of this specimen is no longer in use in the lab catalogue: "
                                                 "activate it before entering its result.")) from None
        raise EntryError(exc.kind, _l("The results cannot be recorded: %(reason)s", reason=exc.text)) from None
    audit.record(session, actor, "lis.result.enter", specimen,
                 {"barcode": specimen.barcode, "patient_id": specimen.patient_id,
                  "values": {test.code: value for test, value in entered},
                  "previous": {test.code: current.get(test.id) for test, _value in entered}})
    return made

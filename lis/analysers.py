"""Analyser profiles as lab staff edit them: identity (MSH-3^MSH-4), address for order downloads,
HL7 version, which field carries the specimen id, quirks, and the code map (one `code=TEST` a line)."""

from __future__ import annotations

import json

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core.audit import Actor
from lis.hl7 import SUPPORTED_VERSIONS
from lis.models import ORDER_MESSAGES, PROTOCOLS, Analyser, AnalyserCode, LabTest

SPECIMEN_FIELD_CHOICES = ("", "OBR-3", "OBR-2", "SPM-2", "SAC-3", "O-3", "O-4")


class ProfileError(ValueError):
    def __init__(self, errors: dict):
        super().__init__(", ".join(errors))
        self.errors = errors


def form_values(row: Analyser | None) -> dict:
    if row is None:
        return {"protocol": "hl7", "hl7_version": "2.3.1", "order_message": "ORM^O01", "active": "1", "quirks": "{}"}
    return {"code": row.code, "name": row.name, "sender": row.sender, "protocol": row.protocol,
            "hl7_version": row.hl7_version, "host": row.host or "", "port": str(row.port or ""),
            "order_message": row.order_message, "specimen_field": row.specimen_field or "",
            "quirks": json.dumps(row.quirks or {}, ensure_ascii=False), "active": "1" if row.active else "",
            "codes": "\n".join(f"{c.code}={c.test.code}" for c in row.codes)}


def _codes(session: Session, text: str, errors: dict) -> list[tuple[str, LabTest]]:
    tests = {t.code: t for t in session.scalars(select(LabTest).where(LabTest.is_panel.is_(False)))}
    pairs, seen = [], set()
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        code, sep, test_code = line.partition("=")
        code, test_code = code.strip(), test_code.strip().upper()
        if not sep or not code or test_code not in tests:
            errors["codes"] = _l("Line %(n)d: write the analyser code, '=', then one of our test codes.", n=n)
            return []
        if code in seen:
            errors["codes"] = _l("Line %(n)d: the analyser code %(code)s appears twice.", n=n, code=code)
            return []
        seen.add(code)
        pairs.append((code, tests[test_code]))
    return pairs


def save(session: Session, actor: Actor, row: Analyser | None, form: dict) -> Analyser:
    errors: dict = {}
    code = (form.get("code") or "").strip().upper()
    name = (form.get("name") or "").strip()
    sender = (form.get("sender") or "").strip()
    if not code or len(code) > 30:
        errors["code"] = _l("Give a short code (at most 30 characters).")
    if not name:
        errors["name"] = _l("Give the analyser's name.")
    protocol = form.get("protocol") or "hl7"
    if protocol not in PROTOCOLS:
        errors["protocol"] = _l("Unknown protocol.")
    if protocol == "astm":  # H-5 may be one part ("CA-1500") or name^version
        if not sender:
            errors["sender"] = _l("Give the sender name as the analyser writes it in the ASTM header (H-5).")
    elif not sender or "^" not in sender:
        errors["sender"] = _l("Give the sending application and facility as MSH-3^MSH-4.")
    version = form.get("hl7_version") or "2.3.1"
    if version not in SUPPORTED_VERSIONS:
        errors["hl7_version"] = _l("Unsupported HL7 version.")
    order_message = form.get("order_message") or "ORM^O01"
    if order_message not in ORDER_MESSAGES:
        errors["order_message"] = _l("Unknown order message.")
    specimen_field = form.get("specimen_field") or ""
    if specimen_field not in SPECIMEN_FIELD_CHOICES:
        errors["specimen_field"] = _l("Unknown field.")
    host = (form.get("host") or "").strip() or None
    port = None
    if (form.get("port") or "").strip():
        try:
            port = int(form["port"])
        except ValueError:
            port = 0
        if not 1 <= port <= 65535:
            errors["port"] = _l("The port is a number from 1 to 65535.")
    try:
        quirks = json.loads(form.get("quirks") or "{}")
        if not isinstance(quirks, dict):
            raise ValueError
    except ValueError:
        errors["quirks"] = _l("Quirks are a JSON object, e.g. {\"ignore_unknown_codes\": true}.")
        quirks = {}
    pairs = _codes(session, form.get("codes") or "", errors)
    clash = session.scalar(select(Analyser).where((Analyser.code == code) | (Analyser.sender == sender)))
    if clash is not None and clash is not row:
        errors["code" if clash.code == code else "sender"] = _l("Another analyser already uses this.")
    if errors:
        raise ProfileError(errors)
    created = row is None
    if row is None:
        row = Analyser(code=code)
        session.add(row)
    row.code, row.name, row.sender, row.protocol, row.hl7_version = code, name, sender, protocol, version
    row.order_message, row.specimen_field, row.host, row.port = order_message, specimen_field or None, host, port
    row.quirks, row.active = quirks, bool(form.get("active"))
    session.flush()
    for existing in list(row.codes):
        session.delete(existing)  # a mapping, not clinical data: replaced as a whole
    session.flush()
    row.codes = [AnalyserCode(analyser_id=row.id, code=c, test_id=t.id, test=t) for c, t in pairs]
    session.flush()
    audit.record(session, actor, "lis.analyser.create" if created else "lis.analyser.update", row,
                 {"code": code, "sender": sender, "host": host, "port": port, "codes": len(pairs)})
    return row

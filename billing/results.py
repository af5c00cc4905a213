"""Results for the claim's paraclinical table (XML4): lis and pacs announce released lab results and
signed imaging reports (core.events); billing keeps what the claim reports. Delivered as jobs (a
result arriving late must not block lis or pacs), once per report line."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.models import ClinicalResult
from core import events
from his.models.orders import Order


def _cut(value, size: int) -> str | None:
    text = "" if value is None else str(value).strip()
    return text[:size] or None


def _keep(session: Session, source: str, payload: dict, rows: list[dict], at: str, by: str | None) -> None:
    report = str(payload["report_id"])
    seen = set(session.scalars(select(ClinicalResult.position).where(ClinicalResult.source == source,
                                                                     ClinicalResult.report_id == report)))
    order = session.get(Order, payload["order_id"]) if payload.get("order_id") else None
    for position, row in enumerate(rows, start=1):
        if position not in seen:  # the same report delivered again adds nothing
            session.add(ClinicalResult(encounter_id=payload["encounter_id"], order_id=order.id if order else None,
                                       source=source, report_id=report, position=position,
                                       reported_at=datetime.fromisoformat(at), reported_by=_cut(by, 255), **row))
    session.flush()


@events.subscribe("lis.report.released")
def _lab_released(session: Session, payload: dict) -> None:
    rows = [{"code": _cut(r.get("code"), 50), "name": _cut(r.get("name") or r.get("code"), 255) or "?",
             "value": _cut(r.get("value"), 50), "unit": _cut(r.get("unit"), 50),
             "description": None, "conclusion": None} for r in payload.get("results", [])]
    _keep(session, "lis", payload, rows, payload["released_at"], payload.get("released_by"))


@events.subscribe("pacs.report.signed")
def _imaging_signed(session: Session, payload: dict) -> None:
    row = {"code": None, "name": _cut(payload.get("procedure") or payload.get("modality"), 255) or "?", "value": None,
           "unit": None, "description": payload.get("findings"), "conclusion": payload.get("conclusion")}
    _keep(session, "pacs", payload, [row], payload["signed_at"], payload.get("signed_by"))

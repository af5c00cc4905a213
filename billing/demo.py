"""Demo data for billing: which bed-day service each ward department charges, and the tender
information of the demo drugs (TT_THAU, illustrative). Running it again changes nothing."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.models import DepartmentBedService, ItemTerms
from core.audit import Actor
from his.models.catalog import Drug, Service
from his.models.org import Department

BED_SERVICES = {"KNOI": "GB.NOI", "KNHI": "GB.NOI", "KNGOAI": "GB.NGOAI", "KCC": "GB.HSTC"}
DEMO_TENDER = "1234/QĐ-SYT;G1;N4;2026"  # the shape of TT_THAU; not a real tender decision


def seed(session: Session, actor: Actor) -> None:
    for dept_code, service_code in BED_SERVICES.items():
        dept = session.scalar(select(Department).where(Department.code == dept_code))
        service = session.scalar(select(Service).where(Service.code == service_code))
        if dept is None or service is None:
            continue
        if session.scalar(select(DepartmentBedService).where(DepartmentBedService.department_id == dept.id)) is None:
            session.add(DepartmentBedService(department_id=dept.id, service_id=service.id))
    known = set(session.scalars(select(ItemTerms.item_code).where(ItemTerms.item_kind == "drug")))
    for code in session.scalars(select(Drug.code)):
        if code not in known:
            session.add(ItemTerms(item_kind="drug", item_code=code, in_list=True, payment_ratio=100,
                                  tender=DEMO_TENDER, valid_from=date(2026, 1, 1)))
    session.flush()

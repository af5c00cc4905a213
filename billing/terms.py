"""How the insurer classifies a catalogue item: its cost group (QĐ 5937 Phụ lục 3, MA_NHOM at the XML
border), whether the fund's list holds it, and its payment ratio — from billing_item_terms when a row is
in force on the day, otherwise from the defaults below."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from billing.models import ItemTerms

# Cost groups by number (QĐ 5937 Phụ lục 3, QĐ 4750 adds 19).
LAB, IMAGING, FUNCTIONAL, DRUG, DRUG_SPECIAL, DRUG_RATIO, BLOOD, SURGERY, SERVICE_RATIO = 1, 2, 3, 4, 5, 6, 7, 8, 9
SUPPLY, SUPPLY_RATIO, TRANSPORT, EXAM = 10, 11, 12, 13
BED_DAY_CARE, BED_INPATIENT, BED_HOLDING, BLOOD_PRODUCT = 14, 15, 16, 17
PROCEDURE, OTHER = 18, 19
COST_GROUPS = tuple(range(1, 20))
DRUG_GROUPS = frozenset({DRUG, DRUG_SPECIAL, DRUG_RATIO, BLOOD, BLOOD_PRODUCT})  # XML2 lines
SUPPLY_GROUPS = frozenset({SUPPLY, SUPPLY_RATIO})
BED_GROUPS = frozenset({BED_DAY_CARE, BED_INPATIENT, BED_HOLDING})
# Groups whose line must name who carried it out and when (BHXH check list, QĐ 4750).
EXECUTED_GROUPS = frozenset({LAB, IMAGING, FUNCTIONAL, SURGERY, PROCEDURE})

# The his catalogue's service group names (as imported) → cost group.
SERVICE_GROUPS = {"khám bệnh": EXAM, "xét nghiệm": LAB, "chẩn đoán hình ảnh": IMAGING, "thăm dò chức năng": FUNCTIONAL,
                  "thủ thuật": PROCEDURE, "phẫu thuật": SURGERY, "ngày giường": BED_INPATIENT, "vận chuyển": TRANSPORT,
                  "máu": BLOOD, "chế phẩm máu": BLOOD_PRODUCT}


@dataclass(frozen=True)
class Terms:
    cost_group: int
    in_list: bool
    payment_ratio: int


def default_group(item_kind: str, service_group: str | None = None, encounter_kind: str | None = None) -> int:
    if item_kind == "drug":
        return DRUG
    if item_kind == "supply":
        return SUPPLY
    if item_kind == "bed":
        return BED_DAY_CARE if encounter_kind == "day_treatment" else BED_INPATIENT
    return SERVICE_GROUPS.get((service_group or "").strip().lower(), OTHER)


def terms_for(session: Session, item_kind: str, item_code: str, on: date, *, service_group: str | None = None,
              encounter_kind: str | None = None) -> Terms:
    row = session.scalar(select(ItemTerms).where(
        ItemTerms.item_kind == item_kind, ItemTerms.item_code == item_code, ItemTerms.valid_from <= on,
        or_(ItemTerms.valid_to.is_(None), ItemTerms.valid_to >= on)).order_by(ItemTerms.valid_from.desc()).limit(1))
    group = default_group(item_kind, service_group, encounter_kind)
    if row is None:
        return Terms(group, True, 100)
    return Terms(row.cost_group or group, row.in_list, row.payment_ratio)

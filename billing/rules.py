"""The dated BHYT money rules: one table, one row per period, read by the split engine.

Each row says from which day it applies, the legal source, the base salary (lương cơ sở), the share
of it under which a visit is fully covered, the co-payment ceiling, the benefit level of each card
code and the rate applied to the benefit when a patient comes without referral (trái tuyến /
tự đến). A new decree is a new row here, nothing else. Rows or values marked [U] are uncertain
(shared/reference/bhyt-xml.md §6, §11): correct them here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from flask_babel import lazy_gettext as _l

FACILITY_LEVELS = ("central", "provincial", "district")
CARES = ("outpatient", "inpatient")
# Which day picks the row for an encounter: the day it started (NGAY_VAO). One public checker does
# this, then NGAY_RA, then NGAY_TTOAN; the decree does not say for a stay spanning a change. [U]
DATE_BASIS = "started"

# Card benefit code (3rd character of the card number) → percent of the in-scope cost the fund pays.
# Code 1 also lifts the per-item payment ratios; code 5 also covers costs outside the fund's list.
BENEFIT_LEVELS = {"1": 100, "2": 100, "3": 95, "4": 80, "5": 100}
NO_RATIO_LIMIT_CODES = frozenset({"1"})
OUT_OF_LIST_COVERED_CODES = frozenset({"5"})


@dataclass(frozen=True)
class RuleSet:
    code: str
    valid_from: date
    valid_to: date | None
    source: str
    base_salary: Decimal
    full_cover_share: Decimal = Decimal("0.15")
    copay_ceiling_months: int = 6  # miễn cùng chi trả above 6 months of base salary in a year
    continuous_years: int = 5
    # (facility level, care) → percent of the benefit kept by a patient who came without referral.
    self_referred_rates: dict = field(default_factory=dict)
    notes: tuple = ()

    @property
    def full_cover_threshold(self) -> Decimal:
        return (self.base_salary * self.full_cover_share).quantize(Decimal("1"))

    @property
    def copay_ceiling(self) -> Decimal:
        return self.base_salary * self.copay_ceiling_months

    def self_referred_rate(self, level: str, care: str) -> int:
        return self.self_referred_rates[(level, care)]


# Luật BHYT 46/2014 art. 22: without referral, inpatient at central level 40 %, at provincial level 100 %
# since 01/01/2021, at district level 100 % (outpatient too: thông tuyến huyện); outpatient elsewhere 0 %.
_BEFORE_2025 = {("central", "inpatient"): 40, ("central", "outpatient"): 0,
                ("provincial", "inpatient"): 100, ("provincial", "outpatient"): 0,
                ("district", "inpatient"): 100, ("district", "outpatient"): 100}
# Luật 51/2024/QH15 (from 01/07/2025, NĐ 188/2025): levels of care replace routes; a patient who comes
# by themself keeps 100 % at the basic level (most provincial and district hospitals), 40 % inpatient
# and 0 % outpatient at central level. [U] — one public checker reduces only MA_DOITUONG_KCB 3.1.
_FROM_2025 = {("central", "inpatient"): 40, ("central", "outpatient"): 0,
              ("provincial", "inpatient"): 100, ("provincial", "outpatient"): 100,
              ("district", "inpatient"): 100, ("district", "outpatient"): 100}

RULES: tuple[RuleSet, ...] = (
    RuleSet("BHYT-2021-01", date(2021, 1, 1), date(2023, 6, 30),
            "Luật 46/2014/QH13; NĐ 38/2019/NĐ-CP (lương cơ sở 1.490.000)", Decimal("1490000"),
            self_referred_rates=_BEFORE_2025),
    RuleSet("BHYT-2023-07", date(2023, 7, 1), date(2024, 6, 30),
            "Luật 46/2014/QH13; NĐ 24/2023/NĐ-CP (lương cơ sở 1.800.000)", Decimal("1800000"),
            self_referred_rates=_BEFORE_2025),
    RuleSet("BHYT-2024-07", date(2024, 7, 1), date(2025, 6, 30),
            "Luật 46/2014/QH13; NĐ 73/2024/NĐ-CP (lương cơ sở 2.340.000)", Decimal("2340000"),
            self_referred_rates=_BEFORE_2025),
    RuleSet("BHYT-2025-07", date(2025, 7, 1), date(2026, 6, 30),
            "Luật 51/2024/QH15, NĐ 188/2025/NĐ-CP; NĐ 73/2024/NĐ-CP (lương cơ sở 2.340.000)", Decimal("2340000"),
            self_referred_rates=_FROM_2025, notes=("self-referral rates [U]",)),
    RuleSet("BHYT-2026-07", date(2026, 7, 1), None,
            "Luật 51/2024/QH15, NĐ 188/2025/NĐ-CP; NĐ 161/2026/NĐ-CP (lương cơ sở 2.530.000) [U]",
            Decimal("2530000"), self_referred_rates=_FROM_2025, notes=("base salary [U]", "self-referral rates [U]")),
)


class RuleError(ValueError):
    def __init__(self, code: str, message):
        super().__init__(code)
        self.code, self.message = code, message

    def __str__(self) -> str:
        return str(self.message)


def rule_for(day: date, rules: tuple[RuleSet, ...] = RULES) -> RuleSet:
    """The row in force on `day`; a day before the table raises RuleError."""
    for rule in rules:
        if rule.valid_from <= day and (rule.valid_to is None or day <= rule.valid_to):
            return rule
    raise RuleError("no_rule", _l("No BHYT rule covers %(day)s.", day=day.strftime("%d/%m/%Y")))

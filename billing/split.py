"""The BHYT cost split: who pays what of each line, by the dated rules of billing.rules.

Per line (QĐ 130 with the QĐ 4750 corrections, every amount rounded to 2 decimals half up):
    cost      = quantity × unit price                                   (THANH_TIEN_BV)
    in_scope  = quantity × insurer's unit price × payment ratio / 100    (THANH_TIEN_BH; 0 outside the list)
    self_pay  = cost − in_scope                                         (T_BNTT)
    insurer   = in_scope × benefit / 100                                (T_BHTT)
    copay     = in_scope − insurer                                      (T_BNCCT)
The benefit (MUC_HUONG) comes from the card code, lifted to 100 % when the visit's in-scope total is
below the rule's share of the base salary (on-route only) or when the patient holds a co-payment
exemption, and multiplied by the self-referral rate when the patient came without referral. A patient
with 5 years of continuous coverage whose co-payments of the year pass the ceiling pays no more
co-payment above it. The engine is pure: facts in, numbers and the reasons out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from flask_babel import lazy_gettext as _l

from billing import rules
from billing.rules import RuleSet

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
ON_ROUTE = ("correct", "referred", "emergency")


def money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def whole_dong(value: Decimal) -> Decimal:
    return value.quantize(Decimal("1"), rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Facts:
    """What the split needs to know about the encounter and the patient's card."""

    day: date  # picks the rule row (rules.DATE_BASIS)
    care: str  # outpatient | inpatient
    facility_level: str
    insured: bool = False
    benefit_code: str | None = None  # 3rd character of the card number
    route: str | None = None  # correct | referred | emergency | self_referred
    exempt_since: date | None = None  # co-payment exemption paper (NGAY_MIEN_CCT)
    continuous_since: date | None = None  # 5 years of continuous coverage reached (NAM_NAM_LIEN_TUC)
    copaid_this_year: Decimal = ZERO  # co-payments already made in the calendar year
    uninsured_reason: object = None  # why a card shown does not count (expired, malformed)


@dataclass(slots=True)
class Line:
    key: object
    quantity: Decimal
    unit_price: Decimal
    insurer_unit_price: Decimal | None  # None: the fund does not take this item
    payment_ratio: int = 100
    in_list: bool = True


@dataclass(slots=True)
class LineSplit:
    key: object
    cost: Decimal
    in_scope: Decimal
    self_pay: Decimal
    insurer: Decimal
    copay: Decimal
    benefit: int
    payment_ratio: int
    in_scope_item: bool


@dataclass
class Split:
    rule: RuleSet | None
    benefit: int
    lines: list[LineSplit]
    reasons: list = field(default_factory=list)

    def _sum(self, name: str) -> Decimal:
        return sum((getattr(line, name) for line in self.lines), ZERO)

    @property
    def cost(self) -> Decimal:
        return self._sum("cost")

    @property
    def in_scope(self) -> Decimal:
        return self._sum("in_scope")

    @property
    def insurer(self) -> Decimal:
        return self._sum("insurer")

    @property
    def copay(self) -> Decimal:
        return self._sum("copay")

    @property
    def self_pay(self) -> Decimal:
        return self._sum("self_pay")

    @property
    def patient(self) -> Decimal:
        return self.copay + self.self_pay


def _vnd(value: Decimal) -> str:
    return f"{whole_dong(value):,.0f}".replace(",", ".") + " ₫"


def _benefit(facts: Facts, rule: RuleSet, in_scope: Decimal, reasons: list) -> int:
    level = rules.BENEFIT_LEVELS[facts.benefit_code]
    reasons.append(_l("Card benefit code %(code)s: %(level)d %%.", code=facts.benefit_code, level=level))
    if facts.route not in ON_ROUTE:
        rate = rule.self_referred_rate(facts.facility_level, facts.care)
        reasons.append(_l("Came without referral: %(rate)d %% of the benefit at this level of care.", rate=rate))
        return int(whole_dong(Decimal(level * rate) / 100))
    if facts.route == "emergency":
        reasons.append(_l("Emergency: treated as on-route."))
    if facts.exempt_since is not None and facts.exempt_since <= facts.day:
        reasons.append(_l("Co-payment exemption since %(day)s: 100 %%.", day=facts.exempt_since.strftime("%d/%m/%Y")))
        return 100
    if in_scope < rule.full_cover_threshold:
        reasons.append(_l("In-scope total %(total)s is below %(share)d %% of the base salary (%(limit)s): 100 %%.",
                          total=_vnd(in_scope), share=int(rule.full_cover_share * 100),
                          limit=_vnd(rule.full_cover_threshold)))
        return 100
    return level


def compute(lines: list[Line], facts: Facts, rule: RuleSet | None = None) -> Split:
    """Split every line; `rule` defaults to the row in force on facts.day (RuleError before the table)."""
    rule = rule or rules.rule_for(facts.day)
    reasons: list = [_l("Rule %(code)s: %(source)s.", code=rule.code, source=rule.source)]
    covered = facts.insured and facts.benefit_code in rules.BENEFIT_LEVELS
    if not covered:
        reasons.append(facts.uninsured_reason or _l("No valid BHYT card: the patient pays every line."))
    no_ratio = covered and facts.benefit_code in rules.NO_RATIO_LIMIT_CODES
    out_of_list_ok = covered and facts.benefit_code in rules.OUT_OF_LIST_COVERED_CODES
    staged = []
    for line in lines:
        cost = money(line.quantity * line.unit_price)
        takes = covered and line.insurer_unit_price is not None and (line.in_list or out_of_list_ok)
        ratio = 100 if no_ratio else line.payment_ratio
        in_scope = money(line.quantity * line.insurer_unit_price * ratio / 100) if takes else ZERO
        if line.quantity > 0:
            in_scope = min(in_scope, cost)
        staged.append((line, cost, in_scope, ratio, takes))
    total_in_scope = sum((s[2] for s in staged), ZERO)
    benefit = _benefit(facts, rule, total_in_scope, reasons) if covered else 0
    result = []
    for line, cost, in_scope, ratio, takes in staged:
        insurer = money(in_scope * benefit / 100)
        result.append(LineSplit(line.key, cost, in_scope, cost - in_scope, insurer, in_scope - insurer, benefit, ratio,
                                takes))
    split = Split(rule, benefit, result, reasons)
    if covered:
        _apply_ceiling(split, facts, rule)
    return split


def _apply_ceiling(split: Split, facts: Facts, rule: RuleSet) -> None:
    """Above the yearly ceiling a patient with 5 continuous years pays no co-payment: the fund takes it."""
    since = facts.continuous_since
    if since is None or since > facts.day:
        return
    room = rule.copay_ceiling - facts.copaid_this_year
    if split.copay <= room:
        return
    room = max(room, ZERO)
    for line in split.lines:
        if line.copay <= 0:
            continue
        keep = min(line.copay, room)
        room -= keep
        line.insurer += line.copay - keep
        line.copay = keep
    split.reasons.append(_l("Co-payments of the year reached %(limit)s (%(months)d months of base salary): the fund "
                            "pays the rest.", limit=_vnd(rule.copay_ceiling), months=rule.copay_ceiling_months))

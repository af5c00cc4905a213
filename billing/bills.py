"""The bill of an encounter: its charges split by the BHYT rules, the totals kept for the cashier, and
what was paid against it (advances, payments, refunds)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from flask_babel import lazy_gettext as _l
from sqlalchemy import extract, func, select
from sqlalchemy.orm import Session

from billing import rules, split
from billing.charges import local_day
from billing.models import Bill, Charge, Payment, ReceiptCounter
from billing.split import ZERO, Facts, Line, Split, whole_dong
from core import audit, events
from core.audit import Actor
from core.db import utcnow
from his.identity import BHXH_RE, BHYT_LEGACY_RE
from his.models.encounters import Encounter

INPATIENT_KINDS = ("inpatient", "day_treatment")
CLOSED = ("finished", "discharged")
PAID_EVENT = "billing.bill.paid"


def next_number(session: Session, name: str) -> int:
    """The next value of a named counter, under a row lock (numbers never repeat)."""
    row = session.get(ReceiptCounter, name, with_for_update=True)
    if row is None:
        row = ReceiptCounter(name=name, value=0)
        session.add(row)
    row.value += 1
    session.flush()
    return row.value


def card_problem(encounter: Encounter, day: date):
    """Why the card of an insured encounter does not count on `day`, or None."""
    card = encounter.bhyt_card
    if card is None:
        return _l("No BHYT card on the encounter.")
    if not (BHYT_LEGACY_RE.match(card.number) or BHXH_RE.match(card.number)):
        return _l("The BHYT card number «%(number)s» is malformed.", number=card.number)
    if card.valid_to is not None and card.valid_to < day:
        return _l("The BHYT card expired on %(day)s.", day=card.valid_to.strftime("%d/%m/%Y"))
    if card.valid_from is not None and card.valid_from > day:
        return _l("The BHYT card is valid only from %(day)s.", day=card.valid_from.strftime("%d/%m/%Y"))
    if card.benefit_level not in rules.BENEFIT_LEVELS:
        return _l("The card's benefit level is not known: check the card on the portal.")
    return None


def copaid_by_patient_year(session: Session, patient_ids) -> dict[tuple[int, int], list[tuple[int, Decimal]]]:
    """{(patient, year): [(encounter, co-payment)]} of the bills of these patients, in one query."""
    rows = session.execute(select(Bill.patient_id, extract("year", Encounter.started_at), Bill.encounter_id,
                                  Bill.patient_copay).join(Encounter).where(Bill.patient_id.in_(list(patient_ids))))
    result: dict[tuple[int, int], list[tuple[int, Decimal]]] = {}
    for patient_id, year, encounter_id, copay in rows:
        result.setdefault((patient_id, int(year)), []).append((encounter_id, copay))
    return result


def _copaid_this_year(session: Session, encounter: Encounter, day: date) -> Decimal:
    total = session.scalar(select(func.coalesce(func.sum(Bill.patient_copay), 0)).join(Encounter)
                           .where(Bill.patient_id == encounter.patient_id, Bill.encounter_id != encounter.id,
                                  extract("year", Encounter.started_at) == day.year))
    return Decimal(total)


def facts_for(session: Session, encounter: Encounter, facility_level: str, *,
              copaid_this_year: Decimal | None = None) -> Facts:
    """copaid_this_year: the patient's co-payments of the year on other bills, when the caller has them."""
    day = local_day(encounter.started_at)
    problem = card_problem(encounter, day) if encounter.insured else None
    card = encounter.bhyt_card
    route = "emergency" if encounter.is_emergency else (encounter.bhyt_route or "correct")
    return Facts(day=day, care="inpatient" if encounter.kind in INPATIENT_KINDS else "outpatient",
                 facility_level=facility_level, insured=encounter.insured and problem is None,
                 benefit_code=card.benefit_level if card else None, route=route,
                 continuous_since=card.five_years_since if card else None,
                 copaid_this_year=_copaid_this_year(session, encounter, day) if copaid_this_year is None
                 else copaid_this_year, uninsured_reason=problem)


def split_lines(charges: list[Charge]) -> list[Line]:
    return [Line(c, c.quantity, c.unit_price, c.bhyt_unit_price, c.payment_ratio, c.in_list)
            for c in charges if c.status == "priced"]


@dataclass
class BillView:
    bill: Bill
    split: Split
    charges: list[Charge]
    unpriced: list[Charge]
    advances: Decimal
    paid: Decimal
    refunded: Decimal

    @property
    def patient_due(self) -> Decimal:
        """What the patient still owes (negative: what the hospital owes back)."""
        return self.bill.patient_share - self.advances - self.paid + self.refunded


def _paid(payments: list[Payment], kind: str) -> Decimal:
    return sum((p.amount for p in payments if p.kind == kind), ZERO)


def get_or_create(session: Session, actor: Actor, encounter: Encounter) -> Bill:
    bill = session.scalar(select(Bill).where(Bill.encounter_id == encounter.id))
    if bill is None:
        bill = Bill(encounter_id=encounter.id, patient_id=encounter.patient_id,
                    code=f"HD{next_number(session, 'bill'):06d}", status="open")
        session.add(bill)
        session.flush()
        audit.record(session, actor, "billing.bill.open", bill, {"encounter_id": encounter.id, "code": bill.code})
    return bill


def compute(session: Session, actor: Actor, encounter: Encounter, facility_level: str) -> BillView:
    """Split the encounter's charges now and keep the totals on its bill (audited as a read of the bill)."""
    bill = get_or_create(session, actor, encounter)
    charges = list(session.scalars(select(Charge).where(Charge.encounter_id == encounter.id)
                                   .order_by(Charge.service_at, Charge.id)))
    result = split.compute(split_lines(charges), facts_for(session, encounter, facility_level))
    bill.rule_code, bill.benefit_percent = result.rule.code, result.benefit
    bill.total, bill.insurer_pays = result.cost, result.insurer
    bill.patient_copay, bill.patient_self = result.copay, result.self_pay
    bill.patient_share = whole_dong(result.patient)
    bill.computed_at = utcnow()
    payments = list(bill.payments)
    view = BillView(bill, result, charges, [c for c in charges if c.status == "unpriced"], _paid(payments, "advance"),
                    _paid(payments, "payment"), _paid(payments, "refund"))
    if bill.status == "paid" and view.patient_due > 0:
        bill.status, bill.paid_at = "open", None  # a late charge reopens it
    elif encounter.status in CLOSED and bill.total != 0:
        settle(session, actor, view)  # nothing left for the patient to pay: settled as it stands
    session.flush()
    audit.record(session, actor, "billing.bill.read", bill,
                 {"encounter_id": encounter.id, "patient_id": encounter.patient_id, "total": str(bill.total),
                  "patient_share": str(bill.patient_share), "rule": bill.rule_code})
    return view


def settle(session: Session, actor: Actor, view: BillView) -> None:
    """Mark the bill paid when what was paid balances the patient's share and every charge is priced."""
    bill = view.bill
    if bill.status == "open" and not view.unpriced and view.patient_due == 0 and bill.computed_at:
        bill.status, bill.paid_at = "paid", utcnow()
        session.flush()
        audit.record(session, actor, "billing.bill.paid", bill, {"code": bill.code})
        events.emit(session, PAID_EVENT, {"bill_id": bill.id, "bill_code": bill.code,
                                          "encounter_id": bill.encounter_id}, actor=actor)

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
    """A bill as computed now. `share` is the patient's share of this computation (the bill row keeps it
    only when the computation was written, see `compute`)."""

    bill: Bill
    encounter: Encounter
    facility_level: str
    split: Split
    charges: list[Charge]
    unpriced: list[Charge]
    share: Decimal
    advances: Decimal
    paid: Decimal
    refunded: Decimal

    @property
    def patient_due(self) -> Decimal:
        """What the patient still owes (negative: what the hospital owes back)."""
        return self.share - self.advances - self.paid + self.refunded


def _paid(payments: list[Payment], kind: str) -> Decimal:
    return sum((p.amount for p in payments if p.kind == kind), ZERO)


def _locked(session: Session, encounter: Encounter) -> Bill | None:
    """The encounter's bill under a row lock, re-read: a payment committed meanwhile is seen."""
    return session.scalar(select(Bill).where(Bill.encounter_id == encounter.id).with_for_update()
                          .execution_options(populate_existing=True))


def get_or_create(session: Session, actor: Actor, encounter: Encounter) -> Bill:
    """The encounter's bill, locked until the transaction ends (payments on one bill are serialised)."""
    bill = _locked(session, encounter)
    if bill is None:
        bill = Bill(encounter_id=encounter.id, patient_id=encounter.patient_id,
                    code=f"HD{next_number(session, 'bill'):06d}", status="open")
        session.add(bill)
        session.flush()
        audit.record(session, actor, "billing.bill.open", bill, {"encounter_id": encounter.id, "code": bill.code})
    return bill


def _view(session: Session, bill: Bill, encounter: Encounter, facility_level: str) -> BillView:
    charges = list(session.scalars(select(Charge).where(Charge.encounter_id == encounter.id)
                                   .order_by(Charge.service_at, Charge.id)))
    result = split.compute(split_lines(charges), facts_for(session, encounter, facility_level))
    payments = list(session.scalars(select(Payment).where(Payment.bill_id == bill.id))) if bill.id else []
    return BillView(bill, encounter, facility_level, result, charges, [c for c in charges if c.status == "unpriced"],
                    whole_dong(result.patient), _paid(payments, "advance"), _paid(payments, "payment"),
                    _paid(payments, "refund"))


def _audit_read(session: Session, actor: Actor, view: BillView) -> None:
    bill = view.bill
    audit.record(session, actor, "billing.bill.read", bill if bill.id else None,
                 {"encounter_id": view.encounter.id, "patient_id": view.encounter.patient_id,
                  "total": str(view.split.cost), "patient_share": str(view.share), "rule": view.split.rule.code})


def preview(session: Session, actor: Actor, encounter: Encounter, facility_level: str) -> BillView:
    """The bill as it stands now, for a screen: nothing is written but the audit of the read (a bill not
    opened yet is shown unsaved, without a code)."""
    bill = session.scalar(select(Bill).where(Bill.encounter_id == encounter.id))
    if bill is None:
        bill = Bill(encounter_id=encounter.id, patient_id=encounter.patient_id, status="open")  # never added
    view = _view(session, bill, encounter, facility_level)
    _audit_read(session, actor, view)
    return view


def compute(session: Session, actor: Actor, encounter: Encounter, facility_level: str, *,
            audited: bool = True) -> BillView:
    """Lock the bill, split the encounter's charges now and keep the totals on it; settle or reopen it.
    audited: write the read audit event (a payment that recomputes is audited as the payment)."""
    bill = get_or_create(session, actor, encounter)
    view = _view(session, bill, encounter, facility_level)
    result = view.split
    bill.rule_code, bill.benefit_percent = result.rule.code, result.benefit
    bill.total, bill.insurer_pays = result.cost, result.insurer
    bill.patient_copay, bill.patient_self = result.copay, result.self_pay
    bill.patient_share = view.share
    bill.computed_at = utcnow()
    if bill.status == "paid" and view.patient_due > 0:
        bill.status, bill.paid_at = "open", None  # a late charge reopens it
    elif encounter.status in CLOSED and bill.total != 0:
        settle(session, actor, view)  # nothing left for the patient to pay: settled as it stands
    session.flush()
    if audited:
        _audit_read(session, actor, view)
    return view


def relock(session: Session, actor: Actor, view: BillView) -> BillView:
    """Bring a view up to date under the bill's lock, in place: what a payment must act on (the view
    may come from a screen shown minutes ago, another desk may have been paid meanwhile)."""
    fresh = compute(session, actor, view.encounter, view.facility_level, audited=False)
    for name in ("bill", "split", "charges", "unpriced", "share", "advances", "paid", "refunded"):
        setattr(view, name, getattr(fresh, name))
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

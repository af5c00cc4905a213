"""Charges: what an encounter cost, built from what his recorded.

- a completed lab, imaging or procedure order → one charge per service line;
- a dispensed prescription line → one charge per lot movement (his.stock.dispensed), a return → a credit;
- a reversed order → a credit for each of its charges;
- bed days from the bed stays (per local calendar day, in the department's bed-day service);
- supplies used and manual adjustments, entered by staff (an adjustment needs a reason).

Each charge is priced from the his catalogue on its service day (not the order day). A missing price
does not block the clinical act: the charge is kept `unpriced` with the precise reason and the bill
cannot be settled until `reprice` finds a price. The event subscribers run inline, so a charge commits
or fails with what caused it; `source_key` is unique, so nothing is charged twice.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing import terms
from billing.models import Charge, DepartmentBedService
from billing.split import money
from core import audit, events
from core.audit import Actor
from core.db import utcnow
from his import catalog
from his.admission import DEFAULT_TZ
from his.models.admission import BedStay
from his.models.catalog import Drug, Service, Supply
from his.models.encounters import Encounter
from his.models.orders import Order, OrderLine

SYSTEM = Actor.system("billing")
SERVICE_ORDER_KINDS = ("lab", "imaging", "procedure")
PRESCRIPTION_LINE = "prescription_line"  # his.dispensing.REFERENCE
ADJUSTMENT_CODE = "DIEUCHINH"


class ChargeError(ValueError):
    def __init__(self, code: str, field_name: str | None, message):
        super().__init__(code)
        self.code, self.field, self.message = code, field_name, message

    def __str__(self) -> str:
        return str(self.message)


def local_day(at: datetime) -> date:
    return at.astimezone(DEFAULT_TZ).date()


def _price(session: Session, item, payer: str, day: date) -> tuple[Decimal | None, Decimal | None, str | None]:
    """(our unit price, the insurer's unit price, problem) for `item` on `day`."""
    is_service = isinstance(item, Service)
    row = catalog.price_row(session, item, day, payer if is_service else None)
    if row is None:
        day_text = day.strftime("%d/%m/%Y")
        if not is_service:
            return None, None, str(_l("No price for «%(code)s» on %(day)s.", code=item.code, day=day_text))
        kind = {"bhyt": "BHYT", "fee": _l("fee"), "on_demand": _l("on demand")}[payer]
        return None, None, str(_l("No %(payer)s price for «%(code)s» on %(day)s.", payer=kind, code=item.code,
                                  day=day_text))
    if payer == "fee":
        return row.price, None, None
    if not is_service or payer == "bhyt":
        return row.price, row.price, None
    bhyt_row = catalog.price_row(session, item, day, "bhyt")  # on demand: the fund pays up to its own price
    return row.price, bhyt_row.price if bhyt_row else None, None


def _new_charge(session: Session, actor: Actor, encounter: Encounter, *, source: str, key: str, item, item_kind: str,
                payer: str, quantity: Decimal, at: datetime, **extra) -> Charge | None:
    if session.scalar(select(Charge.id).where(Charge.source_key == key)) is not None:
        return None  # the same fact delivered again
    day = local_day(at)
    price, insurer_price, problem = _price(session, item, payer, day)
    item_terms = terms.terms_for(session, item_kind if item_kind != "bed" else "service", item.code, day,
                                 service_group=getattr(item, "group", None), encounter_kind=encounter.kind)
    group = terms.default_group("bed", encounter_kind=encounter.kind) if item_kind == "bed" else item_terms.cost_group
    charge = Charge(encounter_id=encounter.id, patient_id=encounter.patient_id, source=source, source_key=key,
                    item_kind=item_kind, item_code=item.code, bhyt_code=item.bhyt_code, item_name=item.name,
                    unit=item.unit, cost_group=group, in_list=item_terms.in_list,
                    payment_ratio=item_terms.payment_ratio, payer=payer, quantity=quantity, unit_price=price,
                    bhyt_unit_price=insurer_price, amount=None if price is None else money(quantity * price),
                    status="unpriced" if price is None else "priced", problem=problem, service_at=at,
                    service_day=day, department_id=encounter.department_id, created_by=actor.id, **extra)
    session.add(charge)
    session.flush()
    audit.record(session, actor, "billing.charge.add", charge,
                 {"encounter_id": encounter.id, "patient_id": encounter.patient_id, "item": item.code,
                  "quantity": str(quantity), "amount": None if charge.amount is None else str(charge.amount),
                  "problem": problem})
    if encounter.insured:
        from billing.checkin import queue_checkin  # here, not at the top: checkin reads claims, which read charges

        queue_checkin(session, encounter.id)  # the first cost of the visit: check in with the insurer (once)
    return charge


def _credit(session: Session, actor: Actor, original: Charge, key: str, quantity: Decimal, reason: str,
            at: datetime) -> Charge | None:
    if session.scalar(select(Charge.id).where(Charge.source_key == key)) is not None:
        return None
    credit = Charge(encounter_id=original.encounter_id, patient_id=original.patient_id, source=original.source,
                    source_key=key, order_id=original.order_id, item_kind=original.item_kind,
                    item_code=original.item_code, bhyt_code=original.bhyt_code, item_name=original.item_name,
                    unit=original.unit, cost_group=original.cost_group, in_list=original.in_list,
                    payment_ratio=original.payment_ratio, payer=original.payer, quantity=-quantity,
                    unit_price=original.unit_price, bhyt_unit_price=original.bhyt_unit_price,
                    amount=None if original.unit_price is None else money(-quantity * original.unit_price),
                    status=original.status, problem=original.problem, service_at=at, service_day=original.service_day,
                    department_id=original.department_id, doctor_id=original.doctor_id,
                    performer_id=original.performer_id, bed_code=original.bed_code, credit_of_id=original.id,
                    reason=reason, created_by=actor.id)
    session.add(credit)
    session.flush()
    audit.record(session, actor, "billing.charge.credit", credit,
                 {"encounter_id": original.encounter_id, "credit_of": original.id, "quantity": str(-quantity),
                  "reason": reason})
    return credit


def _at(iso: str | None) -> datetime:
    return datetime.fromisoformat(iso) if iso else utcnow()


# --- reactions to his events (inline: the charge commits with the event) -------------------------

@events.subscribe("his.order.completed", inline=True)
def _order_completed(session: Session, payload: dict) -> None:
    if payload["kind"] not in SERVICE_ORDER_KINDS:
        return  # drugs are charged when they leave the pharmacy
    order = session.get(Order, payload["order_id"])
    at = order.executed_at or _at(payload.get("executed_at"))
    for line in order.lines:
        if line.service_id is None:
            continue
        _new_charge(session, SYSTEM, order.encounter, source="order", key=f"order_line:{line.id}", item=line.service,
                    item_kind="service", payer=line.payer, quantity=line.quantity, at=at, order_id=order.id,
                    doctor_id=order.orderer_id, performer_id=order.performer_id)


@events.subscribe("his.order.reversed", inline=True)
def _order_reversed(session: Session, payload: dict) -> None:
    for charge in session.scalars(select(Charge).where(Charge.order_id == payload["order_id"],
                                                       Charge.credit_of_id.is_(None))).all():
        _credit(session, SYSTEM, charge, f"reverse:{charge.id}", charge.quantity - _credited(session, charge),
                payload.get("reason") or "reversed", utcnow())


def _credited(session: Session, charge: Charge) -> Decimal:
    rows = session.scalars(select(Charge.quantity).where(Charge.credit_of_id == charge.id)).all()
    return -sum(rows, Decimal(0))


@events.subscribe("his.stock.dispensed", inline=True)
def _dispensed(session: Session, payload: dict) -> None:
    if payload.get("reference_type") != PRESCRIPTION_LINE:
        return
    line = session.get(OrderLine, payload["reference_id"]) if payload.get("reference_id") else None
    if line is None:
        return  # a dispense naming no prescription line of ours: nothing to charge to an encounter
    order = line.order
    drug = session.get(Drug, payload["drug_id"])
    now = utcnow()
    for moved in payload["lines"]:
        _new_charge(session, SYSTEM, order.encounter, source="dispense", key=f"dispense:{moved['movement_id']}",
                    item=drug, item_kind="drug", payer=line.payer, quantity=Decimal(moved["quantity"]), at=now,
                    order_id=order.id, doctor_id=order.orderer_id)


@events.subscribe("his.stock.returned", inline=True)
def _returned(session: Session, payload: dict) -> None:
    original = session.scalar(select(Charge).where(Charge.source_key == f"dispense:{payload['dispense_movement_id']}"))
    if original is not None:
        _credit(session, SYSTEM, original, f"return:{payload['movement_id']}", Decimal(payload["quantity"]),
                "returned to the pharmacy", utcnow())


@events.subscribe("his.patient.discharged", inline=True)
def _discharged(session: Session, payload: dict) -> None:
    charge_bed_days(session, SYSTEM, session.get(Encounter, payload["encounter_id"]), until=_at(payload["at"]))


# --- bed days ------------------------------------------------------------------------------------

def bed_days(start: datetime, end: datetime) -> list[date]:
    """The local days a stay is charged for: each day it began on before the day it ended, at least one
    (TT 39/2018: a stay of less than a day is a day). [U] for the exact rules of short stays."""
    first, last = local_day(start), local_day(end)
    days = [first + timedelta(days=n) for n in range((last - first).days)]
    return days or [first]


def charge_bed_days(session: Session, actor: Actor, encounter: Encounter, *, until: datetime | None = None) -> list:
    """Charge every bed day not charged yet, up to `until` (now) for an ongoing stay."""
    until = until or utcnow()
    added = []
    stays = session.scalars(select(BedStay).where(BedStay.encounter_id == encounter.id)
                            .order_by(BedStay.started_at)).all()
    charged: set[date] = set()
    for stay in stays:
        end = stay.ended_at or until
        if stay.end_reason == "cancelled":
            continue
        room = stay.bed.room
        link = session.scalar(select(DepartmentBedService).where(DepartmentBedService.department_id ==
                                                                 room.department_id))
        for day in bed_days(stay.started_at, end):
            if day in charged:
                continue  # moved bed the same day: the day is charged once, in the first bed
            charged.add(day)
            at = datetime.combine(day, datetime.min.time(), tzinfo=DEFAULT_TZ) + timedelta(hours=12)
            key = f"bed:{encounter.id}:{day.isoformat()}"
            if link is None:
                added.append(_unpriced_bed(session, actor, encounter, key, stay, at))
                continue
            charge = _new_charge(session, actor, encounter, source="bed_day", key=key,
                                 item=session.get(Service, link.service_id), item_kind="bed",
                                 payer="bhyt" if encounter.insured else "fee", quantity=Decimal(1), at=at,
                                 bed_code=stay.bed.bhyt_code or stay.bed.code)
            if charge is not None:
                charge.department_id = room.department_id
                added.append(charge)
    return [c for c in added if c is not None]


def _unpriced_bed(session, actor, encounter, key, stay, at) -> Charge | None:
    if session.scalar(select(Charge.id).where(Charge.source_key == key)) is not None:
        return None
    department = stay.bed.room.department
    charge = Charge(encounter_id=encounter.id, patient_id=encounter.patient_id, source="bed_day", source_key=key,
                    item_kind="bed", item_code=stay.bed.code, item_name=str(_l("Bed day")), unit=str(_l("day")),
                    cost_group=terms.default_group("bed", encounter_kind=encounter.kind),
                    payer="bhyt" if encounter.insured else "fee", quantity=Decimal(1), status="unpriced",
                    problem=str(_l("Department «%(code)s» has no bed-day service.", code=department.code)),
                    service_at=at, service_day=local_day(at), department_id=department.id,
                    bed_code=stay.bed.bhyt_code or stay.bed.code, created_by=actor.id)
    session.add(charge)
    session.flush()
    audit.record(session, actor, "billing.charge.add", charge,
                 {"encounter_id": encounter.id, "problem": charge.problem})
    return charge


# --- entered by staff ----------------------------------------------------------------------------

def _quantity(raw) -> Decimal:
    try:
        value = Decimal(str(raw).strip().replace(",", "."))
    except ArithmeticError:
        value = Decimal(0)
    if not value.is_finite() or value <= 0 or value > 100000:
        raise ChargeError("bad_quantity", "quantity", _l("Enter a quantity greater than 0."))
    return value.quantize(Decimal("0.001"))


def _open(encounter: Encounter) -> None:
    if encounter.status == "cancelled":
        raise ChargeError("encounter_cancelled", "encounter", _l("This encounter was cancelled."))


def add_supply(session: Session, actor: Actor, encounter: Encounter, code: str, quantity, *,
               at: datetime | None = None) -> Charge:
    """A medical supply used for the patient (the ward's record of it)."""
    _open(encounter)
    supply = session.scalar(select(Supply).where(Supply.code == (code or "").strip()))
    if supply is None:
        raise ChargeError("unknown_supply", "code", _l("Supply «%(code)s» is not in the catalogue.", code=code))
    qty = _quantity(quantity)
    at = at or utcnow()
    key = f"supply:{encounter.id}:{supply.code}:{at.isoformat()}"
    return _new_charge(session, actor, encounter, source="order", key=key, item=supply, item_kind="supply",
                       payer="bhyt" if encounter.insured else "fee", quantity=qty, at=at)


def adjust(session: Session, actor: Actor, encounter: Encounter, amount, reason: str | None) -> Charge:
    """A manual line (a discount is negative); the patient pays it in full. Needs billing.charge.adjust."""
    _open(encounter)
    reason = (reason or "").strip()
    if not reason:
        raise ChargeError("reason_required", "reason", _l("Give the reason for the adjustment."))
    try:
        value = money(Decimal(str(amount).strip().replace(".", "").replace(",", ".")))
    except ArithmeticError:
        value = Decimal(0)
    if not value.is_finite() or value == 0:
        raise ChargeError("bad_amount", "amount", _l("Enter a non-zero amount in đồng."))
    now = utcnow()
    charge = Charge(encounter_id=encounter.id, patient_id=encounter.patient_id, source="adjustment",
                    source_key=f"adjust:{encounter.id}:{now.isoformat()}", item_kind="service",
                    item_code=ADJUSTMENT_CODE, item_name=str(_l("Manual adjustment")), unit=str(_l("time")),
                    cost_group=terms.OTHER, in_list=False, payer="fee", quantity=Decimal(1), unit_price=value,
                    amount=value, status="priced", service_at=now, service_day=local_day(now),
                    department_id=encounter.department_id, reason=reason, created_by=actor.id)
    session.add(charge)
    session.flush()
    audit.record(session, actor, "billing.charge.adjust", charge,
                 {"encounter_id": encounter.id, "patient_id": encounter.patient_id, "amount": str(value),
                  "reason": reason})
    return charge


def reprice(session: Session, actor: Actor, charge: Charge) -> Charge:
    """Price an unpriced charge again (after the catalogue got the missing price)."""
    if charge.status != "unpriced":
        raise ChargeError("already_priced", "charge", _l("This charge already has its price."))
    item = _catalogue_item(session, charge)
    if item is None:
        raise ChargeError("no_item", "charge", charge.problem or _l("The item is not in the catalogue."))
    price, insurer_price, problem = _price(session, item, charge.payer, charge.service_day)
    if price is None:
        raise ChargeError("price_missing", "charge", problem)
    if charge.item_kind == "bed":  # it carried the bed's code while no bed-day service was set
        charge.item_code, charge.bhyt_code = item.code, item.bhyt_code
        charge.item_name, charge.unit = item.name, item.unit
    charge.unit_price, charge.bhyt_unit_price = price, insurer_price
    charge.amount, charge.status, charge.problem = money(charge.quantity * price), "priced", None
    session.flush()
    audit.record(session, actor, "billing.charge.reprice", charge, {"encounter_id": charge.encounter_id,
                                                                    "amount": str(charge.amount)})
    return charge


def _catalogue_item(session: Session, charge: Charge):
    if charge.item_kind == "bed":
        link = session.scalar(select(DepartmentBedService).where(DepartmentBedService.department_id ==
                                                                 charge.department_id))
        return session.get(Service, link.service_id) if link else None
    model = {"service": Service, "drug": Drug, "supply": Supply}[charge.item_kind]
    return session.scalar(select(model).where(model.code == charge.item_code))


def of_encounter(session: Session, encounter_id: int) -> list[Charge]:
    return list(session.scalars(select(Charge).where(Charge.encounter_id == encounter_id)
                                .order_by(Charge.service_at, Charge.id)))


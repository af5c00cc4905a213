"""Orders: place lab, imaging, procedure and prescription orders in an encounter, then start,
complete, cancel or reverse them. Every change is audited and announced through core.events
("his.order.placed", ".started", ".completed", ".cancelled", ".reversed") so that lis, pacs,
billing and the pharmacy react without his importing them.

Input is checked completely before anything is added, so a refused order leaves nothing behind.
Prescription rules are those of TT 26/2025 (shared/reference/his.md §7) that can be checked from
the catalogue: duration limits, narcotic (N) and psychotropic (H) drugs on their own prescription,
weight and accompanying adult for children under 72 months.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit, events
from core.audit import Actor
from core.db import utcnow
from core.permissions import declare
from his import catalog
from his.models.catalog import Drug, Service
from his.models.encounters import Diagnosis, Encounter
from his.models.orders import LINE_PAYERS, ORDER_KINDS, Order, OrderLine
from his.models.org import Staff
from his.models.patients import Patient
from his.patients import register_reference
from his.prescriptions import category

# Carrying an order out (taking the specimen, doing the scan, giving the drugs) is the performer's job.
PERFORM = "his.order.perform"
declare(PERFORM, _l("Carry out orders (start, record as done)"),
        ["doctor", "nurse", "lab_technician", "lab_physician", "radiographer", "radiologist", "pharmacist"], "his")

SERVICE_KINDS = ("lab", "imaging", "procedure")
CLOSED_ENCOUNTER = ("finished", "discharged")
MAX_DAYS, MAX_DAYS_CHRONIC = 30, 90
MAX_DAYS_NARCOTIC = 7
MAX_DAYS_PSYCHOTROPIC, MAX_DAYS_PSYCHOTROPIC_CHRONIC = 10, 30
CHILD_MONTHS = 72
MAX_QUANTITY = Decimal("100000")
SCALE = Decimal("0.001")  # quantities and doses are stored with 3 decimals


class OrderError(ValueError):
    """A refused order or change: `code` for machines, `field` it concerns, a lazy Vietnamese message."""

    def __init__(self, code: str, field_name: str | None, message, index: int | None = None):
        super().__init__(code)
        self.code, self.field, self.message, self.index = code, field_name, message, index

    def __str__(self) -> str:
        return str(self.message)


@dataclass
class _Checked:
    """One validated line, ready to be stored."""

    item: Service | Drug
    quantity: Decimal
    unit_price: Decimal
    payer: str
    dose: Decimal | None = None
    frequency: int | None = None
    days: int | None = None
    route: str | None = None
    quantity_entered: bool = False
    instructions: str | None = None


# --- reading numbers typed by people -----------------------------------------------------------

def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _text(value) -> str | None:
    """Typed text, trimmed; None when empty. Anything not text (a number in JSON) is read as its text."""
    if value is None:
        return None
    return str(value).strip() or None


def _limited(value, limit: int, field_name: str, index: int | None = None) -> str | None:
    text = _text(value)
    if text is not None and len(text) > limit:
        message = (_l("At most %(max)d characters.", max=limit) if index is None else
                   _l("Line %(n)d: at most %(max)d characters.", n=index + 1, max=limit))
        raise OrderError("too_long", field_name if index is None else _field(index, field_name), message, index)
    return text


def _decimal(value) -> Decimal | None:
    if _blank(value):
        return None
    if isinstance(value, bool):
        raise InvalidOperation
    if isinstance(value, float):
        value = repr(value)
    text = str(value).strip().replace(",", ".")  # "0,5" as written in Vietnam
    number = Decimal(text)
    if not number.is_finite():
        raise InvalidOperation
    return number


def _integer(value) -> int | None:
    number = _decimal(value)
    if number is None:
        return None
    if number != number.to_integral_value():
        raise InvalidOperation
    return int(number)


def _field(index: int, name: str) -> str:
    return f"items.{index}.{name}"


# --- checks ------------------------------------------------------------------------------------

def _check_encounter(encounter: Encounter) -> None:
    if encounter.status == "cancelled":
        raise OrderError("encounter_cancelled", "encounter", _l("This encounter was cancelled: no order can be "
                                                                "placed in it."))
    if encounter.status in CLOSED_ENCOUNTER:
        raise OrderError("encounter_closed", "encounter", _l("This encounter is closed: no order can be placed "
                                                             "in it."))
    if encounter.patient.merged_into_id is not None:
        raise OrderError("merged_patient", "patient", _l("This record was merged into another patient: place "
                                                         "the order on the surviving record."))


def _in_force(item, on: date) -> bool:
    return item.active and (item.valid_from is None or item.valid_from <= on) and \
        (item.valid_to is None or item.valid_to >= on)


def _find_item(session: Session, model, index: int, raw_code):
    code = (_text(raw_code) or "").upper()
    if not code:
        raise OrderError("item_required", _field(index, "code"), _l("Line %(n)d: choose a service or a drug.",
                                                                    n=index + 1), index)
    item = session.scalar(select(model).where(model.code == code))
    if item is None:
        if model is Service:
            message = _l("Line %(n)d: service «%(code)s» is not in the catalogue.", n=index + 1, code=code[:50])
        else:
            message = _l("Line %(n)d: drug «%(code)s» is not in the catalogue.", n=index + 1, code=code[:50])
        raise OrderError("service_unknown" if model is Service else "drug_unknown", _field(index, "code"),
                         message, index)
    return item


def _check_in_force(item, index: int, on: date) -> None:
    if not _in_force(item, on):
        raise OrderError("item_inactive", _field(index, "code"),
                         _l("Line %(n)d: «%(code)s» is not in use on %(day)s.", n=index + 1, code=item.code,
                            day=on.strftime("%d/%m/%Y")), index)


def _quantity(value, index: int, *, required: bool) -> Decimal | None:
    try:
        number = _decimal(value)
        number = None if number is None else number.quantize(SCALE)
    except (InvalidOperation, ValueError):
        number = Decimal(-1)
    if number is None and not required:
        return None
    if number is None or number <= 0 or number > MAX_QUANTITY:
        raise OrderError("quantity_invalid", _field(index, "quantity"),
                         _l("Line %(n)d: the quantity must be a number greater than 0.", n=index + 1), index)
    return number


def _service_price(session: Session, service: Service, index: int, on: date, insured: bool,
                   asked: str | None) -> tuple[Decimal, str]:
    """The price of the order day and its payer: BHYT for an insured visit when the service has a BHYT
    price, else the fee price, unless the doctor asked for a payer ("on_demand" for a requested service)."""
    if asked is not None and asked not in LINE_PAYERS:
        raise OrderError("payer_invalid", _field(index, "payer"), _l("Line %(n)d: unknown payer.", n=index + 1),
                         index)
    payers = [asked] if asked else (["bhyt", "fee"] if insured else ["fee"])
    for payer in payers:
        row = catalog.price_row(session, service, on, payer)
        if row is not None:
            return row.price, payer
    raise OrderError("no_price", _field(index, "code"),
                     _l("Line %(n)d: «%(code)s» has no price in force on %(day)s.", n=index + 1, code=service.code,
                        day=on.strftime("%d/%m/%Y")), index)


def _drug_price(session: Session, drug: Drug, index: int, on: date, insured: bool) -> tuple[Decimal, str]:
    row = catalog.price_row(session, drug, on)
    if row is None:
        raise OrderError("no_price", _field(index, "code"),
                         _l("Line %(n)d: «%(code)s» has no price in force on %(day)s.", n=index + 1, code=drug.code,
                            day=on.strftime("%d/%m/%Y")), index)
    # A drug is paid by the fund only when it is on the BHYT list (it then has a BHYT code).
    return row.price, "bhyt" if insured and drug.bhyt_code else "fee"


def _check_service_line(session: Session, index: int, raw: dict, on: date, insured: bool) -> _Checked:
    service = _find_item(session, Service, index, raw.get("code"))
    _check_in_force(service, index, on)
    quantity = _quantity(raw.get("quantity", 1), index, required=True)
    price, payer = _service_price(session, service, index, on, insured, _text(raw.get("payer")))
    return _Checked(service, quantity, price, payer, instructions=_text(raw.get("instructions")))


def _max_days(drug: Drug, chronic: bool) -> tuple[int, str]:
    if drug.is_narcotic:
        return MAX_DAYS_NARCOTIC, "days_narcotic"
    if drug.is_psychotropic:
        return (MAX_DAYS_PSYCHOTROPIC_CHRONIC if chronic else MAX_DAYS_PSYCHOTROPIC), "days_psychotropic"
    return (MAX_DAYS_CHRONIC if chronic else MAX_DAYS), "days_too_long"


def _positive_int(value, index: int, name: str, code: str, message) -> int:
    try:
        number = _integer(value)
    except (InvalidOperation, ValueError):
        number = None
    if number is None or number <= 0:
        raise OrderError(code, _field(index, name), message, index)
    return number


def _check_drug_line(session: Session, index: int, raw: dict, on: date, insured: bool, chronic: bool) -> _Checked:
    drug = _find_item(session, Drug, index, raw.get("code"))
    _check_in_force(drug, index, on)
    n = index + 1
    try:
        dose = _decimal(raw.get("dose"))
        dose = None if dose is None else dose.quantize(SCALE)
    except (InvalidOperation, ValueError):
        dose = None
    if dose is None or dose <= 0 or dose > MAX_QUANTITY:
        raise OrderError("dose_invalid", _field(index, "dose"),
                         _l("Line %(n)d: give the dose per intake, a number greater than 0.", n=n), index)
    frequency = _positive_int(raw.get("frequency"), index, "frequency", "frequency_invalid",
                              _l("Line %(n)d: give how many times a day, a whole number from 1.", n=n))
    days = _positive_int(raw.get("days"), index, "days", "days_invalid",
                         _l("Line %(n)d: give the number of days, a whole number from 1.", n=n))
    limit, code = _max_days(drug, chronic)
    if days > limit:
        messages = {
            "days_narcotic": _l("Line %(n)d: a narcotic drug may be prescribed for at most %(max)d days.",
                                n=n, max=limit),
            "days_psychotropic": _l("Line %(n)d: a psychotropic drug may be prescribed for at most %(max)d days.",
                                    n=n, max=limit),
            "days_too_long": _l("Line %(n)d: a prescription may cover at most %(max)d days.", n=n, max=limit)
            if not chronic else _l("Line %(n)d: a chronic-disease prescription may cover at most %(max)d days.",
                                   n=n, max=limit),
        }
        raise OrderError(code, _field(index, "days"), messages[code], index)
    entered = _quantity(raw.get("quantity"), index, required=False)
    # Computed quantities round up to whole units: a patient cannot be given half a tablet box.
    quantity = entered if entered is not None else Decimal(math.ceil(dose * frequency * days)).quantize(SCALE)
    price, payer = _drug_price(session, drug, index, on, insured)
    return _Checked(drug, quantity, price, payer, dose=dose, frequency=frequency, days=days,
                    route=_limited(raw.get("route"), 100, "route", index) or drug.route,
                    quantity_entered=entered is not None, instructions=_text(raw.get("instructions")))


def _months_between(born: date, on: date) -> int:
    return max(0, (on.year - born.year) * 12 + on.month - born.month - (on.day < born.day))


def age_in_months(patient: Patient, on: date) -> int | None:
    """Whole months of age on `on`; None when only the birth year is known."""
    return None if patient.birth_date is None else _months_between(patient.birth_date, on)


def _age_months_at_most(encounter: Encounter, on: date) -> int:
    """The youngest the patient can be, in whole months (a year-only birth counts as 31 December)."""
    patient = encounter.patient
    return _months_between(patient.birth_date or date(patient.birth_year, 12, 31), on)


def _check_child(encounter: Encounter, on: date, weight_kg, guardian_name) -> Decimal | None:
    try:
        weight = _decimal(weight_kg)
    except (InvalidOperation, ValueError):
        weight = Decimal(-1)
    if weight is not None and not (0 < weight < 500):
        raise OrderError("weight_invalid", "weight_kg", _l("The weight must be a number of kilograms."))
    if _age_months_at_most(encounter, on) < CHILD_MONTHS:
        if weight is None:
            raise OrderError("child_weight_required", "weight_kg",
                             _l("The patient is under 72 months old: give the weight."))
        if _blank(guardian_name):
            raise OrderError("child_guardian_required", "guardian_name",
                             _l("The patient is under 72 months old: give the name of the accompanying adult."))
    return weight


def _check_diagnosis(session: Session, encounter: Encounter, diagnosis_id) -> Diagnosis | None:
    if _blank(diagnosis_id):
        return None
    try:
        ident = int(diagnosis_id)
    except (TypeError, ValueError):
        ident = None
    diagnosis = session.get(Diagnosis, ident) if ident is not None else None
    if diagnosis is None or diagnosis.encounter_id != encounter.id or diagnosis.cancelled_at is not None:
        raise OrderError("diagnosis_unknown", "diagnosis_id", _l("This diagnosis is not one of the encounter's."))
    return diagnosis


def staff_of(session: Session, actor: Actor) -> Staff | None:
    if actor.id is None:
        return None
    return session.scalar(select(Staff).where(Staff.user_id == actor.id))


# --- payloads ----------------------------------------------------------------------------------

def _payload(order: Order, **extra) -> dict:
    """What subscribers receive: facts as JSON, never ORM objects."""
    return {
        "order_id": order.id, "encounter_id": order.encounter_id, "encounter_code": order.encounter.code,
        "patient_id": order.patient_id, "kind": order.kind, "status": order.status,
        "department_id": order.department_id, "ordered_at": order.ordered_at.isoformat(),
        "executed_at": order.executed_at.isoformat() if order.executed_at else None,
        "result_at": order.result_at.isoformat() if order.result_at else None,
        "orderer_id": order.orderer_id, "performer_id": order.performer_id,
        "items": [{"line_id": line.id, "code": line.item_code,
                   "bhyt_code": (line.service or line.drug).bhyt_code if (line.service or line.drug) else None,
                   "quantity": str(line.quantity), "unit": line.unit, "unit_price": str(line.unit_price),
                   "payer": line.payer} for line in order.lines],
        **extra,
    }


def _announce(session: Session, actor: Actor, order: Order, action: str, **extra) -> None:
    audit.record(session, actor, f"order.{action}", order,
                 {"encounter_id": order.encounter_id, "patient_id": order.patient_id, "kind": order.kind,
                  "status": order.status,
                  "items": [f"{line.item_code}×{Decimal(line.quantity).normalize():f}" for line in order.lines],
                  **extra})
    events.emit(session, f"his.order.{action_event(action)}", _payload(order, **extra), actor=actor)


def action_event(action: str) -> str:
    return {"place": "placed", "start": "started", "complete": "completed", "cancel": "cancelled",
            "reverse": "reversed"}[action]


# --- operations --------------------------------------------------------------------------------

def place_order(session: Session, actor: Actor, encounter: Encounter, kind: str, items: list[dict], *, on: date,
                diagnosis_id=None, note: str | None = None, chronic: bool = False, weight_kg=None,
                guardian_name: str | None = None) -> Order:
    """Place an order of `kind` with its `items` (dicts as typed: code, quantity, payer; drugs also dose,
    frequency, days, route, instructions). `on` is the hospital's local day (prices and validity)."""
    if kind not in ORDER_KINDS:
        raise OrderError("bad_kind", "kind", _l("Unknown order type."))
    _check_encounter(encounter)
    items = [raw for raw in (items or []) if not all(_blank(v) for v in raw.values())]
    if not items:
        raise OrderError("no_items", "items", _l("Add at least one service or drug to the order."))
    diagnosis = _check_diagnosis(session, encounter, diagnosis_id)
    weight = None
    if kind == "prescription":
        if chronic and diagnosis is None:
            raise OrderError("diagnosis_required", "diagnosis_id",
                             _l("A chronic-disease prescription must name the diagnosis it treats."))
        guardian_name = _limited(guardian_name, 200, "guardian_name")
        weight = _check_child(encounter, on, weight_kg, guardian_name)
        checked = [_check_drug_line(session, i, raw, on, encounter.insured, chronic) for i, raw in enumerate(items)]
        categories = {category(c.item) for c in checked}
        if len(categories) > 1 and categories & {"narcotic", "psychotropic"}:
            raise OrderError("mixed_prescription", "items",
                             _l("Narcotic and psychotropic drugs go on a prescription of their own."))
    else:
        checked = [_check_service_line(session, i, raw, on, encounter.insured) for i, raw in enumerate(items)]
    seen: dict[str, int] = {}
    for i, line in enumerate(checked):
        if line.item.code in seen:
            raise OrderError("duplicate_item", _field(i, "code"),
                             _l("Line %(n)d repeats «%(code)s» of line %(first)d.", n=i + 1, code=line.item.code,
                                first=seen[line.item.code] + 1), i)
        seen[line.item.code] = i

    staff = staff_of(session, actor)
    order = Order(encounter_id=encounter.id, patient_id=encounter.patient_id, kind=kind, status="placed",
                  department_id=encounter.department_id or (staff.department_id if staff else None),
                  ordered_by=actor.id, orderer_id=staff.id if staff else None,
                  diagnosis_id=diagnosis.id if diagnosis else None, note=_text(note),
                  chronic=bool(chronic) and kind == "prescription", weight_kg=weight,
                  guardian_name=_text(guardian_name) if kind == "prescription" else None,
                  ordered_at=utcnow())
    order.encounter = encounter
    for position, line in enumerate(checked, start=1):
        is_drug = isinstance(line.item, Drug)
        order.lines.append(OrderLine(
            position=position, service_id=None if is_drug else line.item.id, drug_id=line.item.id if is_drug else None,
            service=None if is_drug else line.item, drug=line.item if is_drug else None,
            item_code=line.item.code, item_name=line.item.name, quantity=line.quantity, unit=line.item.unit,
            unit_price=line.unit_price, payer=line.payer, dose=line.dose, frequency=line.frequency, days=line.days,
            route=line.route, quantity_entered=line.quantity_entered, instructions=line.instructions))
    session.add(order)
    session.flush()
    _announce(session, actor, order, "place")
    return order


def _performer(session: Session, actor: Actor, performer: Staff | None) -> Staff | None:
    return performer if performer is not None else staff_of(session, actor)


def start(session: Session, actor: Actor, order: Order, *, performer: Staff | None = None,
          machine_code: str | None = None) -> None:
    """The order is being carried out (the specimen taken, the patient on the table): NGAY_TH_YL."""
    if order.status != "placed":
        raise OrderError("bad_transition", "status", _l("Only a placed order can be started."))
    machine_code = _limited(machine_code, 50, "machine_code")
    who = _performer(session, actor, performer)
    order.status, order.executed_at, order.performed_by = "in_progress", utcnow(), actor.id
    order.performer_id = who.id if who else None
    order.machine_code = _text(machine_code) or order.machine_code
    session.flush()
    _announce(session, actor, order, "start")


def complete(session: Session, actor: Actor, order: Order, *, performer: Staff | None = None,
             machine_code: str | None = None) -> None:
    """The result is there (or the drugs were given out); an order completed without a start was
    executed at the same moment."""
    if order.status not in ("placed", "in_progress"):
        raise OrderError("bad_transition", "status", _l("Only a placed or started order can be completed."))
    machine_code = _limited(machine_code, 50, "machine_code")
    now = utcnow()
    if order.executed_at is None:
        order.executed_at = now
    if order.performer_id is None:
        who = _performer(session, actor, performer)
        order.performer_id = who.id if who else None
        order.performed_by = actor.id
    order.status, order.result_at = "completed", now
    order.machine_code = _text(machine_code) or order.machine_code
    session.flush()
    _announce(session, actor, order, "complete")


def _reason(reason: str | None, message) -> str:
    text = _text(reason)
    if text is None:
        raise OrderError("reason_required", "reason", message)
    return text


def cancel(session: Session, actor: Actor, order: Order, reason: str | None) -> None:
    """Withdraw an order nobody has acted on yet."""
    if order.status != "placed":
        if order.status in ("in_progress", "completed"):
            raise OrderError("already_executed", "status", _l("This order has already been carried out: it "
                                                              "cannot be cancelled, only reversed."))
        raise OrderError("bad_transition", "status", _l("This order is no longer active."))
    text = _reason(reason, _l("Give the reason for the cancellation."))
    order.status, order.cancelled_at, order.cancelled_by, order.cancel_reason = "cancelled", utcnow(), actor.id, text
    session.flush()
    _announce(session, actor, order, "cancel", reason=text)


def reverse(session: Session, actor: Actor, order: Order, reason: str | None) -> None:
    """Undo an order that was carried out: billing answers with a credit line, stock with a return."""
    if order.status not in ("in_progress", "completed"):
        if order.status == "placed":
            raise OrderError("not_executed", "status", _l("This order has not been carried out: cancel it "
                                                          "instead."))
        raise OrderError("bad_transition", "status", _l("This order is no longer active."))
    text = _reason(reason, _l("Give the reason for the reversal."))
    order.status, order.reversed_at, order.reversed_by, order.reverse_reason = "reversed", utcnow(), actor.id, text
    session.flush()
    _announce(session, actor, order, "reverse", reason=text)


def of_encounter(session: Session, actor: Actor, encounter: Encounter) -> list[Order]:
    """The encounter's orders, newest first; the read is audited."""
    rows = list(session.scalars(select(Order).where(Order.encounter_id == encounter.id)
                                .order_by(Order.ordered_at.desc(), Order.id.desc())))
    audit.record(session, actor, "order.list", encounter, {"patient_id": encounter.patient_id, "count": len(rows)})
    return rows


def get(session: Session, actor: Actor, order_id: int, *, action: str = "order.read") -> Order | None:
    order = session.get(Order, order_id)
    if order is not None:
        audit.record(session, actor, action, order, {"patient_id": order.patient_id,
                                                     "encounter_id": order.encounter_id})
    return order


register_reference(Order.patient_id)

"""What a claim says, gathered from his and billing in our own words (the XML adapters name the fields).

`gather` loads many encounters with a handful of queries per batch (the export of a month of
encounters must not run a query per line), splits their charges by the BHYT rules and returns one
Episode per encounter with its lines.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from billing import bills, split
from billing.models import Bill, Charge, Claim, ClinicalResult, ItemTerms
from billing.split import ZERO
from billing.terms import DRUG_GROUPS, SUPPLY_GROUPS
from his.models.admission import Admission
from his.models.catalog import Drug
from his.models.encounters import Diagnosis, Encounter
from his.models.orders import Order, OrderLine
from his.models.org import Department, Staff

BATCH = 500


@dataclass(slots=True)
class Line:
    kind: str  # drug | service | supply | bed
    cost_group: int
    code: str | None  # the insurer's code (BHYT code); None when the catalogue has none
    name: str
    unit: str
    quantity: Decimal
    unit_price: Decimal
    insurer_unit_price: Decimal
    payment_ratio: int
    in_scope_item: bool
    cost: Decimal
    in_scope: Decimal
    self_pay: Decimal
    copay: Decimal
    insurer: Decimal
    benefit: int
    department_code: str | None
    doctor_code: str | None
    performer_code: str | None
    diagnosis_codes: list[str]
    ordered_at: datetime
    executed_at: datetime | None
    result_at: datetime | None
    bed_code: str | None = None
    strength: str | None = None
    route: str | None = None
    dosage: str | None = None
    registration_number: str | None = None
    tender: str | None = None
    machine_code: str | None = None


@dataclass
class Result:
    service_code: str | None  # the insurer's code of the service ordered
    code: str | None
    name: str
    value: str | None
    unit: str | None
    description: str | None
    conclusion: str | None
    reported_at: datetime
    machine_code: str | None


@dataclass
class Episode:
    encounter_id: int
    link_key: str
    kind: str
    patient_code: str
    full_name: str
    national_id: str | None
    birth_date: date | None
    birth_year: int
    sex: str
    nationality: str
    ethnicity: str | None
    occupation: str | None
    address: str | None
    province: str | None
    district: str | None
    ward: str | None
    phone: str | None
    insured: bool
    card_number: str | None
    card_facility: str | None
    card_from: date | None
    card_to: date | None
    continuous_since: date | None
    route: str | None
    referred_from: str | None
    referral_number: str | None
    reason: str | None
    admission_reason: str | None
    main_icd: str | None
    main_text: str | None
    other_icds: list[str]
    diagnosis_texts: list[str]
    started_at: datetime
    inpatient_at: datetime | None
    ended_at: datetime | None
    outcome: str | None
    discharge_type: str | None
    discharge_note: str | None
    settled_at: datetime | None
    department_codes: list[str]
    doctor_code: str | None
    doctor_name: str | None
    supplement: dict
    benefit: int
    rule_code: str
    lines: list[Line] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)

    def _sum(self, name: str, groups=None) -> Decimal:
        return sum((getattr(x, name) for x in self.lines if groups is None or x.cost_group in groups), ZERO)

    @property
    def drug_lines(self) -> list[Line]:
        return [x for x in self.lines if x.cost_group in DRUG_GROUPS]

    @property
    def service_lines(self) -> list[Line]:
        return [x for x in self.lines if x.cost_group not in DRUG_GROUPS]

    def total(self, name: str) -> Decimal:
        return self._sum(name)

    @property
    def drug_total(self) -> Decimal:
        return self._sum("cost", DRUG_GROUPS)

    @property
    def supply_total(self) -> Decimal:
        return self._sum("cost", SUPPLY_GROUPS)


def _chunks(ids: list[int]):
    for start in range(0, len(ids), BATCH):
        yield ids[start:start + BATCH]


def _dosage(line) -> str | None:
    if line is None or line.dose is None:
        return line.instructions if line else None
    text = f"{line.dose.normalize():f} {line.unit} x {line.frequency or 1} lần/ngày x {line.days or 1} ngày"
    return f"{text}; {line.instructions}" if line.instructions else text


def gather(session: Session, encounter_ids: list[int], facility_level: str) -> list[Episode]:
    episodes: list[Episode] = []
    for ids in _chunks(list(encounter_ids)):
        episodes.extend(_gather_batch(session, ids, facility_level))
    return episodes


def _gather_batch(session: Session, ids: list[int], facility_level: str) -> list[Episode]:
    encounters = session.scalars(select(Encounter).where(Encounter.id.in_(ids)).order_by(Encounter.id)
                                 .options(selectinload(Encounter.patient), selectinload(Encounter.bhyt_card),
                                          selectinload(Encounter.doctor), selectinload(Encounter.department))).all()
    by_enc: dict[int, list] = defaultdict(list)
    # Plain rows, not ORM objects: a month of claims is hundreds of thousands of lines.
    for charge in session.execute(select(*Charge.__table__.c).where(Charge.encounter_id.in_(ids),
                                                                    Charge.status == "priced")
                                  .order_by(Charge.encounter_id, Charge.service_at, Charge.id)):
        by_enc[charge.encounter_id].append(charge)
    diagnoses: dict[int, list[Diagnosis]] = defaultdict(list)
    for row in session.scalars(select(Diagnosis).where(Diagnosis.encounter_id.in_(ids),
                                                       Diagnosis.cancelled_at.is_(None))
                               .order_by(Diagnosis.id)):
        diagnoses[row.encounter_id].append(row)
    admissions = {a.encounter_id: a for a in session.scalars(select(Admission).where(Admission.encounter_id.in_(ids)))}
    paid = {b.encounter_id: b for b in session.scalars(select(Bill).where(Bill.encounter_id.in_(ids)))}
    supplements = {c.encounter_id: c.supplement or {} for c in
                   session.scalars(select(Claim).where(Claim.encounter_id.in_(ids), Claim.supplement.is_not(None)))}
    order_ids = {c.order_id for rows in by_enc.values() for c in rows if c.order_id}
    orders = {o.id: o for o in session.execute(select(Order.id, Order.ordered_at, Order.executed_at, Order.result_at,
                                                      Order.machine_code).where(Order.id.in_(order_ids)))}
    order_lines: dict[tuple[int, int], object] = {}
    for line in session.execute(select(OrderLine.order_id, OrderLine.drug_id, OrderLine.dose, OrderLine.unit,
                                       OrderLine.frequency, OrderLine.days, OrderLine.route, OrderLine.instructions)
                                .where(OrderLine.order_id.in_(order_ids), OrderLine.drug_id.is_not(None))):
        order_lines[(line.order_id, line.drug_id)] = line
    staff_ids = {s for rows in by_enc.values() for c in rows for s in (c.doctor_id, c.performer_id) if s}
    staff = {s.id: s for s in session.scalars(select(Staff).where(Staff.id.in_(staff_ids)))} if staff_ids else {}
    dept_ids = {c.department_id for rows in by_enc.values() for c in rows if c.department_id}
    dept_ids |= {e.department_id for e in encounters if e.department_id}
    departments = {d.id: d for d in session.scalars(select(Department).where(Department.id.in_(dept_ids)))}
    drug_codes = {c.item_code for rows in by_enc.values() for c in rows if c.item_kind == "drug"}
    drugs = {d.code: d for d in session.scalars(select(Drug).where(Drug.code.in_(drug_codes)))} if drug_codes else {}
    tenders = _tenders(session, {(c.item_kind, c.item_code) for rows in by_enc.values() for c in rows})
    copaid = bills.copaid_by_patient_year(session, {e.patient_id for e in encounters})
    results: dict[int, list] = defaultdict(list)
    for row in session.scalars(select(ClinicalResult).where(ClinicalResult.encounter_id.in_(ids))
                               .order_by(ClinicalResult.reported_at, ClinicalResult.id)):
        results[row.encounter_id].append(row)

    result = []
    for encounter in encounters:
        charges = by_enc.get(encounter.id, [])
        year = bills.local_day(encounter.started_at).year
        others = sum((c for e, c in copaid.get((encounter.patient_id, year), []) if e != encounter.id), ZERO)
        facts = bills.facts_for(session, encounter, facility_level, copaid_this_year=others)
        result_split = split.compute(bills.split_lines(charges), facts)
        dx = diagnoses.get(encounter.id, [])
        principal = next((d for d in dx if d.position == "principal"), None)
        adm = admissions.get(encounter.id)
        card, patient = encounter.bhyt_card, encounter.patient
        episode = Episode(
            encounter_id=encounter.id, link_key=encounter.code, kind=encounter.kind, patient_code=patient.code,
            full_name=patient.full_name, national_id=patient.national_id or patient.passport_number,
            birth_date=patient.birth_date, birth_year=patient.birth_year, sex=patient.sex,
            nationality=patient.nationality, ethnicity=patient.ethnicity_code, occupation=patient.occupation_code,
            address=patient.current_address_text or patient.address_text, province=patient.province_code,
            district=patient.district_code, ward=patient.ward_code, phone=patient.phone,
            insured=encounter.insured, card_number=card.number if card and encounter.insured else None,
            card_facility=card.registered_facility if card and encounter.insured else None,
            card_from=card.valid_from if card and encounter.insured else None,
            card_to=card.valid_to if card and encounter.insured else None,
            continuous_since=card.five_years_since if card and encounter.insured else None,
            route=facts.route if encounter.insured else None, referred_from=encounter.referral_from,
            referral_number=encounter.referral_number, reason=encounter.reason,
            admission_reason=adm.reason if adm else None, main_icd=principal.icd10_code if principal else None,
            main_text=(principal.text or principal.icd10_code) if principal else None,
            other_icds=[d.icd10_code for d in dx if d.position != "principal"],
            diagnosis_texts=[d.text or d.icd10_code for d in dx], started_at=encounter.started_at,
            inpatient_at=adm.admitted_at if adm else None, ended_at=encounter.ended_at,
            outcome=adm.outcome if adm else None, discharge_type=adm.discharge_type if adm else None,
            discharge_note=adm.discharge_note if adm else None,
            settled_at=paid[encounter.id].paid_at if encounter.id in paid else None,
            department_codes=_department_codes(encounter, charges, departments),
            doctor_code=_code_of(encounter.doctor),
            doctor_name=encounter.doctor.full_name if encounter.doctor else None,
            supplement=supplements.get(encounter.id, {}), benefit=result_split.benefit,
            rule_code=result_split.rule.code)
        icds = [d.icd10_code for d in dx]
        for charge, part in zip(charges, result_split.lines, strict=True):
            episode.lines.append(_line(charge, part, orders.get(charge.order_id), order_lines, staff, departments,
                                       drugs, tenders, icds))
        service_codes: dict[int, str | None] = {}  # an order's first service: results name no line of it
        for c in charges:
            if c.order_id and c.item_kind == "service":
                service_codes.setdefault(c.order_id, c.bhyt_code)
        episode.results = [Result(service_codes.get(r.order_id), r.code, r.name, r.value, r.unit, r.description,
                                  r.conclusion, r.reported_at, orders[r.order_id].machine_code
                                  if r.order_id in orders else None) for r in results.get(encounter.id, [])]
        result.append(episode)
    return result


def _department_codes(encounter, charges, departments) -> list[str]:
    codes = []
    for dept_id in [encounter.department_id] + [c.department_id for c in charges]:
        dept = departments.get(dept_id)
        if dept is not None and dept.bhyt_code and dept.bhyt_code not in codes:
            codes.append(dept.bhyt_code)
    return codes


def _tenders(session: Session, items: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    codes = {code for _kind, code in items}
    if not codes:
        return {}
    rows = session.scalars(select(ItemTerms).where(ItemTerms.item_code.in_(codes), ItemTerms.tender.is_not(None))
                           .order_by(ItemTerms.valid_from))
    return {(r.item_kind, r.item_code): r.tender for r in rows}


def _code_of(person: Staff | None) -> str | None:
    """MA_BAC_SI: the code BHXH knows the practitioner by (the practising licence number)."""
    return (person.bhyt_doctor_code or person.licence_number) if person else None


def _line(charge, part, order, order_lines, staff, departments, drugs, tenders, icds) -> Line:
    """One claim line from a charge row, its share of the split and what its order said."""
    dept = departments.get(charge.department_id)
    drug = drugs.get(charge.item_code) if charge.item_kind == "drug" else None
    order_line = order_lines.get((order.id, drug.id)) if order is not None and drug is not None else None
    group = charge.cost_group
    return Line(
        kind=charge.item_kind, cost_group=group, code=charge.bhyt_code, name=charge.item_name, unit=charge.unit,
        quantity=charge.quantity, unit_price=charge.unit_price,
        insurer_unit_price=charge.bhyt_unit_price if charge.bhyt_unit_price is not None else charge.unit_price,
        payment_ratio=part.payment_ratio, in_scope_item=part.in_scope_item, cost=part.cost, in_scope=part.in_scope,
        self_pay=part.self_pay, copay=part.copay, insurer=part.insurer, benefit=part.benefit,
        department_code=dept.bhyt_code if dept else None, doctor_code=_code_of(staff.get(charge.doctor_id)),
        performer_code=_code_of(staff.get(charge.performer_id)), diagnosis_codes=icds,
        ordered_at=order.ordered_at if order else charge.service_at,
        executed_at=(order.executed_at if order else None) or charge.service_at,  # a charge is when it was done
        result_at=order.result_at if order else None, bed_code=charge.bed_code,
        strength=drug.strength if drug else None, route=(order_line.route if order_line else None) or
        (drug.route if drug else None), dosage=_dosage(order_line), registration_number=drug.registration_number
        if drug else None, tender=tenders.get((charge.item_kind, charge.item_code)),
        machine_code=order.machine_code if order else None)

"""The patient master index: register, find by CCCD QR, search, BHYT cards, duplicates, merge/unmerge.

Operations take a session and an actor, flush, audit, and never commit (the edge commits).
Every read of a patient's record and every change is audited.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, func, select, text, union, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import InstrumentedAttribute

from core import audit, events
from core.audit import Actor
from core.db import is_postgresql, utcnow
from his import identity
from his.counters import next_value
from his.models.patients import BhytCard, Patient, PatientMerge
from his.text import fold

SEARCH_LIMIT = 50
# What a result list shows: a thin projection, not whole records (less to fetch, build and audit).
LISTED = (Patient.id, Patient.code, Patient.full_name, Patient.name_folded, Patient.birth_date, Patient.birth_year,
          Patient.sex, Patient.national_id, Patient.phone, Patient.address_text, Patient.merged_into_id)
FUZZY_THRESHOLD = 0.45  # pg_trgm similarity for the typo fallback
FUZZY_BUDGET_MS = 300
# Columns copied into the merge snapshot and restored by unmerge.
_PATIENT_FIELDS = ("full_name", "name_folded", "name_reversed", "birth_date", "birth_year", "sex", "national_id",
                   "national_id_raw_qr", "passport_number", "phone", "ethnicity_code", "occupation_code",
                   "nationality", "address_scheme", "province_code", "district_code", "ward_code", "street",
                   "address_text", "current_address_text", "merged_into_id")


class PatientError(ValueError):
    """Bad input or a refused change; `field` names the form field, `message` is Vietnamese."""

    def __init__(self, code: str, field_name: str | None, message, **extra):
        super().__init__(code)
        self.code, self.field, self.message, self.extra = code, field_name, message, extra

    def __str__(self) -> str:
        return str(self.message)


@dataclass
class Registration:
    patient: Patient
    created: bool
    warnings: list = field(default_factory=list)
    possible_duplicates: list[Patient] = field(default_factory=list)


# Tables whose rows belong to a patient: a merge re-points them, an unmerge puts back exactly those
# it moved. Other modules add theirs with register_reference(Model.patient_id).
_REFERENCES: list[InstrumentedAttribute] = []


def register_reference(column: InstrumentedAttribute) -> None:
    if column not in _REFERENCES:
        _REFERENCES.append(column)


def _names(full_name: str) -> tuple[str, str]:
    folded = fold(full_name)
    return folded, " ".join(reversed(folded.split()))


def _new_code(session: Session, today: date) -> str:
    """The facility's patient code: 2-digit year of registration + an 8-digit number (2600000123)."""
    return f"{today:%y}{next_value(session, 'patient_code'):08d}"


def live_by_national_id(session: Session, national_id: str) -> Patient | None:
    return session.scalar(select(Patient).where(Patient.national_id == national_id,
                                                Patient.merged_into_id.is_(None)))


def live_by_card(session: Session, number: str) -> Patient | None:
    return session.scalar(select(Patient).join(BhytCard, BhytCard.patient_id == Patient.id)
                          .where(BhytCard.number == number, BhytCard.superseded_at.is_(None),
                                 Patient.merged_into_id.is_(None)))


def similar_patients(session: Session, full_name: str, birth_year: int, sex: str | None,
                     exclude_id: int | None = None) -> list[Patient]:
    """Soft duplicates: the same folded name and birth year (and sex when known)."""
    folded, _ = _names(full_name)
    stmt = select(Patient).where(Patient.name_folded == folded, Patient.birth_year == birth_year,
                                 Patient.merged_into_id.is_(None))
    if sex in ("male", "female"):
        stmt = stmt.where(Patient.sex == sex)
    if exclude_id is not None:
        stmt = stmt.where(Patient.id != exclude_id)
    return list(session.scalars(stmt.limit(10)))


def _check_hard_duplicates(session: Session, national_id: str | None, bhyt_number: str | None) -> None:
    if national_id:
        other = live_by_national_id(session, national_id)
        if other is not None:
            raise PatientError("duplicate_cccd", "national_id",
                               _l("CCCD %(cccd)s already belongs to patient %(code)s (%(name)s).",
                                  cccd=national_id, code=other.code, name=other.full_name), patient_id=other.id)
    if bhyt_number:
        other = live_by_card(session, bhyt_number)
        if other is not None:
            raise PatientError("duplicate_bhyt", "bhyt_number",
                               _l("BHYT card %(card)s already belongs to patient %(code)s (%(name)s).",
                                  card=bhyt_number, code=other.code, name=other.full_name), patient_id=other.id)


def register(session: Session, actor: Actor, data: dict, *, today: date, confirm_possible_duplicate: bool = False,
             raw_qr: str | None = None, similar: list[Patient] | None = None) -> Registration:
    """Create a patient from checked form data (his.schemas.PatientSchema).

    Same CCCD or BHYT card as a live patient: refused (hard duplicate). Same folded name and birth
    year: refused with the candidates unless the desk confirms it is another person (soft).
    """
    national_id = data.get("national_id")
    card = identity.parse_bhyt_number(data["bhyt_number"]) if data.get("bhyt_number") else None
    _check_hard_duplicates(session, national_id, card.number if card else None)
    birth_date, birth_year = data.get("birth_date"), data.get("birth_year") or data["birth_date"].year
    if (birth_date or date(birth_year, 1, 1)) > today:
        raise PatientError("birth_in_future", "birth_date", _l("The date of birth is in the future."))
    warnings = []
    if national_id:
        warnings += identity.cccd_disagreements(national_id, birth_date or birth_year, data.get("sex"))
    if similar is None:
        similar = similar_patients(session, data["full_name"], birth_year, data.get("sex"))
    if similar and not confirm_possible_duplicate:
        raise PatientError("possible_duplicate", "full_name",
                           _l("A patient with the same name and birth year exists. Check the list; if this is "
                              "another person, confirm and register again."),
                           candidates=[p.id for p in similar])
    folded, reversed_ = _names(data["full_name"])
    patient = Patient(code=_new_code(session, today), full_name=" ".join(data["full_name"].split()),
                      name_folded=folded, name_reversed=reversed_, birth_date=birth_date, birth_year=birth_year,
                      sex=data.get("sex") or "unknown", national_id=national_id, national_id_raw_qr=raw_qr,
                      passport_number=data.get("passport_number"), phone=data.get("phone"),
                      ethnicity_code=data.get("ethnicity_code"), occupation_code=data.get("occupation_code"),
                      nationality=data.get("nationality") or "VN",
                      address_scheme=data.get("address_scheme") or ("post2025" if data.get("ward_code") else None),
                      province_code=data.get("province_code"), district_code=data.get("district_code"),
                      ward_code=data.get("ward_code"), street=data.get("street"),
                      address_text=data.get("address_text"), current_address_text=data.get("current_address_text"),
                      created_by=actor.id)
    try:
        with session.begin_nested():  # a concurrent registration of the same CCCD loses here, cleanly
            session.add(patient)
            session.flush()
    except IntegrityError:
        _check_hard_duplicates(session, national_id, None)
        raise
    if card is not None:
        warnings += _add_card(session, actor, patient, card, data, today)
    audit.record(session, actor, "patient.create", patient,
                 {"code": patient.code, "via": "qr" if raw_qr else "form",
                  "confirmed_possible_duplicate": bool(similar)})
    events.emit(session, "his.patient.registered", {"patient_id": patient.id, "code": patient.code}, actor=actor)
    return Registration(patient, True, warnings, similar)


def find_or_register_by_qr(session: Session, actor: Actor, raw_qr: str, *, today: date) -> Registration:
    """The desk scanner's one step: a CCCD QR finds the live patient with that number or registers one.

    The same card scanned twice at once (a double scan, two desks): the second registration hits
    the unique index on the live CCCD, its savepoint is rolled back and it finds the first one.
    """
    card = identity.parse_cccd_qr(raw_qr)
    try:
        with session.begin_nested():
            return _find_or_register(session, actor, card, raw_qr, today)
    except PatientError as exc:
        if exc.code != "duplicate_cccd":  # registered by a concurrent scan a moment ago: find it
            raise
        return _find_or_register(session, actor, card, raw_qr, today)


def _find_or_register(session: Session, actor: Actor, card: identity.CccdCard, raw_qr: str,
                      today: date) -> Registration:
    existing = live_by_national_id(session, card.national_id)
    if existing is not None:
        warnings = []
        if fold(existing.full_name) != fold(card.full_name) or existing.birth_date not in (None, card.birth_date):
            warnings.append(_l("The name or birth date on the card differs from the record (%(name)s, %(dob)s): "
                               "check and correct the record.", name=existing.full_name,
                               dob=existing.birth_date.strftime("%d/%m/%Y") if existing.birth_date else "—"))
        if existing.national_id_raw_qr != raw_qr:
            existing.national_id_raw_qr = raw_qr
        audit.record(session, actor, "patient.found_by_qr", existing, {"code": existing.code})
        return Registration(existing, False, warnings)
    data = {"full_name": card.full_name, "birth_date": card.birth_date, "birth_year": card.birth_date.year,
            "sex": card.sex, "national_id": card.national_id, "address_text": card.address}
    similar = similar_patients(session, card.full_name, card.birth_date.year, card.sex)
    registration = register(session, actor, data, today=today, confirm_possible_duplicate=True, raw_qr=raw_qr,
                            similar=similar)
    if similar:
        registration.warnings.append(_l("Possible duplicate: %(n)d patient(s) with the same name and birth year were "
                                        "registered without this CCCD. Check and merge if it is the same person.",
                                        n=len(similar)))
        registration.possible_duplicates = similar
    return registration


def _add_card(session: Session, actor: Actor, patient: Patient, card: identity.BhytNumber, data: dict,
              today: date) -> list:
    """A new current card for the patient; the previous current card is closed, never deleted."""
    now = utcnow()
    for old in session.scalars(select(BhytCard).where(BhytCard.patient_id == patient.id,
                                                      BhytCard.superseded_at.is_(None))):
        old.superseded_at = now
    session.flush()
    row = BhytCard(patient_id=patient.id, number=card.number, layout=card.layout, bhxh_number=card.bhxh_number,
                   group_code=card.group_code, benefit_level=card.benefit_level, province_code=card.province_code,
                   valid_from=data.get("bhyt_valid_from"), valid_to=data.get("bhyt_valid_to"),
                   registered_facility=data.get("bhyt_registered_facility"),
                   five_years_since=data.get("bhyt_five_years_since"), source="desk")
    session.add(row)
    session.flush()
    audit.record(session, actor, "patient.card_add", patient, {"card": card.number, "card_id": row.id})
    return list(card.warnings) + identity.card_validity_warnings(row.valid_from, row.valid_to, today)


def add_card(session: Session, actor: Actor, patient: Patient, data: dict, *, today: date) -> list:
    """Record the card the patient shows: a new number replaces the current card (kept in the history);
    the current number again updates its dates. Returns the warnings (expiry, unusual benefit level)."""
    if patient.merged_into_id is not None:
        raise PatientError("merged_patient", "bhyt_number", _l("This record was merged into another patient."))
    card = identity.parse_bhyt_number(data["bhyt_number"])
    other = live_by_card(session, card.number)
    if other is not None and other.id != patient.id:
        _check_hard_duplicates(session, None, card.number)
    current = current_card(session, patient)
    if current is not None and current.number == card.number:
        current.valid_from = data.get("bhyt_valid_from") or current.valid_from
        current.valid_to = data.get("bhyt_valid_to") or current.valid_to
        current.registered_facility = data.get("bhyt_registered_facility") or current.registered_facility
        session.flush()
        audit.record(session, actor, "patient.card_update", patient, {"card": card.number, "card_id": current.id})
        return list(card.warnings) + identity.card_validity_warnings(current.valid_from, current.valid_to, today)
    return _add_card(session, actor, patient, card, data, today)


def current_card(session: Session, patient: Patient) -> BhytCard | None:
    return session.scalar(select(BhytCard).where(BhytCard.patient_id == patient.id, BhytCard.superseded_at.is_(None))
                          .order_by(BhytCard.id.desc()).limit(1))


def get(session: Session, actor: Actor, patient_id: int) -> Patient | None:
    """A patient's record, for viewing: the read is audited."""
    patient = session.get(Patient, patient_id)
    if patient is not None:
        audit.record(session, actor, "patient.read", patient)
    return patient


# --- search -----------------------------------------------------------------------------------

def _kind_of_query(q: str) -> str:
    compact = q.replace(" ", "")
    if compact.isdigit():
        return "cccd" if len(compact) == 12 else "digits"
    if identity.BHYT_SHAPE_RE.match(compact.upper()):
        return "bhyt"
    return "name"


def search(session: Session, actor: Actor, q: str, *, page: int = 1, per_page: int = 20) -> tuple[list, bool]:
    """Patients matching a query (thin rows with the LISTED columns), and whether there are more pages.

    12 digits: CCCD; other digits: patient code, phone or BHXH number; a BHYT card number;
    anything else: the folded name, as a prefix of either word order ("nguyen van", "an nguyen"),
    with a typo-tolerant trigram fallback on PostgreSQL when nothing starts that way.
    """
    q = (q or "").strip()
    per_page = max(1, min(per_page, SEARCH_LIMIT))
    if not q:
        return [], False
    kind = _kind_of_query(q)
    if kind == "name":
        folded = fold(q)
        if len(folded) < 2:
            return [], False
        rows = _by_name_prefix(session, folded, page, per_page)
        if not rows and page == 1 and is_postgresql(session):
            rows = _fuzzy(session, folded, per_page)
    else:
        rows = session.execute(_by_identifier(kind, q.replace(" ", ""))
                               .offset((page - 1) * per_page).limit(per_page + 1)).all()
    audit.record(session, actor, "patient.search", None, {"q": q[:100], "kind": kind, "found": len(rows[:per_page])})
    return rows[:per_page], len(rows) > per_page


def _by_identifier(kind: str, compact: str):
    live = Patient.merged_into_id.is_(None)
    if kind == "cccd":
        return select(*LISTED).where(live, Patient.national_id == compact)
    if kind == "bhyt":
        owners = select(BhytCard.patient_id).where(BhytCard.number == compact.upper())
    else:  # other digits: a patient code, a phone or a BHXH number; a UNION keeps each on its own index
        owners = union(select(Patient.id).where(Patient.code == compact),
                       select(Patient.id).where(Patient.phone == compact),
                       select(BhytCard.patient_id).where(BhytCard.bhxh_number == compact))
    return select(*LISTED).where(live, Patient.id.in_(owners)).order_by(Patient.id)


def _by_name_prefix(session: Session, folded: str, page: int, per_page: int) -> list:
    """Names starting with the fragment in either word order, sorted by folded name.

    Each word order is its own query on its own (name, id) index, walked in order and stopped
    after the rows this page needs; the two short lists are merged here. An OR of the two would
    collect every match first (tens of thousands for "nguyen van") and sort them.
    """
    pattern = folded.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    wanted = page * per_page + 1
    found: dict[int, object] = {}
    for column in (Patient.name_folded, Patient.name_reversed):
        stmt = (select(*LISTED).where(Patient.merged_into_id.is_(None), column.like(pattern, escape="\\"))
                .order_by(column, Patient.id).limit(wanted))
        for row in session.execute(stmt):
            found.setdefault(row.id, row)
    ordered = sorted(found.values(), key=lambda p: (p.name_folded, p.id))
    return ordered[(page - 1) * per_page:page * per_page + 1]


def _fuzzy(session: Session, folded: str, limit: int) -> list:
    """Trigram similarity within a time budget; a timeout means "no fuzzy match", never an error."""
    try:
        previous = session.execute(text("SELECT current_setting('statement_timeout')")).scalar_one()
        with session.begin_nested():
            session.execute(text("SELECT set_config('statement_timeout', :ms, true), "
                                 "set_config('pg_trgm.similarity_threshold', :t, true)"),
                            {"ms": str(FUZZY_BUDGET_MS), "t": str(FUZZY_THRESHOLD)})
            rows = session.execute(
                select(*LISTED).where(Patient.merged_into_id.is_(None), Patient.name_folded.op("%")(folded))
                .order_by(func.similarity(Patient.name_folded, folded).desc()).limit(limit)).all()
            session.execute(text("SELECT set_config('statement_timeout', :old, true)"), {"old": previous})
            return rows
    except DBAPIError:
        return []


# --- merge and unmerge ------------------------------------------------------------------------

def _snapshot(patient: Patient) -> dict:
    return {name: (value.isoformat() if isinstance(value, date) else value)
            for name in _PATIENT_FIELDS for value in [getattr(patient, name)]}


def _restore(patient: Patient, snap: dict) -> None:
    for name in _PATIENT_FIELDS:
        value = snap[name]
        if name == "birth_date" and value is not None:
            value = date.fromisoformat(value)
        setattr(patient, name, value)


def merge(session: Session, actor: Actor, survivor: Patient, duplicate: Patient, reason: str) -> PatientMerge:
    """Fold `duplicate` into `survivor`: its rows in every registered table move over, it is marked
    merged, and a snapshot allows an exact unmerge. Merging the same pair again changes nothing."""
    reason = (reason or "").strip()
    if not reason:
        raise PatientError("reason_required", "reason", _l("Give the reason for the merge."))
    if survivor.id == duplicate.id:
        raise PatientError("same_patient", "duplicate", _l("A patient cannot be merged with itself."))
    previous = session.scalar(select(PatientMerge).where(PatientMerge.survivor_id == survivor.id,
                                                         PatientMerge.duplicate_id == duplicate.id,
                                                         PatientMerge.undone_at.is_(None)))
    if previous is not None:
        return previous
    if survivor.merged_into_id is not None or duplicate.merged_into_id is not None:
        raise PatientError("already_merged", "duplicate", _l("One of these records has already been merged."))
    snapshot = {"survivor": _snapshot(survivor), "duplicate": _snapshot(duplicate), "moved": {}}
    for column in _REFERENCES:
        model = column.class_
        ids = list(session.scalars(select(model.id).where(column == duplicate.id)))
        if ids:
            session.execute(update(model).where(model.id.in_(ids)).values({column.key: survivor.id})
                            .execution_options(synchronize_session=False))
            snapshot["moved"][f"{model.__tablename__}.{column.key}"] = ids
    duplicate.merged_into_id = survivor.id
    session.flush()
    # One current BHYT card afterwards: the newest stays, older live ones are closed (reopened by unmerge).
    live_cards = list(session.scalars(select(BhytCard).where(BhytCard.patient_id == survivor.id,
                                                             BhytCard.superseded_at.is_(None))
                                      .order_by(BhytCard.id.desc())))
    for old in live_cards[1:]:
        old.superseded_at = utcnow()
    snapshot["closed_cards"] = [c.id for c in live_cards[1:]]
    # The survivor takes what only the duplicate knew (its CCCD, phone, birth date).
    for name in ("national_id", "national_id_raw_qr", "phone", "birth_date", "passport_number", "address_text"):
        if getattr(survivor, name) is None and getattr(duplicate, name) is not None:
            setattr(survivor, name, getattr(duplicate, name))
    record = PatientMerge(survivor_id=survivor.id, duplicate_id=duplicate.id, reason=reason, snapshot=snapshot,
                          merged_by=actor.id)
    session.add(record)
    session.flush()
    session.expire_all()  # rows moved by bulk UPDATE
    detail = {"merge_id": record.id, "survivor": survivor.code, "duplicate": duplicate.code, "reason": reason,
              "moved": {k: len(v) for k, v in snapshot["moved"].items()}}
    audit.record(session, actor, "patient.merge", survivor, detail)
    audit.record(session, actor, "patient.merged_away", duplicate, detail)
    events.emit(session, "his.patient.merged", {"merge_id": record.id, "survivor_id": survivor.id,
                                                "duplicate_id": duplicate.id}, actor=actor)
    return record


def unmerge(session: Session, actor: Actor, record: PatientMerge, reason: str) -> None:
    """Undo a merge exactly: both records as they were, the moved rows back to the duplicate.

    Rows created for the survivor after the merge stay with it.
    """
    reason = (reason or "").strip()
    if not reason:
        raise PatientError("reason_required", "reason", _l("Give the reason for undoing the merge."))
    if record.undone_at is not None:
        raise PatientError("already_undone", None, _l("This merge has already been undone."))
    survivor, duplicate = session.get(Patient, record.survivor_id), session.get(Patient, record.duplicate_id)
    if survivor.merged_into_id is not None or duplicate.merged_into_id != survivor.id:
        raise PatientError("merged_again", None, _l("The surviving record was merged again since: undo that merge "
                                                    "first."))
    by_name = {f"{c.class_.__tablename__}.{c.key}": c for c in _REFERENCES}
    for name, ids in record.snapshot["moved"].items():
        column = by_name[name]
        session.execute(update(column.class_).where(and_(column.class_.id.in_(ids), column == survivor.id))
                        .values({column.key: duplicate.id}).execution_options(synchronize_session=False))
    for card in session.scalars(select(BhytCard).where(BhytCard.id.in_(record.snapshot.get("closed_cards", [])))):
        card.superseded_at = None
    _restore(survivor, record.snapshot["survivor"])
    session.flush()  # the survivor gives back the CCCD before the duplicate takes it again
    _restore(duplicate, record.snapshot["duplicate"])
    record.undone_at, record.undone_by, record.undo_reason = utcnow(), actor.id, reason
    session.flush()
    session.expire_all()
    detail = {"merge_id": record.id, "reason": reason}
    audit.record(session, actor, "patient.unmerge", survivor, detail)
    audit.record(session, actor, "patient.unmerged", duplicate, detail)
    events.emit(session, "his.patient.unmerged", {"merge_id": record.id, "survivor_id": survivor.id,
                                                  "duplicate_id": duplicate.id}, actor=actor)


register_reference(BhytCard.patient_id)

"""BHYT card checks at reception: look the card up on the portal, keep the answer with the encounter.

One rule for the encounter's insurance, whoever runs the check (the desk, the retry job, the
insurance officer): the newest answer decides.
- verified: the card valid on the visit date (the portal may give two codes) becomes the
  patient's current card, marked verified, and the encounter is insured with it;
- refused (expired, unknown, name or birth date not matching …): the encounter is not insured
  until a valid card is checked;
- pending (the portal did not answer, or an emergency checked in the background): the encounter
  keeps what the desk recorded, shown as "not verified", and a job repeats the lookup with a growing
  delay; after MAX_TRIES tries, or when the installation has no portal, the job stops and the check
  is shown as failed ("not verified — check again by hand"): it stays pending (still waiting for a
  verified card) with the reason in `problem`, and only a person starts a new lookup.
Nothing here blocks a patient: the visit and the ticket exist before the card is looked up.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit, events, queue
from core.audit import Actor
from core.db import utcnow
from his import identity, patients
from his.gateway import codes
from his.gateway.client import CardLookup, GatewayClient, GatewayError, GatewayRejected, PortalCard
from his.identity import IdentityError
from his.models.encounters import Encounter
from his.models.gateway import CardCheck
from his.models.patients import Patient
from his.patients import PatientError

RETRY_JOB = "his.gateway.card_check"
CHECKED_EVENT = "his.bhyt.card_checked"
MAX_TRIES = 12  # lookups of one check (the desk's included) before the retry job leaves it to a person
# A pending check with one of these problems is no longer looked up automatically: it is shown as failed.
STOPPED = ("gave_up", "not_configured")

# Why a check is still pending (the portal's own refusals are described in his.gateway.codes).
PENDING_MESSAGES = {
    "timeout": _l("The BHYT portal did not answer in time: the card is not verified yet; it will be checked again "
                  "automatically."),
    "unavailable": _l("The BHYT portal cannot be reached: the card is not verified yet; it will be checked again "
                      "automatically."),
    "portal_error": _l("The BHYT portal answered with an error: the card is not verified yet; it will be checked "
                       "again automatically."),
    "bad_answer": _l("The BHYT portal gave an answer vnhis does not understand: the card is not verified yet; it "
                     "will be checked again automatically."),
    "login_refused": _l("The BHYT portal refused the hospital's login: the card is not verified yet. Ask the "
                        "administrator to check the gateway account."),
    "token_refused": _l("The BHYT portal refused the hospital's login: the card is not verified yet. Ask the "
                        "administrator to check the gateway account."),
    "unexpected": _l("vnhis could not finish the lookup on the BHYT portal: the card is not verified yet; it will "
                     "be checked again automatically."),
    "emergency": _l("Emergency: the card is checked in the background, the patient is seen at once."),
    "queued": _l("The card is being checked on the BHYT portal."),
}
REFUSAL_MESSAGES = {
    "not_valid_on_visit_date": _l("None of the cards the portal gave is valid on the visit date."),
    "other_patient": _l("The portal's card belongs to another patient record: merge the records or correct the "
                        "card."),
    "rejected": _l("The BHYT portal refused the lookup as sent."),
}
WARNING_MESSAGES = {
    "army": codes.CODES["001"].message,
    "police": codes.CODES["002"].message,
    "temporary_newborn": _l("Temporary card of a newborn: ask for the permanent card when it is issued."),
    "expires_soon": _l("The BHYT card expires on %(day)s."),
    "name_spelling": _l("The portal writes the name «%(name)s»: check the spelling on the record."),
}
_CODE_WARNINGS = {"valid_army": "army", "valid_police": "police"}


class CardCheckError(ValueError):
    """Bad input at the desk (nothing was looked up); `field` names the form field."""

    def __init__(self, code: str, field_name: str, message):
        super().__init__(code)
        self.code, self.field, self.message = code, field_name, message

    def __str__(self) -> str:
        return str(self.message)


def parse_birth(text: str) -> date | int:
    """A birth date as the desk types it: dd/mm/yyyy, or the year alone."""
    text = (text or "").strip()
    if re.fullmatch(r"\d{4}", text):
        return int(text)
    match = re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})", text)
    if match:
        try:
            return date(int(match[3]), int(match[2]), int(match[1]))
        except ValueError:
            pass
    raise CardCheckError("bad_birth", "birth", _l("The birth date «%(text)s» is not a date (dd/mm/yyyy) or a "
                                                  "year (yyyy).", text=text[:20]))


def parse_number(number: str | None) -> tuple[str, str] | None:
    """The number typed at the desk: a BHYT card number in either layout, or a 12-digit personal ID;
    None when nothing is typed. IdentityError names the wrong part of a malformed card number."""
    typed = re.sub(r"\s", "", number or "").upper()
    if not typed:
        return None
    if identity.CCCD_RE.match(typed):
        return "national_id", typed
    return "card", identity.parse_bhyt_number(typed).number


def _query(session: Session, patient: Patient, number: str | None) -> tuple[str, str]:
    """What to look up: the number typed, or, when nothing is typed, the patient's personal ID, else
    the card on record."""
    typed = parse_number(number)
    if typed:
        return typed
    if patient.national_id:
        return "national_id", patient.national_id
    card = patients.current_card(session, patient)
    if card is not None:
        return "card", card.number
    raise CardCheckError("nothing_to_look_up", "bhyt_number", _l("Enter the BHYT card number or the personal ID "
                                                                 "number to look up."))


def current_check(session: Session, encounter: Encounter) -> CardCheck | None:
    return session.scalar(select(CardCheck).where(CardCheck.encounter_id == encounter.id,
                                                  CardCheck.superseded_at.is_(None))
                          .order_by(CardCheck.id.desc()).limit(1))


def request_check(session: Session, actor: Actor, patient: Patient, *, visit_date: date,
                  encounter: Encounter | None = None, number: str | None = None, full_name: str | None = None,
                  birth: date | int | None = None, emergency: bool = False) -> CardCheck:
    """Record a card check to be made (status pending), replacing the encounter's previous one.

    Raises IdentityError for a malformed card number and CardCheckError for other bad input;
    then nothing is recorded."""
    kind, query = _query(session, patient, number)
    full_name = " ".join((full_name or patient.full_name).split())
    if not full_name:
        raise CardCheckError("name_required", "full_name", _l("Enter the name as written on the card."))
    birth = birth if birth is not None else patient.birth_date or patient.birth_year
    now = utcnow()
    if encounter is not None:
        previous = current_check(session, encounter)
        if previous is not None:
            previous.superseded_at = now
    check = CardCheck(patient_id=patient.id, encounter_id=encounter.id if encounter else None, query_kind=kind,
                      query_number=query, query_name=full_name,
                      query_birth=birth.strftime("%d/%m/%Y") if isinstance(birth, date) else str(birth),
                      visit_date=visit_date, emergency=emergency, status="pending",
                      problem="emergency" if emergency else "queued", warnings=[], attempts=0,
                      requested_at=now, created_by=actor.id)
    session.add(check)
    session.flush()
    audit.record(session, actor, "bhyt.card_check.request", check,
                 {"patient_id": patient.id, "encounter_id": check.encounter_id, "kind": kind, "number": query})
    return check


def look_up(session: Session, actor: Actor, check: CardCheck, client: GatewayClient, *,
            retries: int | None = None) -> CardCheck:
    """Ask the portal and apply its answer; transport failures propagate (GatewayError) with the
    check left pending and its problem recorded."""
    check.attempts += 1
    try:
        lookup = client.lookup_card(session, number=check.query_number, full_name=check.query_name,
                                    birth=parse_birth(check.query_birth), subject=f"card_check:{check.id}",
                                    actor=actor.name, retries=retries)
    except GatewayRejected as exc:
        _refuse(session, actor, check, "rejected", exc.portal_code, exchange_id=exc.exchange_id)
        return check
    except GatewayError as exc:
        check.problem, check.exchange_id = exc.code, exc.exchange_id or check.exchange_id
        session.flush()
        raise
    apply(session, actor, check, lookup)
    return check


def check_now(session: Session, actor: Actor, check: CardCheck, client: GatewayClient | None, *,
              retries: int | None = 0) -> CardCheck:
    """The desk's lookup: answered now, or left pending with the retry job queued (never raises for the
    portal's failures). An emergency is never looked up while the patient waits."""
    if client is None:
        give_up(session, actor, check, "not_configured")
        return check
    if check.emergency:
        _queue_retry(session, actor, check)
        return check
    try:
        look_up(session, actor, check, client, retries=retries)
    except GatewayError:
        _queue_retry(session, actor, check)
    return check


def retry(session: Session, actor: Actor, check: CardCheck, client: GatewayClient) -> CardCheck:
    """The retry job's lookup: answered, or this try recorded and the next one queued with a growing
    delay; after MAX_TRIES tries the check is given up. Never raises for the portal's failures, so the
    record of the try is committed with the job."""
    try:
        look_up(session, actor, check, client)
    except GatewayError:
        audit.record(session, actor, "bhyt.card_check.try", check,
                     {"attempt": check.attempts, "problem": check.problem, "exchange_id": check.exchange_id,
                      "tried_at": utcnow().isoformat()})
        if check.attempts >= MAX_TRIES:
            give_up(session, actor, check, "gave_up")
        else:
            _queue_retry(session, actor, check, delay=timedelta(seconds=queue.backoff_seconds(check.attempts)))
    return check


def mark_for_retry(session: Session, actor: Actor, check: CardCheck, problem: str = "unexpected") -> None:
    """A lookup that ended in an unexpected error: the check stays pending (not verified) and is retried."""
    check.problem = problem
    session.flush()
    _queue_retry(session, actor, check)


def give_up(session: Session, actor: Actor, check: CardCheck, problem: str) -> None:
    """No more automatic lookups: the check stays not verified, to be checked again by hand."""
    check.status, check.problem = "pending", problem
    session.flush()
    audit.record(session, actor, "bhyt.card_check.stopped", check,
                 {"problem": problem, "attempts": check.attempts, "encounter_id": check.encounter_id})


def _queue_retry(session: Session, actor: Actor, check: CardCheck, delay: timedelta | None = None) -> None:
    queue.enqueue(session, RETRY_JOB, {"check_id": check.id}, actor=actor, delay=delay)


def stopped(check: CardCheck) -> bool:
    """Not looked up automatically any more (the retry job gave up, or there is no portal)."""
    return check.status == "pending" and check.problem in STOPPED


def state(check: CardCheck) -> str:
    """What the screens show: the status, or "failed" for a pending check nobody will look up automatically."""
    return "failed" if stopped(check) else check.status


def _pick(cards: list[PortalCard | None], day: date) -> tuple[PortalCard | None, PortalCard | None]:
    """The card valid on the visit date, and the other code the portal gave (if any)."""
    given = [c for c in cards if c is not None]
    valid = next((c for c in given if (c.valid_from is None or c.valid_from <= day)
                  and (c.valid_to is None or day <= c.valid_to)), None)
    other = next((c for c in given if c is not valid), None)
    return valid, other


def apply(session: Session, actor: Actor, check: CardCheck, lookup: CardLookup) -> None:
    check.result_code, check.response, check.exchange_id = lookup.code, lookup.raw, lookup.exchange_id
    check.checked_at = utcnow()
    card, other = _pick([lookup.card, lookup.new_card], check.visit_date)
    if not lookup.usable:
        shown = lookup.card
        if shown is not None:
            check.card_number, check.valid_from, check.valid_to = shown.number, shown.valid_from, shown.valid_to
            check.registered_facility = shown.registered_facility
        _refuse(session, actor, check, lookup.problem, lookup.code, exchange_id=lookup.exchange_id)
        return
    if card is None:
        _refuse(session, actor, check, "not_valid_on_visit_date", lookup.code, exchange_id=lookup.exchange_id)
        return
    check.card_number, check.valid_from, check.valid_to = card.number, card.valid_from, card.valid_to
    check.registered_facility = card.registered_facility
    check.benefit_level, check.five_years_since = lookup.benefit_level, lookup.five_years_since
    if other is not None:
        check.other_card_number, check.other_valid_from, check.other_valid_to = (other.number, other.valid_from,
                                                                                 other.valid_to)
    check.warnings = _warnings(check, lookup)
    try:
        record = _record_card(session, actor, check)
    except IdentityError:  # the portal's number is not one vnhis can keep
        _refuse(session, actor, check, "bad_number", lookup.code, exchange_id=lookup.exchange_id)
        return
    except PatientError:
        _refuse(session, actor, check, "other_patient", lookup.code, exchange_id=lookup.exchange_id)
        return
    check.status, check.problem, check.bhyt_card_id = "verified", None, record.id
    encounter = check.encounter
    if encounter is not None and encounter.status != "cancelled":
        encounter.insured, encounter.bhyt_card_id = True, record.id
        encounter.bhyt_route = "emergency" if encounter.is_emergency else encounter.bhyt_route or "correct"
    _done(session, actor, check)


def _warnings(check: CardCheck, lookup: CardLookup) -> list:
    found = []
    if lookup.problem in _CODE_WARNINGS:
        found.append({"code": _CODE_WARNINGS[lookup.problem], "params": {}})
    if check.card_number.startswith("TE1") and (check.registered_facility or "").endswith("000"):
        found.append({"code": "temporary_newborn", "params": {}})
    if identity.card_validity_warnings(check.valid_from, check.valid_to, check.visit_date):
        found.append({"code": "expires_soon", "params": {"day": _day(check.valid_to)}})
    if lookup.full_name and lookup.full_name != check.patient.full_name:
        found.append({"code": "name_spelling", "params": {"name": lookup.full_name}})
    return found


def _day(value: date | None) -> str:
    return value.strftime("%d/%m/%Y") if value else "…"


def _record_card(session: Session, actor: Actor, check: CardCheck):
    """The verified card becomes the patient's current card, with the portal's facts."""
    patient = check.patient
    patients.add_card(session, actor, patient, {"bhyt_number": check.card_number, "bhyt_valid_from": check.valid_from,
                                                "bhyt_valid_to": check.valid_to,
                                                "bhyt_registered_facility": check.registered_facility,
                                                "bhyt_five_years_since": check.five_years_since},
                      today=check.visit_date)
    record = patients.current_card(session, patient)
    record.source, record.verified_at = "gateway", check.checked_at
    record.benefit_level = check.benefit_level or record.benefit_level
    record.five_years_since = check.five_years_since or record.five_years_since
    session.flush()
    return record


def _refuse(session: Session, actor: Actor, check: CardCheck, problem: str, code: str | None, *,
            exchange_id: int | None) -> None:
    check.status, check.problem, check.result_code = "refused", problem, code
    check.exchange_id, check.checked_at = exchange_id or check.exchange_id, check.checked_at or utcnow()
    encounter = check.encounter
    if encounter is not None and encounter.status != "cancelled" and encounter.insured:
        encounter.insured, encounter.bhyt_card_id, encounter.bhyt_route = False, None, None
    _done(session, actor, check)


def _done(session: Session, actor: Actor, check: CardCheck) -> None:
    session.flush()
    audit.record(session, actor, "bhyt.card_check.result", check,
                 {"status": check.status, "code": check.result_code, "problem": check.problem,
                  "card": check.card_number, "encounter_id": check.encounter_id})
    events.emit(session, CHECKED_EVENT, {"check_id": check.id, "encounter_id": check.encounter_id,
                                         "patient_id": check.patient_id, "status": check.status,
                                         "card_number": check.card_number, "benefit_level": check.benefit_level,
                                         "checked_at": check.checked_at.isoformat()}, actor=actor)


# --- what the screens show ---------------------------------------------------------------------

def message(check: CardCheck):
    """The one sentence the desk reads about a check."""
    if check.status == "verified":
        return _l("The card is valid on the visit date.")
    if check.status == "pending" and check.problem == "gave_up":
        return _l("The BHYT portal did not answer after %(n)s tries: the card is not verified — check it again by "
                  "hand.", n=check.attempts)
    if check.status == "pending" and check.problem == "not_configured":
        return _l("This installation is not connected to the BHYT portal: the card is not verified — check it by "
                  "hand.")
    if check.status == "pending":
        return PENDING_MESSAGES.get(check.problem or "queued", PENDING_MESSAGES["queued"])
    if check.problem in REFUSAL_MESSAGES:
        return REFUSAL_MESSAGES[check.problem]
    if check.problem == "bad_number":
        return codes.CODES["051"].message
    return codes.describe(check.result_code or "").message


def warning_texts(check: CardCheck) -> list:
    return [str(WARNING_MESSAGES[w["code"]]) % w["params"] if w.get("params") else WARNING_MESSAGES[w["code"]]
            for w in check.warnings or [] if w.get("code") in WARNING_MESSAGES]


def pending_checks(session: Session, *, limit: int = 200) -> list[CardCheck]:
    """Checks still waiting for the portal's answer, oldest first (the cashier's and the officer's list)."""
    return list(session.scalars(select(CardCheck).where(CardCheck.status == "pending",
                                                        CardCheck.superseded_at.is_(None))
                                .order_by(CardCheck.requested_at, CardCheck.id).limit(limit)))


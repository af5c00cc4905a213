"""The reception desk's step: a patient arrives (scanned or found), gets a visit and a queue number,
and their BHYT card is checked on the insurer's portal.

Doing it twice for the same patient and service point on the same day gives back the same visit
and ticket: a second scan is recognised, not doubled. The card is looked up after the visit and
the ticket are committed, in a transaction of its own (the desk's handler commits both): the
portal's wait holds no lock of the arrival (the ticket counter of the service point), and no
failure of the lookup undoes the visit (his.gateway.cards).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.audit import Actor
from his import encounters, patients, tickets
from his.gateway import cards
from his.gateway.client import GatewayClient
from his.models.encounters import Encounter
from his.models.gateway import CardCheck
from his.models.org import ServicePoint
from his.models.patients import Patient
from his.models.tickets import Ticket


@dataclass
class Arrival:
    patient: Patient
    ticket: Ticket
    encounter: Encounter | None
    patient_created: bool = False
    already_queued: bool = False
    warnings: list = field(default_factory=list)
    card_check: CardCheck | None = None


def check_in(session: Session, actor: Actor, patient: Patient, point: ServicePoint, *, day: date,
             day_start: datetime, pregnant: bool = False, disabled: bool = False, merit: bool = False,
             emergency: bool = False) -> Arrival:
    """Open (or find today's) visit in the point's room and give a ticket with the right priority."""
    waiting = tickets.open_ticket_for(session, point, patient, day)
    if waiting is not None:
        visit = session.get(Encounter, waiting.encounter_id) if waiting.encounter_id else None
        return Arrival(patient, waiting, visit, already_queued=True)
    group = tickets.priority_group(patient, day, emergency=emergency, pregnant=pregnant, disabled=disabled,
                                   merit=merit)
    try:
        # The visit and the ticket stand or fall together: a double scan must not leave a second visit.
        with session.begin_nested():
            visit = _visit(session, actor, patient, point, day, day_start, emergency)
            ticket = tickets.issue(session, actor, point, day=day, patient=patient,
                                   encounter_id=visit.id if visit else None, group=group)
    except IntegrityError:  # the same patient checked in at this point a moment ago
        ticket = tickets.open_ticket_for(session, point, patient, day)
        if ticket is None:
            raise
        visit = session.get(Encounter, ticket.encounter_id) if ticket.encounter_id else None
        return Arrival(patient, ticket, visit, already_queued=True)
    return Arrival(patient, ticket, visit)


def _visit(session: Session, actor: Actor, patient: Patient, point: ServicePoint, day: date, day_start: datetime,
           emergency: bool) -> Encounter | None:
    """Today's open visit in the exam room of the point, or a new one (other points open none)."""
    if point.room is None or point.kind != "exam_room":
        return None
    visit = encounters.open_today(session, patient, point.room, day_start)
    if visit is None:
        card = patients.current_card(session, patient)
        insured = card is not None and (card.valid_to is None or card.valid_to >= day)
        visit = encounters.open_encounter(session, actor, patient, kind="emergency" if emergency else "outpatient",
                                          day=day, room=point.room, insured=insured)
    return visit


def scan(session: Session, actor: Actor, raw_qr: str, point: ServicePoint, *, day: date, day_start: datetime,
         **flags) -> Arrival:
    """A CCCD QR at the desk: find or register the patient, then check them in."""
    registration = patients.find_or_register_by_qr(session, actor, raw_qr, today=day)
    arrival = check_in(session, actor, registration.patient, point, day=day, day_start=day_start, **flags)
    arrival.patient_created = registration.created
    arrival.warnings = registration.warnings
    return arrival


def check_card(session: Session, actor: Actor, arrival: Arrival, client: GatewayClient | None, *, day: date,
               number: str | None = None, full_name: str | None = None, birth: date | int | None = None,
               emergency: bool = False) -> CardCheck:
    """Look the arriving patient's card up (by the number typed, else the personal ID or the card on
    record) and keep the answer with the visit. An emergency is looked up in the background."""
    check = cards.request_check(session, actor, arrival.patient, visit_date=day, encounter=arrival.encounter,
                                number=number, full_name=full_name, birth=birth,
                                emergency=_emergency(arrival, emergency))
    arrival.card_check = cards.check_now(session, actor, check, client)
    return check


def card_check_failed(session: Session, actor: Actor, arrival: Arrival, *, day: date, number: str | None = None,
                      full_name: str | None = None, birth: date | int | None = None,
                      emergency: bool = False) -> CardCheck:
    """After an unexpected error in check_card (its transaction rolled back): record the check again,
    not verified, for the retry job."""
    check = cards.request_check(session, actor, arrival.patient, visit_date=day, encounter=arrival.encounter,
                                number=number, full_name=full_name, birth=birth,
                                emergency=_emergency(arrival, emergency))
    cards.mark_for_retry(session, actor, check)
    arrival.card_check = check
    return check


def _emergency(arrival: Arrival, emergency: bool) -> bool:
    return emergency or bool(arrival.encounter and arrival.encounter.is_emergency)

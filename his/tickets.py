"""Queue tickets: issue a number, call the next one by the priority rules, recall, skip, transfer.

Numbers are per service point and per local day, dense and never repeated: the counter row is
locked while a number is taken. Calling order (his.md §4): emergency first; then priority groups
and normal tickets interleaved (ServicePoint.normal_per_priority normal tickets between two priority
ones when both wait), each by number.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import audit
from core.audit import Actor
from core.db import is_postgresql, utcnow
from his.models.org import ServicePoint
from his.models.patients import Patient
from his.models.tickets import PRIORITY_GROUPS, Ticket, TicketCounter, TicketEvent
from his.patients import register_reference

ELDERLY_AGE = 75  # Luật KCB 2023 (the old law said 80)
UNDER6_MONTHS = 72


class TicketError(ValueError):
    def __init__(self, code: str, message):
        super().__init__(code)
        self.code, self.message = code, message

    def __str__(self) -> str:
        return str(self.message)


def age_in_months(patient: Patient, on: date, *, year_only_as: str = "start") -> int:
    """Age in whole months; a year-only birth date counts as 1 January ("start") or 31 December
    ("end"), whichever gives the benefit of the doubt for the rule at hand."""
    born = patient.birth_date or (date(patient.birth_year, 1, 1) if year_only_as == "start"
                                  else date(patient.birth_year, 12, 31))
    return (on.year - born.year) * 12 + on.month - born.month - (1 if on.day < born.day else 0)


def priority_group(patient: Patient | None, on: date, *, emergency: bool = False, pregnant: bool = False,
                   disabled: bool = False, merit: bool = False) -> str | None:
    """The legal priority group that applies, the most urgent first; None for a normal ticket."""
    if emergency:
        return "emergency"
    if patient is not None and age_in_months(patient, on, year_only_as="end") < UNDER6_MONTHS:
        return "under6"
    if pregnant:
        return "pregnant"
    if disabled:
        return "disabled"
    if patient is not None and age_in_months(patient, on) >= ELDERLY_AGE * 12:
        return "elderly"
    if merit:
        return "merit"
    return None


def _event(session: Session, actor: Actor, ticket: Ticket, action: str, **detail) -> None:
    session.add(TicketEvent(ticket_id=ticket.id, action=action, actor_id=actor.id, detail=detail or None))


def _next_number(session: Session, point: ServicePoint, day: date) -> int:
    counter = session.get(TicketCounter, (point.id, day), with_for_update=True)
    if counter is None:
        try:
            with session.begin_nested():
                session.add(TicketCounter(service_point_id=point.id, day=day, last_number=0))
        except IntegrityError:
            pass  # a concurrent first ticket of the day created it
        counter = session.get(TicketCounter, (point.id, day), with_for_update=True, populate_existing=True)
    counter.last_number += 1
    return counter.last_number


def issue(session: Session, actor: Actor, point: ServicePoint, *, day: date, patient: Patient | None = None,
          encounter_id: int | None = None, group: str | None = None, source: str = "counter") -> Ticket:
    if not point.active:
        raise TicketError("point_closed", _l("%(point)s is not open.", point=point.name))
    if group is not None and group not in PRIORITY_GROUPS:
        raise TicketError("bad_group", _l("Unknown priority group."))
    ticket = Ticket(service_point_id=point.id, day=day, number=_next_number(session, point, day),
                    priority_group=group, patient_id=patient.id if patient else None, encounter_id=encounter_id,
                    status="waiting", source=source, issued_by=actor.id, call_count=0, called_out_of_order=False)
    session.add(ticket)
    session.flush()
    _event(session, actor, ticket, "issue", group=group)
    audit.record(session, actor, "ticket.issue", ticket,
                 {"point": point.code, "number": ticket.number, "patient_id": ticket.patient_id, "group": group})
    return ticket


def open_ticket_for(session: Session, point: ServicePoint, patient: Patient, day: date) -> Ticket | None:
    """The patient's ticket still waiting or being served at this point today, if any."""
    return session.scalar(select(Ticket).where(Ticket.service_point_id == point.id, Ticket.day == day,
                                               Ticket.patient_id == patient.id,
                                               Ticket.status.in_(("waiting", "called", "serving")))
                          .order_by(Ticket.id.desc()).limit(1))


def _waiting(session: Session, point: ServicePoint, day: date, *, priority: bool | None = None,
             emergency: bool = False) -> Ticket | None:
    stmt = select(Ticket).where(Ticket.service_point_id == point.id, Ticket.day == day, Ticket.status == "waiting")
    if emergency:
        stmt = stmt.where(Ticket.priority_group == "emergency")
    elif priority is True:
        stmt = stmt.where(Ticket.priority_group.is_not(None))
    elif priority is False:
        stmt = stmt.where(Ticket.priority_group.is_(None))
    stmt = stmt.order_by(Ticket.number).limit(1)
    if is_postgresql(session):
        stmt = stmt.with_for_update(skip_locked=True, of=Ticket)  # two desks calling at once get different tickets
    return session.scalar(stmt)


def _priority_turn(session: Session, point: ServicePoint, day: date) -> bool:
    """Whether a waiting priority ticket goes before the next normal one: yes if no priority ticket
    was called yet today, or if enough normal ones were called since the last (emergencies aside)."""
    # First calls only (the "call" events): a recall neither resets nor advances the count.
    calls = (select(TicketEvent.id, Ticket.priority_group).join(Ticket, Ticket.id == TicketEvent.ticket_id)
             .where(Ticket.service_point_id == point.id, Ticket.day == day, TicketEvent.action == "call").subquery())
    last_priority = session.scalar(select(func.max(calls.c.id)).where(calls.c.priority_group.is_not(None),
                                                                     calls.c.priority_group != "emergency"))
    if last_priority is None:
        return True
    normal_since = session.scalar(select(func.count()).where(calls.c.priority_group.is_(None),
                                                            calls.c.id > last_priority))
    return normal_since >= point.normal_per_priority


def call_next(session: Session, actor: Actor, point: ServicePoint, *, day: date) -> Ticket | None:
    """Call the next ticket by the rules; None when nobody waits."""
    ticket = _waiting(session, point, day, emergency=True)
    if ticket is None:
        priority = _waiting(session, point, day, priority=True)
        normal = _waiting(session, point, day, priority=False)
        if priority is not None and (normal is None or _priority_turn(session, point, day)):
            ticket = priority
        else:
            ticket = normal or priority
    if ticket is None:
        return None
    _mark_called(session, actor, ticket, "call")
    return ticket


def call(session: Session, actor: Actor, ticket: Ticket, reason: str) -> None:
    """Call a particular ticket out of turn: needs a reason, and is audited as such."""
    if ticket.status not in ("waiting", "no_show"):
        raise TicketError("not_waiting", _l("Ticket %(n)s is not waiting.", n=ticket.display_number))
    if not (reason or "").strip():
        raise TicketError("reason_required", _l("Give the reason for calling this ticket out of turn."))
    ticket.called_out_of_order = True
    _mark_called(session, actor, ticket, "call_out_of_order", reason=reason.strip())


def _mark_called(session: Session, actor: Actor, ticket: Ticket, action: str, **detail) -> None:
    ticket.status, ticket.called_at, ticket.called_by = "called", utcnow(), actor.id
    ticket.call_count += 1
    session.flush()
    _event(session, actor, ticket, action, **detail)
    audit.record(session, actor, f"ticket.{action}", ticket, {"number": ticket.number, **detail})


def recall(session: Session, actor: Actor, ticket: Ticket) -> None:
    if ticket.status not in ("called", "no_show"):
        raise TicketError("not_called", _l("Ticket %(n)s has not been called.", n=ticket.display_number))
    _mark_called(session, actor, ticket, "recall")


def _finish(session: Session, actor: Actor, ticket: Ticket, status: str, action: str) -> None:
    if ticket.status not in ("called", "serving", "waiting"):
        raise TicketError("finished", _l("Ticket %(n)s is already closed.", n=ticket.display_number))
    ticket.status, ticket.finished_at = status, utcnow()
    session.flush()
    _event(session, actor, ticket, action)
    audit.record(session, actor, f"ticket.{action}", ticket, {"number": ticket.number})


def serve(session: Session, actor: Actor, ticket: Ticket) -> None:
    if ticket.status != "called":
        raise TicketError("not_called", _l("Ticket %(n)s has not been called.", n=ticket.display_number))
    ticket.status = "serving"
    session.flush()
    _event(session, actor, ticket, "serve")


def done(session: Session, actor: Actor, ticket: Ticket) -> None:
    _finish(session, actor, ticket, "done", "done")


def skip(session: Session, actor: Actor, ticket: Ticket) -> None:
    """The patient did not come when called: no-show (they can still be recalled)."""
    if ticket.status != "called":
        raise TicketError("not_called", _l("Ticket %(n)s has not been called.", n=ticket.display_number))
    _finish(session, actor, ticket, "no_show", "skip")


def transfer(session: Session, actor: Actor, ticket: Ticket, to: ServicePoint, *, day: date) -> Ticket:
    """Send the patient on to another point: a new ticket there, with the same priority."""
    if ticket.status in ("done", "transferred", "cancelled"):
        raise TicketError("finished", _l("Ticket %(n)s is already closed.", n=ticket.display_number))
    new = issue(session, actor, to, day=day, patient=ticket.patient, encounter_id=ticket.encounter_id,
                group=ticket.priority_group, source="transfer")
    ticket.status, ticket.finished_at, ticket.transferred_to_id = "transferred", utcnow(), new.id
    session.flush()
    _event(session, actor, ticket, "transfer", to=to.code, new_ticket_id=new.id)
    return new


@dataclass
class Board:
    point: ServicePoint
    called: list[Ticket]
    waiting: list[Ticket]
    waiting_count: int
    version: str


def board(session: Session, point: ServicePoint, day: date, *, show: int = 10) -> Board:
    """What the waiting-room screen shows: the numbers being called and the next ones (numbers only)."""
    base = select(Ticket).where(Ticket.service_point_id == point.id, Ticket.day == day)
    called = list(session.scalars(base.where(Ticket.status.in_(("called", "serving")))
                                  .order_by(Ticket.called_at.desc()).limit(3)))
    waiting = list(session.scalars(base.where(Ticket.status == "waiting")
                                   .order_by(Ticket.priority_group.is_(None), Ticket.number).limit(show)))
    count = session.scalar(select(func.count()).select_from(base.where(Ticket.status == "waiting").subquery()))
    last_event = session.scalar(select(func.max(TicketEvent.id)).join(Ticket, Ticket.id == TicketEvent.ticket_id)
                                .where(Ticket.service_point_id == point.id, Ticket.day == day))
    return Board(point, called, waiting, count, f"{day:%Y%m%d}-{last_event or 0}")


register_reference(Ticket.patient_id)

"""Queue tickets (số thứ tự) per service point and day, and what happened to each."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, utcnow
from his.models.org import ServicePoint
from his.models.patients import Patient

TICKET_STATUSES = ("waiting", "called", "serving", "done", "no_show", "transferred", "cancelled")
OPEN_TICKET = "patient_id IS NOT NULL AND status IN ('waiting', 'called', 'serving')"
# The legal priority groups (Luật KCB 2023 Đ3 k2; his.md §4). Emergency bypasses the queue.
PRIORITY_GROUPS = ("emergency", "under6", "pregnant", "disabled", "elderly", "merit")


class Ticket(Base):
    __tablename__ = "queue_tickets"
    __table_args__ = (
        UniqueConstraint("service_point_id", "day", "number", name="uq_queue_tickets_point_day_number"),
        CheckConstraint(f"status IN {TICKET_STATUSES}", name="status"),
        CheckConstraint(f"priority_group IS NULL OR priority_group IN {PRIORITY_GROUPS}", name="priority_group"),
        Index("ix_queue_tickets_point_day_status", "service_point_id", "day", "status"),
        # One open ticket per patient and point and day: a double scan gets the same number back.
        Index("uq_queue_tickets_patient_open", "service_point_id", "day", "patient_id", unique=True,
              postgresql_where=text(OPEN_TICKET), sqlite_where=text(OPEN_TICKET)),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    service_point_id: Mapped[int] = mapped_column(ForeignKey("service_points.id"))
    day: Mapped[date]  # the local (Asia/Ho_Chi_Minh) day the number belongs to
    number: Mapped[int] = mapped_column(Integer)
    priority_group: Mapped[str | None] = mapped_column(String(20))
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"), index=True)
    encounter_id: Mapped[int | None] = mapped_column(ForeignKey("encounters.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="waiting")
    source: Mapped[str] = mapped_column(String(20), default="counter")  # counter | kiosk | booking | referral
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    issued_by: Mapped[int | None]
    called_at: Mapped[datetime | None]
    call_count: Mapped[int] = mapped_column(Integer, default=0)
    called_by: Mapped[int | None]
    finished_at: Mapped[datetime | None]
    transferred_to_id: Mapped[int | None] = mapped_column(ForeignKey("queue_tickets.id"))
    called_out_of_order: Mapped[bool] = mapped_column(Boolean, default=False)

    service_point: Mapped[ServicePoint] = relationship()
    patient: Mapped[Patient | None] = relationship()

    @property
    def is_priority(self) -> bool:
        return self.priority_group is not None

    @property
    def display_number(self) -> str:
        return f"{self.number:04d}"


class TicketCounter(Base):
    """The last number given at a service point on a day; the row lock makes numbers unique and dense."""

    __tablename__ = "queue_ticket_counters"

    service_point_id: Mapped[int] = mapped_column(ForeignKey("service_points.id"), primary_key=True)
    day: Mapped[date] = mapped_column(primary_key=True)
    last_number: Mapped[int] = mapped_column(Integer)


class TicketEvent(Base):
    """Issue, call, recall, skip, transfer… kept for waiting-time statistics."""

    __tablename__ = "queue_ticket_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("queue_tickets.id"), index=True)
    action: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_id: Mapped[int | None]
    detail: Mapped[dict | None]

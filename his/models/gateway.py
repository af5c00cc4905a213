"""The BHYT gateway: every exchange with the insurer's portal, and the card checks made at reception."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, BigId, JSONType, utcnow
from his.models.encounters import Encounter
from his.models.patients import Patient

EXCHANGE_OUTCOMES = ("ok", "refused", "auth", "timeout", "unavailable", "error")
# verified: the portal confirmed a card valid on the visit date; refused: it answered that the card
# cannot be used as given (expired, unknown, name or birth date not matching); pending: no answer
# yet (portal slow or down, or an emergency checked later) — a job repeats the lookup.
CARD_CHECK_STATUSES = ("verified", "refused", "pending")


class GatewayExchange(Base):
    """One HTTP request to the portal and its answer, raw, with times; credentials masked."""

    __tablename__ = "gateway_exchanges"
    __table_args__ = (CheckConstraint(f"outcome IN {EXCHANGE_OUTCOMES}", name="outcome"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    operation: Mapped[str] = mapped_column(String(20))  # token, card_lookup, check_in, claim_upload, claim_status
    subject: Mapped[str | None] = mapped_column(String(100), index=True)  # what it was for, e.g. "card_check:12"
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    method: Mapped[str] = mapped_column(String(8))
    url: Mapped[str] = mapped_column(String(500))
    request_headers: Mapped[dict]
    request_body: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime] = mapped_column(index=True)
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_headers: Mapped[dict | None]
    response_body: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime | None]
    elapsed_ms: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(12))
    error: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(120))


class CardCheck(Base):
    """A lookup of a patient's BHYT card on the portal, kept with the encounter it was made for.

    A newer check of the same encounter supersedes the older one; the current check of an
    encounter is the one with superseded_at empty.
    """

    __tablename__ = "bhyt_card_checks"
    __table_args__ = (
        CheckConstraint(f"status IN {CARD_CHECK_STATUSES}", name="status"),
        CheckConstraint("query_kind IN ('card', 'national_id')", name="query_kind"),
        Index("ix_bhyt_card_checks_status_current", "status", "superseded_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    encounter_id: Mapped[int | None] = mapped_column(ForeignKey("encounters.id"), index=True)
    query_kind: Mapped[str] = mapped_column(String(12))
    query_number: Mapped[str] = mapped_column(String(15))
    query_name: Mapped[str] = mapped_column(String(200))
    query_birth: Mapped[str] = mapped_column(String(10))  # dd/mm/yyyy, or yyyy when only the year is known
    visit_date: Mapped[date]
    emergency: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(12))
    problem: Mapped[str | None] = mapped_column(String(30))  # why refused or pending (see his.gateway.cards)
    result_code: Mapped[str | None] = mapped_column(String(10))  # the portal's own result code
    card_number: Mapped[str | None] = mapped_column(String(15))  # the card valid on the visit date
    benefit_level: Mapped[str | None] = mapped_column(String(4))
    registered_facility: Mapped[str | None] = mapped_column(String(5))
    valid_from: Mapped[date | None]
    valid_to: Mapped[date | None]
    five_years_since: Mapped[date | None]
    other_card_number: Mapped[str | None] = mapped_column(String(15))  # the second code the portal gave
    other_valid_from: Mapped[date | None]
    other_valid_to: Mapped[date | None]
    warnings: Mapped[list] = mapped_column(JSONType, default=list)  # [{"code": ..., "params": {...}}]
    response: Mapped[dict | None]  # the portal's answer as parsed (the raw text is in the exchange)
    exchange_id: Mapped[int | None] = mapped_column(BigInteger)  # the last exchange (kept even if rolled back)
    bhyt_card_id: Mapped[int | None] = mapped_column(ForeignKey("bhyt_cards.id"))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    checked_at: Mapped[datetime | None]  # when the portal's answer arrived
    created_by: Mapped[int | None]
    superseded_at: Mapped[datetime | None]

    patient: Mapped[Patient] = relationship()
    encounter: Mapped[Encounter | None] = relationship()

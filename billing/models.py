"""Billing tables: charges, item coverage terms, bills, payments, cashier shifts, bank credits, claims.

Money is Numeric: line amounts to 2 decimals (QĐ 130 rounds every amount to 2), unit prices to 3.
Nothing is deleted: a charge is answered by a credit line, a payment by a refund, a claim is
rebuilt in place with a new version number.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, BigId, JSONType, utcnow
from his.models.encounters import Encounter

Amount = Numeric(18, 2)
UnitPrice = Numeric(15, 3)
Quantity = Numeric(12, 3)

ITEM_KINDS = ("service", "drug", "supply", "bed")
CHARGE_SOURCES = ("order", "dispense", "bed_day", "adjustment")
CHARGE_STATUSES = ("priced", "unpriced")
PAYMENT_KINDS = ("payment", "advance", "refund")
PAYMENT_METHODS = ("cash", "qr", "card")
BANK_STATUSES = ("applied", "held", "unmatched", "refunded", "dismissed")
CLAIM_FORMATS = ("qd130", "4210")
CLAIM_STATUSES = ("invalid", "valid", "queued", "sent", "accepted", "rejected", "failed")


class Charge(Base):
    """One line of what an encounter cost: a service, a drug or supply given, a bed day, or a manual
    adjustment. A credit (reversal, return) is a line of negative quantity pointing at what it undoes."""

    __tablename__ = "billing_charges"
    __table_args__ = (
        CheckConstraint(f"item_kind IN {ITEM_KINDS}", name="item_kind"),
        CheckConstraint(f"source IN {CHARGE_SOURCES}", name="source"),
        CheckConstraint(f"status IN {CHARGE_STATUSES}", name="status"),
        CheckConstraint("status = 'unpriced' OR (unit_price IS NOT NULL AND amount IS NOT NULL)", name="priced"),
        Index("ix_billing_charges_encounter_service", "encounter_id", "service_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    encounter_id: Mapped[int] = mapped_column(ForeignKey("encounters.id"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    # What produced it, unique so that an event delivered twice never charges twice.
    source: Mapped[str] = mapped_column(String(20))
    source_key: Mapped[str] = mapped_column(String(80), unique=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    item_kind: Mapped[str] = mapped_column(String(10))
    item_code: Mapped[str] = mapped_column(String(50))
    bhyt_code: Mapped[str | None] = mapped_column(String(50))
    item_name: Mapped[str] = mapped_column(String(500))
    unit: Mapped[str] = mapped_column(String(50))
    # The insurer's view of the item on the service day (billing.terms): cost group, in its list, ratio,
    # and the unit price it recognises (DON_GIA_BH; differs from ours for on-demand services).
    cost_group: Mapped[int] = mapped_column(Integer)
    in_list: Mapped[bool] = mapped_column(Boolean, default=True)
    payment_ratio: Mapped[int] = mapped_column(Integer, default=100)
    bhyt_unit_price: Mapped[Decimal | None] = mapped_column(UnitPrice)
    payer: Mapped[str] = mapped_column(String(10))  # bhyt | fee | on_demand: which catalogue price
    quantity: Mapped[Decimal] = mapped_column(Quantity)
    unit_price: Mapped[Decimal | None] = mapped_column(UnitPrice)
    amount: Mapped[Decimal | None] = mapped_column(Amount)
    status: Mapped[str] = mapped_column(String(10), default="priced")
    problem: Mapped[str | None] = mapped_column(Text)  # why it is unpriced, in the catalogue's words
    service_at: Mapped[datetime]
    service_day: Mapped[date] = mapped_column(Date)  # the local day whose price applies
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    doctor_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    performer_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    bed_code: Mapped[str | None] = mapped_column(String(20))
    credit_of_id: Mapped[int | None] = mapped_column(ForeignKey("billing_charges.id"))
    reason: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    encounter: Mapped[Encounter] = relationship()


class ItemTerms(Base):
    """How the insurer treats a catalogue item from a date: its cost group, whether it is in the fund's
    list, and the share of its price the fund takes into account (TYLE_TT_BH). Items without a row use
    the defaults of billing.terms."""

    __tablename__ = "billing_item_terms"
    __table_args__ = (
        UniqueConstraint("item_kind", "item_code", "valid_from"),
        CheckConstraint(f"item_kind IN {ITEM_KINDS}", name="item_kind"),
        CheckConstraint("payment_ratio BETWEEN 0 AND 100", name="payment_ratio"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    item_kind: Mapped[str] = mapped_column(String(10))
    item_code: Mapped[str] = mapped_column(String(50))
    cost_group: Mapped[int | None] = mapped_column(Integer)
    in_list: Mapped[bool] = mapped_column(Boolean, default=True)
    payment_ratio: Mapped[int] = mapped_column(Integer, default=100)
    tender: Mapped[str | None] = mapped_column(String(50))  # TT_THAU: decision;package;group;year
    valid_from: Mapped[date] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)


class DepartmentBedService(Base):
    """Which bed-day service a department's beds are charged with."""

    __tablename__ = "billing_department_bed_services"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"), unique=True)
    service_id: Mapped[int] = mapped_column(BigId, ForeignKey("catalog_services.id"))


class Bill(Base):
    """The cashier's view of an encounter: the split last computed, and what was paid against it."""

    __tablename__ = "billing_bills"
    __table_args__ = (CheckConstraint("status IN ('open', 'paid')", name="status"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    encounter_id: Mapped[int] = mapped_column(ForeignKey("encounters.id"), unique=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)  # the transfer reference: VNHIS<code>
    status: Mapped[str] = mapped_column(String(10), default="open")
    rule_code: Mapped[str | None] = mapped_column(String(40))
    benefit_percent: Mapped[int | None] = mapped_column(Integer)
    total: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))
    insurer_pays: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))
    patient_copay: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))
    patient_self: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))
    patient_share: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))  # copay + self, whole đồng
    computed_at: Mapped[datetime | None]
    paid_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    encounter: Mapped[Encounter] = relationship()
    payments: Mapped[list[Payment]] = relationship(back_populates="bill", order_by="Payment.id")


class CashierShift(Base):
    __tablename__ = "billing_shifts"
    __table_args__ = (
        Index("uq_billing_shifts_cashier_open", "cashier_id", unique=True,
              postgresql_where=text("closed_at IS NULL"), sqlite_where=text("closed_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    cashier_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    opening_float: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))
    closed_at: Mapped[datetime | None]
    counted_cash: Mapped[Decimal | None] = mapped_column(Amount)
    report: Mapped[dict | None]


class Payment(Base):
    """Money in (a payment, an advance) or out (a refund), with its receipt number."""

    __tablename__ = "billing_payments"
    __table_args__ = (
        CheckConstraint(f"kind IN {PAYMENT_KINDS}", name="kind"),
        CheckConstraint(f"method IN {PAYMENT_METHODS}", name="method"),
        CheckConstraint("amount > 0", name="amount"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    bill_id: Mapped[int] = mapped_column(ForeignKey("billing_bills.id"), index=True)
    kind: Mapped[str] = mapped_column(String(10))
    method: Mapped[str] = mapped_column(String(10))
    amount: Mapped[Decimal] = mapped_column(Amount)  # always positive; a refund goes out
    receipt_number: Mapped[str] = mapped_column(String(30), unique=True)
    shift_id: Mapped[int | None] = mapped_column(ForeignKey("billing_shifts.id"), index=True)
    bank_transaction_id: Mapped[int | None] = mapped_column(ForeignKey("billing_bank_transactions.id"), unique=True)
    card_approval_code: Mapped[str | None] = mapped_column(String(20))  # from the POS slip
    card_terminal: Mapped[str | None] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    bill: Mapped[Bill] = relationship(back_populates="payments")


class BankTransaction(Base):
    """A credit the bank told us about; its id is unique, so the bank's retries change nothing."""

    __tablename__ = "billing_bank_transactions"
    __table_args__ = (CheckConstraint(f"status IN {BANK_STATUSES}", name="status"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    bank_txn_id: Mapped[str] = mapped_column(String(80), unique=True)
    account: Mapped[str] = mapped_column(String(40))
    amount: Mapped[Decimal] = mapped_column(Amount)
    description: Mapped[str] = mapped_column(Text)
    reference: Mapped[str | None] = mapped_column(String(40), index=True)
    credited_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(10))
    hold_reason: Mapped[str | None] = mapped_column(String(40))
    bill_id: Mapped[int | None] = mapped_column(ForeignKey("billing_bills.id"), index=True)
    raw: Mapped[dict]
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[int | None]
    resolution_note: Mapped[str | None] = mapped_column(Text)  # why a person refunded or dismissed it

    bill: Mapped[Bill | None] = relationship()


class Claim(Base):
    """One encounter's claim in one format: the last validation, export and gateway status."""

    __tablename__ = "billing_claims"
    __table_args__ = (
        UniqueConstraint("encounter_id", "format"),
        CheckConstraint(f"format IN {CLAIM_FORMATS}", name="format"),
        CheckConstraint(f"status IN {CLAIM_STATUSES}", name="status"),
        Index("ix_billing_claims_status_ended", "status", "ended_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    encounter_id: Mapped[int] = mapped_column(ForeignKey("encounters.id"))
    format: Mapped[str] = mapped_column(String(10))
    link_key: Mapped[str] = mapped_column(String(100))
    ended_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(10))
    version: Mapped[int] = mapped_column(Integer, default=1)
    errors: Mapped[list | None] = mapped_column(JSONType)
    # What the claim needs and his does not record (weight, blood group…), entered by the officer.
    supplement: Mapped[dict | None]
    total: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))
    insurer_pays: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))
    content: Mapped[bytes | None] = mapped_column(LargeBinary)  # the unsigned envelope last built, zlib
    file_sha256: Mapped[str | None] = mapped_column(String(64))
    built_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    gateway_ref: Mapped[str | None] = mapped_column(String(100))
    gateway_message: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None]
    answered_at: Mapped[datetime | None]
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("billing_claim_batches.id"), index=True)

    encounter: Mapped[Encounter] = relationship()


class ClaimBatch(Base):
    """A date range of claims sent to the gateway together by one job."""

    __tablename__ = "billing_claim_batches"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    format: Mapped[str] = mapped_column(String(10))
    date_from: Mapped[date] = mapped_column(Date)
    date_to: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(10), default="queued")
    claim_count: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class ClinicalResult(Base):
    """A released lab result or signed imaging report of an encounter, as lis and pacs announced it: what
    the claim's paraclinical table (XML4) reports."""

    __tablename__ = "billing_clinical_results"
    __table_args__ = (UniqueConstraint("source", "report_id", "position"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    encounter_id: Mapped[int] = mapped_column(ForeignKey("encounters.id"), index=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"))
    source: Mapped[str] = mapped_column(String(10))  # lis | pacs
    report_id: Mapped[str] = mapped_column(String(40))
    position: Mapped[int] = mapped_column(Integer)
    code: Mapped[str | None] = mapped_column(String(50))
    name: Mapped[str] = mapped_column(String(255))
    value: Mapped[str | None] = mapped_column(String(50))
    unit: Mapped[str | None] = mapped_column(String(50))
    description: Mapped[str | None] = mapped_column(Text)
    conclusion: Mapped[str | None] = mapped_column(Text)
    reported_at: Mapped[datetime]
    reported_by: Mapped[str | None] = mapped_column(String(255))


class ReceiptCounter(Base):
    """Receipt numbers never repeat: one locked counter per year."""

    __tablename__ = "billing_counters"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[int] = mapped_column(Integer)


# The subscribers to his, lis and pacs events must exist in every process that loads the models.
import billing.charges  # noqa: E402,F401
import billing.results  # noqa: E402,F401

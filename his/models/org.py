"""The organisation: departments, rooms, beds, service points (where queues form), staff."""

from __future__ import annotations

from datetime import date

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base

ROOM_KINDS = ("exam", "ward", "lab", "imaging", "procedure", "pharmacy", "cashier", "reception", "other")
SERVICE_POINT_KINDS = ("reception", "exam_room", "lab_collection", "imaging", "cashier", "pharmacy")


class Department(Base):
    __tablename__ = "departments"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    bhyt_code: Mapped[str | None] = mapped_column(String(20))  # MA_KHOA (QĐ 1804 PL02: K01…K60, K99)
    is_clinical: Mapped[bool] = mapped_column(Boolean, default=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Room(Base):
    __tablename__ = "rooms"
    __table_args__ = (CheckConstraint(f"kind IN {ROOM_KINDS}", name="kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"), index=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    department: Mapped[Department] = relationship()


class Bed(Base):
    __tablename__ = "beds"

    id: Mapped[int] = mapped_column(primary_key=True)
    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id"), index=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)
    bhyt_code: Mapped[str | None] = mapped_column(String(4))  # bed service code ^[HTCK]\d{3}$
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    room: Mapped[Room] = relationship()


class ServicePoint(Base):
    """A desk or room where patients queue for a number."""

    __tablename__ = "service_points"
    __table_args__ = (CheckConstraint(f"kind IN {SERVICE_POINT_KINDS}", name="kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    room_id: Mapped[int | None] = mapped_column(ForeignKey("rooms.id"))
    # Normal tickets called between two priority tickets when both wait (his.md §4: e.g. 1 : 2).
    normal_per_priority: Mapped[int] = mapped_column(Integer, default=2)
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    room: Mapped[Room | None] = relationship()


class Staff(Base):
    """A practitioner or employee; linked to a login account when they use the system."""

    __tablename__ = "staff"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    title: Mapped[str | None] = mapped_column(String(80))  # BS, BSCKI, ThS.BS, ĐD, KTV, DS…
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"), index=True)
    licence_number: Mapped[str | None] = mapped_column(String(40))  # GPHN (formerly CCHN)
    licence_issuer: Mapped[str | None] = mapped_column(String(200))
    licence_date: Mapped[date | None]
    practice_scope: Mapped[str | None] = mapped_column(String(400))
    national_id: Mapped[str | None] = mapped_column(String(12))
    eprescription_code: Mapped[str | None] = mapped_column(String(40))  # mã liên thông đơn thuốc
    bhyt_doctor_code: Mapped[str | None] = mapped_column(String(40))  # MA_BAC_SI in claims
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    department: Mapped[Department | None] = relationship()

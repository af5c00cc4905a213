"""Tables of the platform: users and roles, login sessions, API tokens, audit trail, job outbox."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, BigId, utcnow


class Role(Base):
    __tablename__ = "roles"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))


class UserRole(Base):
    __tablename__ = "user_roles"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    role_code: Mapped[str] = mapped_column(ForeignKey("roles.code"), primary_key=True)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Machine accounts (analysers, modalities, jobs, integrations) authenticate by API token only.
    is_machine: Mapped[bool] = mapped_column(Boolean, default=False)
    locale: Mapped[str] = mapped_column(String(10), default="vi")
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    last_failed_login_at: Mapped[datetime | None]
    locked_until: Mapped[datetime | None]
    last_login_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    roles: Mapped[list[Role]] = relationship(secondary="user_roles", lazy="selectin")

    @property
    def role_codes(self) -> set[str]:
        return {r.code for r in self.roles}


class UserSession(Base):
    """A browser login; the cookie carries only its random id, so logout and expiry are real."""

    __tablename__ = "user_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(20))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(300))

    user: Mapped[User] = relationship(lazy="joined")


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    # Only a SHA-256 of the token is kept; the token itself is shown once, at creation.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(lazy="joined")


class AuditEvent(Base):
    """One entry of the hash-chained, append-only audit trail."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_target", "target_type", "target_id"),
        Index("ix_audit_events_occurred_at", "occurred_at"),
        # What the sealer looks for: without it, finding the few unsealed events walks the dead index
        # entries every sealing update leaves behind (seq is indexed, so those updates are never HOT).
        Index("ix_audit_events_unsealed", "id", postgresql_where=text("seq IS NULL"),
              sqlite_where=text("seq IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # Null until the sealer chains the event (PostgreSQL); see core.audit.
    seq: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    occurred_at: Mapped[datetime]
    actor_id: Mapped[int | None] = mapped_column(index=True)  # no FK: the trail outlives accounts
    actor_name: Mapped[str] = mapped_column(String(120))
    action: Mapped[str] = mapped_column(String(80), index=True)
    target_type: Mapped[str | None] = mapped_column(String(80))
    target_id: Mapped[str | None] = mapped_column(String(120))
    detail: Mapped[dict]
    ip: Mapped[str | None] = mapped_column(String(64))
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))


class AuditChainHead(Base):
    """The single row holding the last sequence number and hash; locking it orders the chain,
    and comparing it with the last event reveals a removed tail."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str] = mapped_column(String(64))


class Job(Base):
    """Transactional outbox and job record in one: written with the work that causes it,
    relayed to Redis after commit, claimed atomically by exactly one runner."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("dedupe_key", name="uq_jobs_dedupe_key"),
        Index("ix_jobs_status_run_after", "status", "run_after"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    queue: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(120))
    payload: Mapped[dict]
    status: Mapped[str] = mapped_column(String(12), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=5)
    run_after: Mapped[datetime]
    dedupe_key: Mapped[str | None] = mapped_column(String(200))
    result: Mapped[dict | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    relayed_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

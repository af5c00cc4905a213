"""Users, passwords, login throttling, browser sessions and API tokens (no Flask here)."""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core.audit import Actor
from core.db import utcnow
from core.models import ApiToken, Role, User, UserSession

# Login throttling: after THROTTLE_AFTER failures each further try must wait a growing delay;
# after LOCK_AFTER failures the account is locked for LOCK_MINUTES.
THROTTLE_AFTER = 3
LOCK_AFTER = 5
LOCK_MINUTES = 15
MIN_PASSWORD_LENGTH = 10
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{2,79}$")
TOKEN_PREFIX = "vnhis_"  # noqa: S105 (a prefix, not a secret)

_hasher = PasswordHasher()
# Verified against when the username is unknown, so both cases cost the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class UserError(ValueError):
    """Bad input for a user operation; `code` selects the translated message."""

    def __init__(self, code: str, **params):
        super().__init__(code)
        self.code = code
        self.params = params


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password_policy(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError("password_too_short", min=MIN_PASSWORD_LENGTH)


def create_user(session: Session, actor: Actor, *, username: str, full_name: str, password: str | None,
                roles: list[str], is_machine: bool = False, locale: str = "vi") -> User:
    username = username.strip().lower()
    if not USERNAME_RE.match(username):
        raise UserError("bad_username")
    if not full_name.strip():
        raise UserError("full_name_required")
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise UserError("username_taken", username=username)
    known = {r.code: r for r in session.scalars(select(Role).where(Role.code.in_(roles)))}
    missing = sorted(set(roles) - set(known))
    if missing:
        raise UserError("unknown_role", roles=", ".join(missing))
    if is_machine:
        password_hash = None  # machine accounts have tokens, never a password
    else:
        if not password:
            raise UserError("password_required")
        check_password_policy(password)
        password_hash = hash_password(password)
    user = User(username=username, full_name=full_name.strip(), password_hash=password_hash,
                is_machine=is_machine, is_active=True, locale=locale, failed_logins=0,
                roles=[known[c] for c in roles])
    session.add(user)
    session.flush()
    audit.record(session, actor, "user.create", user,
                 {"username": username, "roles": sorted(roles), "machine": is_machine})
    return user


def set_password(session: Session, actor: Actor, user: User, password: str) -> None:
    check_password_policy(password)
    user.password_hash = hash_password(password)
    user.failed_logins, user.locked_until = 0, None
    audit.record(session, actor, "user.password_set", user)


@dataclass(frozen=True)
class LoginResult:
    user: User | None
    error: str | None = None  # invalid | locked | throttled | inactive
    wait_seconds: int = 0


def throttle_delay(failed: int) -> int:
    """Seconds to wait before the next try after `failed` consecutive failures."""
    return 0 if failed < THROTTLE_AFTER else min(2 ** (failed - THROTTLE_AFTER + 1), 60)


def authenticate(session: Session, username: str, password: str, ip: str | None,
                 now: datetime | None = None) -> LoginResult:
    """Check a password login; counts failures, throttles, locks; audits every outcome.

    The caller commits (failures too: the counters and the audit events must persist).
    """
    now = now or utcnow()
    name = (username or "").strip().lower()
    # A name no account can have is not looked up (NUL bytes, 64 MB of text); it fails like an unknown user.
    well_formed = USERNAME_RE.match(name) is not None
    # The row lock orders concurrent tries on one account, so parallel guesses cannot dodge the counter.
    user = session.scalar(select(User).where(User.username == name).with_for_update()) if well_formed else None
    who = Actor(id=user.id if user else None, name=name[:80] or "?", ip=ip)

    if user is None or user.is_machine or not user.password_hash:
        with contextlib.suppress(VerificationError):
            _hasher.verify(_DUMMY_HASH, password or "")
        audit.record(session, who, "auth.login_failed", ("user", user.id if user else None),
                     {"username": name[:80],
                      "reason": "machine_account" if user else "unknown_user" if well_formed else "malformed_username"})
        return LoginResult(None, "invalid")

    if user.locked_until and user.locked_until > now:
        audit.record(session, who, "auth.login_refused", user, {"reason": "locked"})
        return LoginResult(None, "locked", int((user.locked_until - now).total_seconds()) + 1)

    delay = throttle_delay(user.failed_logins)
    if delay and user.last_failed_login_at and user.last_failed_login_at + timedelta(seconds=delay) > now:
        wait = int((user.last_failed_login_at + timedelta(seconds=delay) - now).total_seconds()) + 1
        audit.record(session, who, "auth.login_refused", user, {"reason": "throttled"})
        return LoginResult(None, "throttled", wait)

    try:
        _hasher.verify(user.password_hash, password or "")
    except (VerificationError, InvalidHashError):
        user.failed_logins += 1
        user.last_failed_login_at = now
        detail = {"reason": "wrong_password", "failed_logins": user.failed_logins}
        if user.failed_logins >= LOCK_AFTER:
            user.locked_until = now + timedelta(minutes=LOCK_MINUTES)
            detail["locked_until"] = user.locked_until.isoformat()
        audit.record(session, who, "auth.login_failed", user, detail)
        if user.locked_until and user.locked_until > now:
            return LoginResult(None, "locked", LOCK_MINUTES * 60)
        return LoginResult(None, "invalid")

    if not user.is_active:
        audit.record(session, who, "auth.login_refused", user, {"reason": "inactive"})
        return LoginResult(None, "inactive")

    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.failed_logins, user.locked_until, user.last_login_at = 0, None, now
    audit.record(session, who, "auth.login", user)
    return LoginResult(user)


def start_session(session: Session, user: User, ip: str | None, user_agent: str | None) -> UserSession:
    record = UserSession(id=secrets.token_urlsafe(32), user=user, ip=ip,
                         user_agent=(user_agent or "")[:300] or None)
    session.add(record)
    session.flush()
    return record


def end_session(session: Session, record: UserSession, reason: str) -> None:
    if record.ended_at is None:
        record.ended_at, record.end_reason = utcnow(), reason
        audit.record(session, Actor.of(record.user, record.ip),
                     "auth.logout" if reason == "logout" else f"auth.session_{reason}",
                     ("user", record.user_id))


def check_session(session: Session, sid: str, idle_minutes: int, max_hours: int,
                  now: datetime | None = None) -> tuple[UserSession | None, str | None]:
    """The live session for a cookie's id, or (None, why): 'unknown', 'ended', 'expired'."""
    now = now or utcnow()
    record = session.get(UserSession, sid) if sid else None
    if record is None:
        return None, "unknown"
    if record.ended_at is not None or not record.user.is_active:
        return None, "ended"
    if (now - record.last_seen_at > timedelta(minutes=idle_minutes)
            or now - record.created_at > timedelta(hours=max_hours)):
        end_session(session, record, "expired")
        return None, "expired"
    if now - record.last_seen_at > timedelta(seconds=60):  # one write a minute is enough
        record.last_seen_at = now
    return record, None


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, actor: Actor, user: User, name: str) -> tuple[str, ApiToken]:
    """A new API token; the plain token is returned once and only its digest is stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = ApiToken(user=user, name=name.strip() or "token", token_hash=_token_digest(token),
                      prefix=token[:12])
    session.add(record)
    session.flush()
    audit.record(session, actor, "token.create", ("user", user.id), {"token_id": record.id, "name": name})
    return token, record


def revoke_token(session: Session, actor: Actor, record: ApiToken) -> None:
    if record.revoked_at is None:
        record.revoked_at = utcnow()
        audit.record(session, actor, "token.revoke", ("user", record.user_id), {"token_id": record.id})


def authenticate_token(session: Session, token: str) -> User | None:
    if not token or not token.startswith(TOKEN_PREFIX):
        return None
    record = session.scalar(select(ApiToken).where(ApiToken.token_hash == _token_digest(token)))
    if record is None or record.revoked_at is not None or not record.user.is_active:
        return None
    now = utcnow()
    if record.last_used_at is None or now - record.last_used_at > timedelta(seconds=60):
        record.last_used_at = now
    return record.user
